"""Start-up: `dlcli --help`, `dlcli validate` and spec mistakes answer without TensorFlow.

Each check runs in a fresh interpreter: in this test process TensorFlow may already have been
imported by another test, which would hide an import. `-X importtime` lists every module a
command imports; the CliRunner check invokes the Typer app in-process in that interpreter and
then reads `sys.modules`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dlcli.spec import keras_catalog

from .helpers import REPO

SPEC = REPO / "configs" / "mnist.yaml"
TYPO = "did you mean `Flatten`?"
HEAVY = re.compile(r"^import time:.*\|\s*(tensorflow|keras|mlflow)(\.|$)", re.MULTILINE)


def bad_spec(folder: Path) -> Path:
    path = folder / "bad.yaml"
    path.write_text(SPEC.read_text().replace("- Flatten", "- Flaten"))
    return path


def run_python(
    *arguments: str, cache: Path | None = None, path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Python with an empty HOME; the dlcli cache is `cache`, else the session's shared one."""
    env = {**os.environ, "HOME": str(Path(os.environ["DLCLI_CACHE"]).parent / "home")}
    if cache is not None:
        env["DLCLI_CACHE"] = str(cache)
    if path is not None:
        env["PYTHONPATH"] = str(path)
    env.pop("XDG_CACHE_HOME", None)
    command = [sys.executable, *arguments]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(autouse=True)
