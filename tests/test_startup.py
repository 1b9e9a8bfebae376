"""Start-up: `dlcli --help`, `dlcli validate` and spec mistakes answer without TensorFlow.

Each check runs in a fresh interpreter: in this test process TensorFlow may already have been
imported by another test, which would hide an import. `-X importtime` lists every module a
command imports; the CliRunner check invokes the Typer app in-process in that interpreter and
then reads `sys.modules`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dlcli import catalog

from .conftest import REPO

SPEC = REPO / "configs" / "mnist.yaml"
TYPO = "did you mean `Flatten`?"
HEAVY = re.compile(r"^import time:.*\|\s*(tensorflow|keras)(\.|$)", re.MULTILINE)


def bad_spec(folder: Path) -> Path:
    path = folder / "bad.yaml"
    path.write_text(SPEC.read_text().replace("- Flatten", "- Flaten"))
    return path


def run_python(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def imported_heavy(arguments: list[str]) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run `dlcli ARGUMENTS` under -X importtime; the TensorFlow/Keras modules it imported."""
    result = run_python("-X", "importtime", "-m", "dlcli", *arguments)
    return result, [line.split("|")[-1].strip() for line in HEAVY.findall(result.stderr)]


@pytest.mark.parametrize(
    ("arguments", "exit_code", "says"),
    [
        (["--help"], 0, "validate"),
        (["train", "--help"], 0, "Example: dlcli train"),
        (["validate", str(SPEC)], 0, "mnist.yaml: valid (mnist: 4 layers)"),
        (["validate", str(SPEC), "--set", "fit.epochs=0"], 3, "`fit.epochs` must be greater"),
        (["validate", "BAD"], 3, TYPO),
        (["train", "BAD"], 3, TYPO),
        (["train", "missing.yaml"], 3, "spec file not found: missing.yaml"),
    ],
)
def test_answers_without_importing_tensorflow(
    arguments: list[str], exit_code: int, says: str, tmp_path: Path
) -> None:
    arguments = [str(bad_spec(tmp_path)) if a == "BAD" else a for a in arguments]
    result, heavy = imported_heavy(arguments)
    assert result.returncode == exit_code, result.stderr[-2000:]
    assert says in result.stdout + result.stderr
    assert heavy == [], f"dlcli {' '.join(arguments)} imported {heavy[:5]}"


# Invoked in a fresh interpreter: the Typer app in-process (CliRunner), then sys.modules.
IN_PROCESS = """
import json, sys
from typer.testing import CliRunner
from dlcli.cli import app

results = [CliRunner().invoke(app, arguments).exit_code for arguments in json.loads(sys.argv[1])]
heavy = sorted(
    name for name in sys.modules if name.split(".")[0] in ("tensorflow", "keras", "rich")
)
print(json.dumps({"exit_codes": results, "heavy": heavy}))
"""


def test_cli_runner_in_process_leaves_tensorflow_unimported(tmp_path: Path) -> None:
    """Nor rich: one line of output does not need it (~50 ms of the 0.5 s budget)."""
    calls = [["--help"], ["validate", str(SPEC)], ["validate", str(bad_spec(tmp_path))]]
    result = run_python("-c", IN_PROCESS, json.dumps(calls))
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == {"exit_codes": [0, 0, 3], "heavy": []}


# Without parsing any Keras source: the answers must come from the store of the first run.
NO_PARSING = """
import sys
from typer.testing import CliRunner
from dlcli import catalog
from dlcli.cli import app

def refuse(path):
    raise AssertionError(f"parsed {path}")

catalog._parse = refuse
for spec, code in ((sys.argv[1], 0), (sys.argv[2], 3)):
    result = CliRunner().invoke(app, ["validate", spec])
    assert result.exit_code == code, (result.output, result.exception)
    print(result.output.strip())
"""


def test_second_validate_reads_keras_names_from_the_cache(tmp_path: Path) -> None:
    bad = bad_spec(tmp_path)
    assert run_python("-m", "dlcli", "validate", str(SPEC)).returncode == 0
    first = run_python("-m", "dlcli", "validate", str(bad))  # adds its answers to the store
    assert first.returncode == 3
    assert (tmp_path / "cache" / catalog.STORE_NAME).is_file()
    second = run_python("-c", NO_PARSING, str(SPEC), str(bad))
    assert second.returncode == 0, second.stderr[-2000:]
    valid, error = second.stdout.strip().splitlines()
    assert valid.endswith("mnist.yaml: valid (mnist: 4 layers)")
    assert error == first.stderr.strip()


def test_cache_of_another_keras_installation_is_ignored(tmp_path: Path) -> None:
    store = tmp_path / "cache" / catalog.STORE_NAME
    store.parent.mkdir(parents=True)
    no_layers = {"public_names layers": {}, "public_names optimizers": {}}
    store.write_text(json.dumps({"stamp": "another keras", "answers": no_layers}))
    result = run_python("-m", "dlcli", "validate", str(SPEC))
    assert result.returncode == 0, result.stderr
    assert json.loads(store.read_text())["stamp"] != "another keras"
    assert "Dense" in json.loads(store.read_text())["answers"]["public_names layers"]


def test_unwritable_cache_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    result = run_python("-m", "dlcli", "validate", str(bad_spec(tmp_path)))
    assert result.returncode == 3
    assert result.stderr.startswith("Error: ") and TYPO in result.stderr
