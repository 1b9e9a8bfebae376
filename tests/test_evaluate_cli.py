"""evaluate and predict as users meet them: the real CLI in a subprocess, with an empty HOME.

Mistakes about files are answered before TensorFlow is imported (`-X importtime` lists every
module imported); files are written with the user's umask and never half-done; piped output is
not wrapped, and a reader that leaves early is not an error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from .helpers import Ran, TinyModels, classifier_document, run_cli, with_dlcli_json

HEAVY = re.compile(r"^import time:.*\|\s*(tensorflow|keras)(\.|$)", re.MULTILINE)
FAST_SECONDS = 2.0  # the best of three: below what an import of TensorFlow takes


def dlcli(*arguments: object, cwd: Path, umask: int = 0o022, importtime: bool = False) -> Ran:
    """`dlcli ARGUMENTS` in `cwd`, with an empty HOME (the cache holds only the Keras catalog)."""
    return run_cli(arguments, None, cwd, timeout=300, importtime=importtime, umask=umask)


# ---------------------------------------------------------------------------------------------
# Answered before TensorFlow loads


def fast_cases(folder: Path, classifier: Path) -> None:
    shutil.copy(classifier, folder / "model.keras")
    data = classifier.read_bytes()
    (folder / "corrupt.keras").write_bytes(data[: len(data) // 2])
    with zipfile.ZipFile(classifier) as old, zipfile.ZipFile(folder / "plain.keras", "w") as new:
        for item in old.infolist():
            if item.filename != "dlcli.json":
                new.writestr(item, old.read(item))
    with_dlcli_json(classifier, folder / "edited.keras", classifier_document(class_names=[0, 1, 2]))
    (folder / "notes.txt").write_text("a shopping list\n")
    (folder / "wide.csv").write_text("1,2,3,4,5\n")
    (folder / "runs" / "digits-1").mkdir(parents=True)
    shutil.copy(classifier, folder / "runs" / "digits-1" / "model.keras")


FAST = {
    "evaluate a missing file": (["evaluate", "nope.keras"], 6, "model file not found: nope.keras"),
    "evaluate a text file": (["evaluate", "notes.txt"], 6, "notes.txt: not a .keras model file"),
    "evaluate a corrupt zip": (
        ["evaluate", "corrupt.keras"],
        6,
        "corrupt.keras: not a Keras model file (not a zip archive: truncated or corrupt?)",
    ),
    "evaluate a model without dlcli.json": (
        ["evaluate", "plain.keras"],
        6,
        "plain.keras: has no dlcli.json, so it was not trained by dlcli; `dlcli predict --model` "
        "can still use it",
    ),
    "evaluate a hand-edited dlcli.json": (
        ["evaluate", "edited.keras"],
        6,
        "edited.keras: dlcli.json: `class_names[0]` must be a valid string. Received: 0",
    ),
    "predict a text file": (
        ["predict", "notes.txt", "--model", "model.keras"],
        7,
        "notes.txt: not an image (cannot identify image file)",
    ),
    "predict a missing image": (
        ["predict", "missing.png", "--model", "model.keras"],
        7,
        "missing.png: no such file",
    ),
    "predict a missing image with the newest model": (
        ["predict", "missing.png"],
        7,
        "missing.png: no such file",
    ),
    "predict rows no model in runs/ takes": (
        ["predict", "wide.csv"],
        6,
        "no model in runs/ takes rows of 5 values: runs/digits-1/model.keras takes 4x4 grayscale "
        "images; pass --model PATH",
    ),
    "predict with a hand-edited dlcli.json": (
        ["predict", "notes.txt", "--model", "edited.keras"],
        6,
        "edited.keras: dlcli.json: `class_names[0]` must be a valid string. Received: 0",
    ),
}


@pytest.mark.parametrize(("arguments", "exit_code", "message"), FAST.values(), ids=FAST.keys())
def test_file_mistakes_are_answered_without_tensorflow(
    classifier: Path, tmp_path: Path, arguments: list[str], exit_code: int, message: str
) -> None:
    """Each file mistake is one line with its exit code, answered before TensorFlow is imported."""
    fast_cases(tmp_path, classifier)
    seconds = []
    for _ in range(3):  # the best of three: the machine is shared
        started = time.perf_counter()
        result = dlcli(*arguments, cwd=tmp_path)
        seconds.append(time.perf_counter() - started)
        assert (result.returncode, result.stderr) == (exit_code, f"Error: {message}\n")
        if min(seconds) < FAST_SECONDS:
            break
    assert min(seconds) < FAST_SECONDS, seconds
    heavy = HEAVY.findall(dlcli(*arguments, cwd=tmp_path, importtime=True).stderr)
    assert heavy == []


def test_an_unknown_split_is_a_usage_error(tmp_path: Path) -> None:
    result = dlcli("evaluate", "model.keras", "--split", "foo", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "Error: Invalid value for '--split': Value error, 'foo' is not one of 'test', "
        "'validation', 'train'."
    )


def test_help_names_the_model_argument_without_its_type(tmp_path: Path) -> None:
    """`--help` names MODEL and INPUT with their help, without a Python type."""
    evaluate = dlcli("evaluate", "--help", cwd=tmp_path).stdout
    assert "\n  MODEL  A .keras model trained by dlcli.  [required]\n" in evaluate
    predict = dlcli("predict", "--help", cwd=tmp_path).stdout
    assert "\n  INPUT...  Image files, folders or glob patterns;" in predict
    assert "<str>" not in evaluate and "<list[str]>" not in predict


# ---------------------------------------------------------------------------------------------
# Files and output


def run_copy(tiny_models: TinyModels, folder: Path) -> Path:
    """A copy of the bars model in `folder`/run, whose run.json names the spec's folder."""
    run_dir = folder / "run"
    run_dir.mkdir(parents=True)
    shutil.copy(tiny_models.bars, run_dir / "model.keras")
    (run_dir / "run.json").write_text(json.dumps({"spec_dir": str(tiny_models.folder)}))
    return run_dir / "model.keras"


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_files_get_the_mode_of_the_users_umask(
    tiny_models: TinyModels, tmp_path: Path, umask: int, mode: int
) -> None:
    """evaluation.json and the PNG files get the mode the umask gives."""
    model = run_copy(tiny_models, tmp_path)
    result = dlcli("evaluate", model, cwd=tmp_path, umask=umask)
    assert result.returncode == 0, result.stderr
    written = ["evaluation.json", "confusion_matrix.png", "misclassified.png"]
    modes = {name: stat.S_IMODE((model.parent / name).stat().st_mode) for name in written}
    assert modes == dict.fromkeys(written, mode)