def shared_catalog(keras_names_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands read the session's Keras catalog unless a test gives its own cache."""
    monkeypatch.setenv("DLCLI_CACHE", str(keras_names_cache))


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
        (["serve", "--help"], 0, "Example: dlcli serve mnist"),
        (["serve", "missing.keras"], 6, "missing.keras: no such model file or run folder"),
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


def test_a_missing_spec_answers_before_the_training_modules_load(tmp_path: Path) -> None:
    """An empty cache, as on a first run: `dlcli.train.pipeline` (numpy and the rest) is not
    imported to say that the spec file is not there."""
    result = run_python(
        "-X", "importtime", "-m", "dlcli", "train", "missing.yaml", cache=tmp_path / "empty-cache"
    )
    assert result.returncode == 3, result.stderr[-2000:]
    assert result.stderr.splitlines()[-1] == "Error: spec file not found: missing.yaml"
    assert HEAVY.findall(result.stderr) == []
    assert not re.search(r"\|\s*dlcli\.train$", result.stderr, re.MULTILINE)


def test_mlflow_not_installed_is_one_line(tmp_path: Path) -> None:
    """`train --mlflow` without MLflow (hidden by a sitecustomize: `sys.modules["mlflow"] =
    None`) says what to install in one line, exit 2, before TensorFlow loads."""
    (tmp_path / "sitecustomize.py").write_text('import sys\nsys.modules["mlflow"] = None\n')
    result = run_python(
        "-X", "importtime", "-m", "dlcli", "train", str(SPEC), "--mlflow", path=tmp_path
    )
    assert result.returncode == 2, result.stderr[-2000:]
    said = "Error: --mlflow needs MLflow, which is not installed: pip install 'dlcli[mlflow]'"
    assert result.stderr.splitlines()[-1] == said
    assert HEAVY.findall(result.stderr) == []


# Invoked in a fresh interpreter: the Typer app in-process (CliRunner), then sys.modules.
IN_PROCESS = """
import json, sys
from typer.testing import CliRunner
from dlcli.cli.app import app

results = [CliRunner().invoke(app, arguments).exit_code for arguments in json.loads(sys.argv[1])]
heavy = sorted(
    name for name in sys.modules if name.split(".")[0] in ("tensorflow", "keras", "rich")
)
print(json.dumps({"exit_codes": results, "heavy": heavy}))
"""


def test_cli_runner_in_process_leaves_tensorflow_unimported(tmp_path: Path) -> None:
    """The Typer app invoked in-process for --help and validate imports neither TensorFlow
    nor Keras, nor rich: one line of output does not need it."""
    calls = [["--help"], ["validate", str(SPEC)], ["validate", str(bad_spec(tmp_path))]]
    result = run_python("-c", IN_PROCESS, json.dumps(calls))
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == {"exit_codes": [0, 0, 3], "heavy": []}


# The catalog read from the cache: computing it again would fail (the child is replaced).
FROM_CACHE = """
import sys
from typer.testing import CliRunner
from dlcli.spec import keras_catalog
from dlcli.cli.app import app

def refuse():
    raise AssertionError("computed the catalog again")

keras_catalog._compute_in_child = refuse
for spec, code in ((sys.argv[1], 0), (sys.argv[2], 3)):
    result = CliRunner().invoke(app, ["validate", spec])
    assert result.exit_code == code, (result.output, result.exception)
    print(result.output.strip())
"""


def stored(cache: Path) -> list[Path]:
    return sorted(cache.glob(f"{keras_catalog.STORE_PREFIX}*.json"))


def test_second_validate_reads_keras_names_from_the_cache(tmp_path: Path) -> None:
    cache, bad = tmp_path / "fresh-cache", bad_spec(tmp_path)
    first = run_python("-m", "dlcli", "validate", str(bad), cache=cache)
    assert first.returncode == 3, first.stderr[-2000:]
    assert len(stored(cache)) == 1
    second = run_python("-c", FROM_CACHE, str(SPEC), str(bad), cache=cache)
    assert second.returncode == 0, second.stderr[-2000:]
    valid, error = second.stdout.strip().splitlines()
    assert valid.endswith("mnist.yaml: valid (mnist: 4 layers)")
    assert error == first.stderr.strip()


def test_another_keras_installation_computes_its_own(tmp_path: Path) -> None:
    """A store of another installation is left alone; one with a stale stamp is replaced."""
    cache, bad = tmp_path / "fresh-cache", bad_spec(tmp_path)
    cache.mkdir()
    no_layers = {
        ns: {"classes": {}, "functions": [], "strings": {}} for ns in keras_catalog.NAMESPACES
    }
    other = cache / f"{keras_catalog.STORE_PREFIX}9.9.9-000000000000.json"
    other.write_text(json.dumps({"stamp": "another keras", "namespaces": no_layers}))
    here = cache / keras_catalog.store_path(keras_catalog.installation_stamp()).name
    here.write_text(json.dumps({"stamp": "a reinstalled keras", "namespaces": no_layers}))
    result = run_python("-m", "dlcli", "validate", str(bad), cache=cache)
    assert result.returncode == 3 and TYPO in result.stderr, result.stderr[-2000:]
    assert json.loads(other.read_text())["stamp"] == "another keras"
    assert "Dense" in json.loads(here.read_text())["namespaces"]["layers"]["classes"]


def test_unwritable_cache_still_validates(tmp_path: Path) -> None:
    (tmp_path / "fresh-cache").write_text("a file where the cache folder should be")
    result = run_python(
        "-m", "dlcli", "validate", str(bad_spec(tmp_path)), cache=tmp_path / "fresh-cache"
    )
    assert result.returncode == 3
    assert result.stderr.startswith("Error: ") and TYPO in result.stderr


def test_a_keras_that_cannot_be_imported_is_reported_in_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "site" / "keras"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('this keras is broken')\n")
    result = run_python(
        "-m", "dlcli", "validate", str(SPEC), cache=tmp_path / "fresh-cache", path=broken.parent
    )
    assert result.returncode == 1
    assert result.stderr.startswith(
        "Error: cannot read Keras's names: ImportError: this keras is broken ("
    ), result.stderr[-2000:]
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("arguments", [["--help"], ["serve", "--help"]])
def test_help_does_not_import_the_server(arguments: list[str]) -> None:
    """FastAPI, Starlette and uvicorn are imported by `dlcli serve` alone, when it serves."""
    result = run_python("-X", "importtime", "-m", "dlcli", *arguments)
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.findall(
        r"^import time:.*\|\s*(fastapi|starlette|uvicorn)(?:\.|$)", result.stderr, re.M
    )
    assert found == [], f"dlcli {' '.join(arguments)} imported {found[:5]}"
