"""User mistakes through the installed `dlcli`, as a user makes them: each row is a command,
its exit code, the exact one line it ends with (the only `Error:` line), an empty stdout, no
file written beside the row's own, and how long it may take.

Mistakes that can be found without TensorFlow are answered within FAST_SECONDS (the best of
three) and never import it (checked with PYTHONPROFILEIMPORTTIME); the others within
SLOW_SECONDS.
Every row runs in a subprocess with an empty HOME and dlcli cache (see `user_env`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from .helpers import REPO, Ran, npz_bytes, run_cli, tiny_arrays, tiny_spec

XOR = (REPO / "configs" / "xor.yaml").read_text()
SPEC = tiny_spec()
HEAVY = re.compile(r"^import time:.*\|\s*(tensorflow|keras)(\.|$)", re.MULTILINE)
FAST_SECONDS = 2.0  # the best of three: below what an import of TensorFlow takes
SLOW_SECONDS = 60.0


@dataclass(frozen=True)
class Mistake:
    arguments: list[str]
    exit_code: int
    message: str  # the last line of stderr, after "Error: "; {tmp} is the test's folder
    before_tensorflow: bool
    files: dict[str, str | bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.message, f"{self.arguments}: every mistake says its one `Error:` line"


HISTORY = "epoch,loss,val_loss\n1,0.5,0.6\n2,0.4,0.5\n"
GOOD_DATA = npz_bytes(**tiny_arrays(32))
X = tiny_arrays(32)["x_train"]

MISTAKES = {
    "spec file missing": Mistake(
        ["train", "missing.yaml"], 3, "spec file not found: missing.yaml", True
    ),
    "no spec": Mistake(["train"], 2, "give a SPEC to train, or --resume RUN_DIR", True),
    "invalid YAML": Mistake(
        ["validate", "spec.yaml"],
        3,
        "spec.yaml, line 4: invalid YAML: expected <block end>, but found '<block mapping start>'",
        True,
        {"spec.yaml": "name: x\nfit:\n  epochs: 1\n bad: 2\n"},
    ),
    "negative epochs": Mistake(
        ["validate", "spec.yaml", "--set", "fit.epochs=-3"],
        3,
        "`fit.epochs` must be greater than 0. Received: -3 (--set fit.epochs=-3)",
        True,
        {"spec.yaml": SPEC},
    ),
    "misspelt argument": Mistake(
        ["validate", "spec.yaml", "--set", "model.layers[0].Dense.unitz=3"],
        3,
        "`model.layers[0].Dense.unitz`: `Dense` has no argument `unitz` (did you mean `units`?) "
        "(--set model.layers[0].Dense.unitz=3)",
        True,
        {"spec.yaml": SPEC},
    ),
    "--set without a value": Mistake(
        ["validate", "spec.yaml", "--set", "fit.epochs"],
        3,
        "--set fit.epochs: expected KEY.PATH=VALUE, e.g. --set fit.epochs=3",
        True,
        {"spec.yaml": SPEC},
    ),
    "resume a run that is not there": Mistake(
        ["train", "--resume", "runs/nope"], 2, "--resume runs/nope: no such run directory", True
    ),
    "resume with a spec": Mistake(
        ["train", "spec.yaml", "--resume", "runs/nope"],
        2,
        "--resume continues runs/nope with its own spec.yaml, so `spec.yaml` cannot be applied "
        "(only --set fit.epochs=N, to train on); to change the spec, edit the spec file and add "
        "--restart",
        True,
        {"spec.yaml": SPEC},
    ),
    "evaluate a missing model": Mistake(
        ["evaluate", "nope.keras"], 6, "model file not found: nope.keras", True
    ),
    "predict a text file": Mistake(
        ["predict", "notes.txt", "--model", "{model}"],
        7,
        "notes.txt: not an image (cannot identify image file)",
        True,
        {"notes.txt": "a shopping list\n"},
    ),
    "predict a missing image": Mistake(
        ["predict", "missing.png", "--model", "{model}"], 7, "missing.png: no such file", True
    ),
    "evaluate an unknown split": Mistake(
        ["evaluate", "{model}", "--split", "foo"],
        2,
        "Invalid value for '--split': Value error, 'foo' is not one of 'test', 'validation', "
        "'train'.",
        True,
    ),
    "compare into a missing folder": Mistake(
        ["runs", "--compare", "a", "b", "--output", "plots/all.png"],
        11,
        "cannot write plots/all.png: No such file or directory",
        True,
        {
            f"runs/{run}/{name}": text
            for run in ("a", "b")
            for name, text in (("spec.yaml", "name: x\n"), ("history.csv", HISTORY))
        },
    ),
    "data file missing": Mistake(
        ["train", "spec.yaml"],
        4,
        "dataset file not found: {tmp}/data.npz (dataset.npz in spec.yaml)",
        True,
        {"spec.yaml": SPEC},
    ),
    "data file missing, validate": Mistake(
        ["validate", "spec.yaml"],
        4,
        "dataset file not found: {tmp}/data.npz (dataset.npz in spec.yaml)",
        True,
        {"spec.yaml": SPEC},
    ),
    "labels beyond the output": Mistake(
        ["train", "spec.yaml"],
        4,
        "train labels must be class indices 0..2 for a 3-unit output; 8 are not, the first is "
        "3 at index 3",
        False,
        {
            "spec.yaml": SPEC,
            "data.npz": npz_bytes(x_train=X, y_train=np.arange(32) % 4),
        },
    ),
}


def run_with_files(
    mistake: Mistake,
    folder: Path,
    env: dict[str, str],
    model: Path,
    extra_env: dict[str, str] | None = None,
) -> Ran:
    for name, content in mistake.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    arguments = [argument.replace("{model}", str(model)) for argument in mistake.arguments]
    return run_cli(arguments, {**env, **(extra_env or {})}, folder, timeout=300)


@pytest.fixture(scope="session")
def warm_env(user_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The shared environment after one `dlcli validate`: what a user has after a first run."""
    folder = tmp_path_factory.mktemp("warm")
    (folder / "xor.yaml").write_text(XOR)
    result = run_cli(["validate", "xor.yaml"], user_env, folder)
    assert result.returncode == 0, result.stderr
    return user_env


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_a_mistake_is_one_line_with_its_exit_code(
    name: str, tmp_path: Path, warm_env: dict[str, str], first_model: Path
) -> None:
    mistake = MISTAKES[name]
    profile = {"PYTHONPROFILEIMPORTTIME": "1"}
    result = run_with_files(mistake, tmp_path, warm_env, first_model, profile)
    imported = HEAVY.findall(result.stderr)
    lines = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    assert result.returncode == mistake.exit_code, "\n".join(lines)
    assert "Traceback" not in result.stderr
    expected = "Error: " + mistake.message.format(tmp=tmp_path)
    assert lines[-1] == expected, "\n".join(lines)
    assert sum(line.startswith("Error: ") for line in lines) == 1
    assert result.stdout == ""
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(mistake.files), "a mistake writes no file (no PNG, no temporary)"
    if mistake.before_tensorflow:
        assert not imported, f"imported {sorted({m for m, _ in imported})}"
        timings = []
        for _ in range(3):
            seconds = run_with_files(mistake, tmp_path, warm_env, first_model).seconds
            timings.append(seconds)
            if seconds < FAST_SECONDS:
                break
        assert min(timings) < FAST_SECONDS, timings
    else:
        assert result.seconds < SLOW_SECONDS


def test_every_exit_code_of_the_readme_is_met_by_a_row() -> None:
    """The table's codes 2-7 each have a mistake here (5: tests/test_e2e.py)."""
    table = re.findall(r"^\| (\d+) \|", (REPO / "README.md").read_text(), re.MULTILINE)
    readme_codes = {int(code) for code in table}
    covered = {mistake.exit_code for mistake in MISTAKES.values()} | {0, 1, 5}
    assert {code for code in readme_codes if code <= 7} <= covered
