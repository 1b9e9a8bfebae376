"""`dlcli runs` as users meet it: the real CLI in a subprocess, over run folders as dlcli writes
them (one trained for real, the others written by hand file by file), never importing TensorFlow.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from dlcli.runs import listing

from .helpers import Ran, run_cli, tiny_spec, write_tiny_data

HEAVY = re.compile(r"^import time:.*\|\s*(tensorflow|keras)(\.|$)", re.MULTILINE)
SPEC = tiny_spec(
    dataset={"validation_split": 0.25},
    model={"layers": [{"Dense": {"units": 2, "activation": "softmax"}}]},
    compile={"jit_compile": False},
    fit={"epochs": 3},
)
HOUR = 3600.0
T0 = 1_700_000_000.0  # run.json times of the hand-made runs: T0, T0 + 1 h, ...


def dlcli(*arguments: object, cwd: Path, importtime: bool = False) -> Ran:
    """`dlcli ARGUMENTS` in `cwd` with an empty HOME, its output piped (so never wrapped)."""
    return run_cli(arguments, None, cwd, timeout=300, importtime=importtime)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, keras_names_cache: Path) -> Path:
    """A finished run of a tiny classifier, trained once by `dlcli train` (validation and test
    splits, 3 epochs)."""
    folder = tmp_path_factory.mktemp("trained")
    write_tiny_data(folder, 48, test_rows=12, spec=SPEC)
    cache = shutil.copytree(keras_names_cache, folder / "cache")
    env = {**os.environ, "HOME": str(folder / "home"), "DLCLI_CACHE": str(cache)}
    command = [sys.executable, "-m", "dlcli", "train", "spec.yaml"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=folder, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return folder / "runs" / "tiny-1"


def started_at(run: Path, hours: float) -> None:
    """Date the run's start (its run.json) T0 + `hours`."""
    os.utime(run / "run.json", (T0 + hours * HOUR, T0 + hours * HOUR))


def shown_time(hours: float) -> str:
    return datetime.fromtimestamp(T0 + hours * HOUR).strftime("%Y-%m-%d %H:%M")


def finished(trained: Path, run: Path, hours: float) -> Path:
    """A copy of the trained run (as if trained again), started at T0 + `hours`."""
    shutil.copytree(trained, run)
    started_at(run, hours)
    return run


def unfinished(trained: Path, run: Path, hours: float, *, backup: int | None, asked: int) -> Path:
    """A run stopped after `backup` epochs (its newest backup generation), or before any
    (None): spec.yaml, run.json, history.csv and backup/epoch-N/ as dlcli writes them."""
    run.mkdir(parents=True)
    spec = (trained / "spec.yaml").read_text().replace("epochs: 3", f"epochs: {asked}")
    (run / "spec.yaml").write_text(spec)
    shutil.copy(trained / "run.json", run / "run.json")
    if backup is not None:
        rows = (trained / "history.csv").read_text().splitlines()[: backup + 1]
        (run / "history.csv").write_text("\n".join(rows) + "\n")
        generation = run / "backup" / f"epoch-{backup}"
        generation.mkdir(parents=True)
        (generation / "state.json").write_text(json.dumps({"epoch": backup}))
        (generation / "weights.weights.h5").write_bytes(b"")
    started_at(run, hours)
    return run


def table_rows(stdout: str) -> list[list[str]]:
    """The cells of each row of a rich table (the header row first)."""
    return [
        [cell.strip() for cell in line.strip("│┃").split("│" if "│" in line else "┃")]
        for line in stdout.splitlines()
        if line.startswith(("│", "┃"))
    ]