def test_a_read_only_folder_is_one_line_and_nothing_is_written(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    """A folder that cannot be written is one `Error:` line, with nothing written and no
    traceback. The folder is made immutable (chattr +i), which stops root too."""
    model = run_copy(tiny_models, tmp_path)
    before = sorted(model.parent.iterdir())
    locked = subprocess.run(["chattr", "+i", str(model.parent)], capture_output=True)
    if locked.returncode != 0:
        if os.geteuid() == 0:
            pytest.skip(f"chattr +i is not available: {locked.stderr.decode().strip()}")
        model.parent.chmod(0o555)
    try:
        result = dlcli("evaluate", model, cwd=tmp_path)
        after = sorted(model.parent.iterdir())
    finally:
        subprocess.run(["chattr", "-i", str(model.parent)], capture_output=True)
        model.parent.chmod(0o755)
    assert result.returncode == 11
    assert result.stderr == (
        f"Error: cannot write to {model.parent}: permission denied; write the results "
        "elsewhere with --output DIR\n"
    )
    assert after == before


def test_a_reader_that_leaves_early_is_not_an_error(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    """`dlcli evaluate MODEL | head -1` is not an error. The pipe is closed before dlcli writes,
    so every write meets it closed."""
    env = {**os.environ, "HOME": str(tmp_path)}
    command = [sys.executable, "-m", "dlcli", "evaluate", str(tiny_models.bars), "--output", "out"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=env
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=300) == 0
    assert stderr == ""
    assert (tmp_path / "out" / "evaluation.json").is_file()
    shell = subprocess.run(
        ["bash", "-c", f"{' '.join(command)} | head -1; exit ${{PIPESTATUS[0]}}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert (shell.returncode, shell.stderr) == (0, "")
    assert shell.stdout.startswith(f"Evaluated {tiny_models.bars} on bars/test, test split")


def test_long_paths_are_not_wrapped_when_piped(tiny_models: TinyModels, tmp_path: Path) -> None:
    """Piped stdout is not wrapped at 80 columns, in table cells neither."""
    deep = tmp_path / ("a-folder-with-a-long-name-" * 5) / "run-with-a-long-name-1"
    model = run_copy(tiny_models, deep)
    assert len(str(model)) > 150
    result = dlcli("evaluate", model, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Evaluated {model} on bars/test, test split (13 examples)"
    assert lines[-1] == f"Evaluation: {model.parent / 'evaluation.json'}"
    image = deep / "bars" / ("an-image-with-a-long-name-" * 6 + ".png")
    image.parent.mkdir()
    shutil.copy(next((tiny_models.folder / "bars" / "test" / "top").glob("*.png")), image)
    predicted = dlcli("predict", image, "--model", model, "--top-k", "1", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.splitlines()[3].startswith(f"│ {image} │ top ")