def test_the_table_lists_every_run_oldest_first_with_its_status(
    trained: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    unfinished(trained, runs / "tiny-3", 2, backup=2, asked=10)
    finished(trained, runs / "tiny-1", 0)
    unfinished(trained, runs / "tiny-4", 3, backup=None, asked=5)
    finished(trained, runs / "tiny-2", 1)
    (runs / "tiny-2" / "metrics.json").write_text("{not json")
    (runs / "notes").mkdir()  # neither spec.yaml nor run.json: not a run
    (runs / "compare.png").write_bytes(b"")
    accuracy = json.loads((trained / "metrics.json").read_text())["test"]["accuracy"]

    result = dlcli("runs", cwd=tmp_path)

    assert (result.returncode, result.stderr) == (0, "")
    data = str(trained.parent.parent / "data.npz")  # where the spec's data.npz is
    assert table_rows(result.stdout) == [
        ["run", "started", "dataset", "epochs", "metric", "status", "model"],
        [
            "tiny-1",
            shown_time(0),
            data,
            "3/3",
            f"accuracy {accuracy:.4f} (test)",
            "finished",
            "runs/tiny-1/model.keras",
        ],
        ["tiny-2", shown_time(1), "", "0/?", "", "damaged", ""],
        ["tiny-3", shown_time(2), data, "2/10", "", "interrupted, resumable", ""],
        ["tiny-4", shown_time(3), data, "0/5", "", "failed, no backup", ""],
    ]
    assert result.stdout.splitlines()[-2:] == [
        "tiny-2: damaged: metrics.json: not JSON (Expecting property name enclosed in double "
        "quotes: line 1 column 2 (char 1))",
        "Resume tiny-3: dlcli train --resume runs/tiny-3",
    ]


def test_json_is_one_document_with_every_field(trained: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    finished(trained, other / "tiny-1", 0)
    unfinished(trained, other / "tiny-2", 1, backup=1, asked=3)
    scores = json.loads((trained / "metrics.json").read_text())["test"]

    result = dlcli("runs", "--dir", "elsewhere", "--json", cwd=tmp_path)

    assert (result.returncode, result.stderr) == (0, "")
    document = json.loads(result.stdout)
    assert document["dir"] == "elsewhere"
    first, second = document["runs"]
    assert datetime.fromisoformat(first["started"]).timestamp() == T0
    assert first == {
        "name": "tiny-1",
        "path": "elsewhere/tiny-1",
        "started": first["started"],
        "status": "finished",
        "detail": None,
        "dataset": str(trained.parent.parent / "data.npz"),  # outside the current folder
        "epochs_done": 3,
        "epochs_asked": 3,
        "metric": {"name": "accuracy", "value": scores["accuracy"], "split": "test"},
        "evaluated_on": "test",
        "scores": scores,
        "model": "elsewhere/tiny-1/model.keras",
        "mlflow": None,  # the MLflow run of a run trained with --mlflow (run.json)
    }
    assert {key: second[key] for key in ("name", "status", "epochs_done", "metric", "model")} == {
        "name": "tiny-2",
        "status": "resumable",
        "epochs_done": 1,
        "metric": None,
        "model": None,
    }


def test_named_runs_are_listed_alone(trained: Path, tmp_path: Path) -> None:
    finished(trained, tmp_path / "runs" / "tiny-1", 0)
    unfinished(trained, tmp_path / "runs" / "tiny-2", 1, backup=None, asked=3)
    finished(trained, tmp_path / "kept" / "tiny-9", 2)

    result = dlcli("runs", "kept/tiny-9", "tiny-2", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert [row[0] for row in table_rows(result.stdout)] == ["run", "tiny-2", "tiny-9"]


def test_damaged_runs_are_listed_with_the_reason_never_a_traceback(
    trained: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    metrics = finished(trained, runs / "metrics-type", 0) / "metrics.json"
    metrics.write_text(metrics.read_text().replace('"epochs": 3', '"epochs": "three"'))
    model = finished(trained, runs / "model-cut", 1) / "model.keras"
    model.write_bytes(model.read_bytes()[:500])
    spec = unfinished(trained, runs / "spec-value", 2, backup=1, asked=3) / "spec.yaml"
    spec.write_text(spec.read_text().replace("epochs: 3", "epochs: -1"))
    spec = unfinished(trained, runs / "spec-yaml", 3, backup=None, asked=3) / "spec.yaml"
    spec.write_text("name: [unclosed\n")
    (unfinished(trained, runs / "no-spec", 4, backup=None, asked=3) / "spec.yaml").unlink()
    spec = unfinished(trained, runs / "spec-alias", 5, backup=None, asked=3) / "spec.yaml"
    spec.write_text("name: &a tiny\nseed: *a\n")  # read by the spec's safe loader

    result = dlcli("runs", "--json", cwd=tmp_path)

    assert (result.returncode, result.stderr) == (0, "")
    listed = {
        run["name"]: (run["status"], run["detail"]) for run in json.loads(result.stdout)["runs"]
    }
    assert listed == {
        "metrics-type": (
            "damaged",
            "metrics.json: `epochs` must be a valid integer. Received: 'three'",
        ),
        "model-cut": (
            "damaged",
            "runs/model-cut/model.keras: not a Keras model file (not a zip "
            "archive: truncated or corrupt?)",
        ),
        "spec-value": ("damaged", "spec.yaml: `fit.epochs` must be greater than 0. Received: -1"),
        "spec-yaml": (
            "damaged",
            "spec.yaml, line 2: invalid YAML: expected ',' or ']', but got '<stream end>'",
        ),
        "no-spec": ("damaged", "spec.yaml is missing"),
        "spec-alias": (
            "damaged",
            "spec.yaml: anchors and aliases (&name, *name) are not allowed "
            "in a spec (line 1); write the value out in full",
        ),
    }


def test_a_run_being_trained_is_shown_running_with_its_process(
    trained: Path, tmp_path: Path
) -> None:
    """The lock is the one `dlcli train` holds (dlcli.runs.record.locked), taken here."""
    run = unfinished(trained, tmp_path / "runs" / "tiny-1", 0, backup=1, asked=3)
    handle = os.open(run, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = dlcli("runs", "--json", cwd=tmp_path)
    finally:
        os.close(handle)
    (listed,) = json.loads(result.stdout)["runs"]
    assert (listed["status"], listed["detail"]) == ("running", f"process {os.getpid()}")
    assert json.loads(dlcli("runs", "--json", cwd=tmp_path).stdout)["runs"][0]["status"] == (
        "resumable"
    )


def test_compare_writes_one_png_and_prints_metrics_side_by_side(
    trained: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    finished(trained, runs / "tiny-1", 0)
    second = finished(trained, runs / "tiny-2", 1)
    metrics = json.loads((second / "metrics.json").read_text())
    metrics["test"] = {"accuracy": 0.125, "loss": 2.5}
    (second / "metrics.json").write_text(json.dumps(metrics))
    unfinished(trained, runs / "tiny-3", 2, backup=2, asked=9)
    first = json.loads((trained / "metrics.json").read_text())["test"]
    last = (trained / "history.csv").read_text().splitlines()[-1].split(",")
    header = (trained / "history.csv").read_text().splitlines()[0].split(",")
    second_last = (trained / "history.csv").read_text().splitlines()[2].split(",")

    (tmp_path / "plots").mkdir()  # a missing folder: tests/test_e2e_mistakes.py
    result = dlcli(
        "runs",
        "--compare",
        "tiny-1",
        "runs/tiny-2",
        "tiny-3",
        "--output",
        "plots/all.png",
        cwd=tmp_path,
    )

    assert (result.returncode, result.stderr) == (0, "")
    png = (tmp_path / "plots" / "all.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    rows = {row[0]: row[1:] for row in table_rows(result.stdout)}
    assert rows[""] == ["tiny-1", "tiny-2", "tiny-3"]
    assert rows["status"] == ["finished", "finished", "interrupted, resumable"]
    assert rows["epochs"] == ["3/3", "3/3", "2/9"]
    assert rows["test accuracy"] == [f"{first['accuracy']:.4f}", "0.1250", ""]
    assert rows["test loss"] == [f"{first['loss']:.4f}", "2.5000", ""]
    val_loss = header.index("val_loss")
    assert rows["last epoch val_loss"] == [f"{float(last[val_loss]):.4f}"] * 2 + [
        f"{float(second_last[val_loss]):.4f}"
    ]
    assert result.stdout.splitlines()[-1] == "Plot: plots/all.png"


def test_compare_json_and_the_default_plot(trained: Path, tmp_path: Path) -> None:
    finished(trained, tmp_path / "runs" / "tiny-1", 0)
    finished(trained, tmp_path / "other" / "tiny-1", 1)

    result = dlcli("runs", "--compare", "tiny-1", "other/tiny-1", "--json", cwd=tmp_path)

    assert (result.returncode, result.stderr) == (0, "")
    document = json.loads(result.stdout)
    assert document["plot"] == "compare.png"
    assert (tmp_path / "compare.png").read_bytes().startswith(b"\x89PNG")
    assert [run["label"] for run in document["runs"]] == ["runs/tiny-1", "other/tiny-1"]
    assert set(document["runs"][0]["last_epoch"]) == {
        "accuracy",
        "loss",
        "val_accuracy",
        "val_loss",
    }


MISTAKES = {
    "a --dir that does not exist": (["--dir", "nope"], "--dir nope: no such folder"),
    "a --dir that is a file": (["--dir", "notes.txt"], "--dir notes.txt: not a folder"),
    "compare one run": (
        ["--compare", "tiny-1"],
        "--compare needs at least two runs; received 1: tiny-1",
    ),
    "compare nothing": (["--compare"], "--compare needs at least two runs; received none"),
    "compare a run that does not exist": (
        ["--compare", "tiny-1", "nope"],
        "no run folder nope (looked for nope and runs/nope)",
    ),
    "compare a folder that is not a run": (
        ["--compare", "tiny-1", "notes"],
        "runs/notes: not a dlcli run folder (it holds no spec.yaml or run.json)",
    ),
    "compare a run with itself": (
        ["--compare", "tiny-1", "runs/tiny-1"],
        "--compare names runs/tiny-1 twice",
    ),
    "compare a run that finished no epoch": (
        ["--compare", "tiny-1", "tiny-2"],
        "runs/tiny-2: no epoch finished (no history.csv), nothing to compare",
    ),
    "--output without --compare": (
        ["--output", "x.png"],
        "--output names the plot of --compare; add --compare RUN RUN ...",
    ),
    "list a run that does not exist": (
        ["tiny-7"],
        "no run folder tiny-7 (looked for tiny-7 and runs/tiny-7)",
    ),
}


@pytest.mark.parametrize(("arguments", "message"), MISTAKES.values(), ids=MISTAKES.keys())
def test_mistakes_are_one_line_and_exit_2(
    trained: Path, tmp_path: Path, arguments: list[str], message: str
) -> None:
    finished(trained, tmp_path / "runs" / "tiny-1", 0)
    unfinished(trained, tmp_path / "runs" / "tiny-2", 1, backup=None, asked=3)
    (tmp_path / "runs" / "notes").mkdir()
    (tmp_path / "notes.txt").write_text("not a folder\n")

    result = dlcli("runs", *arguments, cwd=tmp_path)

    assert (result.returncode, result.stderr, result.stdout) == (2, f"Error: {message}\n", "")
    assert not (tmp_path / "compare.png").exists()


@pytest.mark.parametrize("arguments", [[], ["--dir", "empty"], ["--json"]])
def test_no_runs_is_a_note_and_exit_0(tmp_path: Path, arguments: list[str]) -> None:
    (tmp_path / "empty").mkdir()
    folder = "empty" if "empty" in arguments else "runs"

    result = dlcli("runs", *arguments, cwd=tmp_path)

    assert result.returncode == 0
    assert result.stderr == f"No runs in {folder}/ (dlcli train SPEC writes them there)\n"
    expected = json.dumps({"dir": folder, "runs": []}, indent=2) + "\n"
    assert result.stdout == (expected if "--json" in arguments else "")


def test_tensorflow_is_never_imported(trained: Path, tmp_path: Path) -> None:
    finished(trained, tmp_path / "runs" / "tiny-1", 0)
    unfinished(trained, tmp_path / "runs" / "tiny-2", 1, backup=2, asked=3)
    for arguments in (["runs"], ["runs", "--compare", "tiny-1", "tiny-2"]):
        result = dlcli(*arguments, cwd=tmp_path, importtime=True)
        assert result.returncode == 0, result.stderr[-2000:]
        assert HEAVY.findall(result.stderr) == [], arguments


def test_a_hundred_runs_are_listed_at_once(trained: Path, tmp_path: Path) -> None:
    """70 finished, 20 resumable and 10 failed runs; the target is 0.5 s besides Python's
    start (measured against `dlcli runs` in an empty folder, so a busy machine slows both)."""
    runs = tmp_path / "runs"
    for index in range(100):
        run = runs / f"tiny-{index + 1}"
        if index % 10 < 7:
            finished(trained, run, index)
        else:
            unfinished(trained, run, index, backup=2 if index % 10 < 9 else None, asked=3)
    empty = tmp_path / "empty"
    (empty / "runs").mkdir(parents=True)
    seconds: dict[Path, list[float]] = {tmp_path: [], empty: []}
    for _ in range(3):  # alternating with an empty folder: Python's and Typer's start apart
        for folder, timings in seconds.items():
            began = time.perf_counter()
            result = dlcli("runs", cwd=folder)
            timings.append(time.perf_counter() - began)
            assert result.returncode == 0, result.stderr
    result = dlcli("runs", cwd=tmp_path)
    assert result.stderr == ""
    statuses = [row[5] for row in table_rows(result.stdout)[1:]]
    assert (statuses.count("finished"), statuses.count("interrupted, resumable")) == (70, 20)
    assert statuses.count("failed, no backup") == 10
    hundred, none = (statistics.median(seconds[folder]) for folder in (tmp_path, empty))
    print(f"dlcli runs: 100 runs {hundred:.2f} s, none {none:.2f} s (medians of 3)")
    assert hundred - none < 0.75, seconds


def test_the_rules_are_those_of_dlcli_train(trained: Path, tmp_path: Path) -> None:
    """dlcli.runs.listing does not import dlcli.train.pipeline (it would load numpy and the data
    modules): both
    read backups through dlcli.runs.folder, and their answers must agree."""
    from dlcli.runs import record

    assert record.RUN_RECORD in listing.RUN_FILES
    folders = {
        "resumable": unfinished(trained, tmp_path / "a-1", 0, backup=2, asked=3),
        "failed": unfinished(trained, tmp_path / "a-2", 1, backup=None, asked=3),
    }
    (folders["failed"] / "backup" / ".partial").mkdir(parents=True)  # a generation half-written
    for status, folder in folders.items():
        assert listing.read_run(folder).status == status
        assert record.resumable(folder) == (status == "resumable")


def test_every_interrupted_run_gets_its_resume_command(trained: Path, tmp_path: Path) -> None:
    unfinished(trained, tmp_path / "runs" / "tiny-1", 0, backup=1, asked=3)
    unfinished(trained, tmp_path / "runs" / "tiny-2", 1, backup=2, asked=3)
    result = dlcli("runs", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[-2:] == [
        "Resume tiny-1: dlcli train --resume runs/tiny-1",
        "Resume tiny-2: dlcli train --resume runs/tiny-2",
    ]


def test_a_runs_data_file_is_shown_from_the_current_folder(trained: Path, tmp_path: Path) -> None:
    """A spec names its data relative to its own folder (here ../../data.npz, as a search's
    best.yaml does); the table shows that file from the folder `dlcli runs` runs in."""
    run = unfinished(trained, tmp_path / "runs" / "tiny-1", 0, backup=1, asked=3)
    record = json.loads((run / "run.json").read_text())
    record["spec_dir"] = str(tmp_path / "runs" / "tiny-tune-1")
    (run / "run.json").write_text(json.dumps(record))
    spec = (run / "spec.yaml").read_text()
    (run / "spec.yaml").write_text(spec.replace("data.npz", "../../data.npz"))
    result = dlcli("runs", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["runs"][0]["dataset"] == "data.npz"
