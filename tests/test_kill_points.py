"""kill -9 at every write point of a run: a real `dlcli train` (subprocess, 3 epochs, tiny data,
empty cache) killed by strace's fault injection just before one of its writes to the run
folder or the cache, then `dlcli train --resume`, and the invariants checked.

The write points are found by tracing one uninterrupted run: each system call of the process's
main thread that creates, writes, flushes, renames or removes a file or folder in the run
folder or the cache (temporary files included: dlcli names them without randomness). strace
counts the calls on those paths, so `inject=...:when=K` kills the process as it enters the
K-th one, before the call takes effect. `make test` checks an even sample of the points
(DLCLI_KILL_POINTS, default 1); `make test-crash` checks every one (DLCLI_KILL_POINTS=all),
two at a time in two folders (DLCLI_KILL_WORKERS).

TensorFlow writes its compiled programs through temporary files named with the process id:
those writes cannot be aimed at by path and are left out; the rename that publishes each
program is in.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from .helpers import FINISHED_RUN_FILES, tiny_spec, write_tiny_data

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")

EPOCHS = 3
SPEC = tiny_spec(
    model={
        "layers": [
            {"Dense": {"units": 8, "activation": "relu"}},
            {"Dropout": {"rate": 0.25}},
            {"Dense": {"units": 3, "activation": "softmax"}},
        ]
    },
    # One epoch per execution: a backup generation after each epoch, so that the kill points
    # include a generation replacing the one before (tests/test_tiny_epochs.py kills a run of
    # several epochs to one compiled program).
    compile={"jit_compile": True, "steps_per_execution": 1},
    fit={"epochs": EPOCHS, "batch_size": 16},
)
# The calls that change a file or folder, and openat (which creates files): the set strace
# traces and counts, in the discovery run and the killed runs alike.
CALLS = (
    "openat,write,pwrite64,rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat,rmdir,"
    "fsync,fdatasync,ftruncate"
)
_CHANGES = re.compile(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC")
_LINE = re.compile(r"^(\d+) +(\w+)\((.*)$")
_PATHS = re.compile(r'"(/[^"]*)"|<(/[^>]*)>')


@dataclass(frozen=True)
class Point:
    """A traced call on the watched paths, where strace kills the run: the `number`-th of all
    of them, the `nth` of its kind (strace counts each kind of call on its own)."""

    number: int
    call: str
    nth: int
    path: str


@dataclass(frozen=True)
class Workspace:
    """A fixed folder (so the traced paths are the same in every run) with the spec, its data,
    an earlier finished run (runs/tiny-1, the uninterrupted run) and the cache folder."""

    root: Path
    env: dict[str, str]

    @property
    def run(self) -> Path:  # the run that is killed and resumed
        return self.root / "runs" / "tiny-2"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def dlcli(
        self, *arguments: str, strace: list[str] | None = None
    ) -> subprocess.CompletedProcess:
        command = [*(strace or []), sys.executable, "-m", "dlcli", *arguments]
        return subprocess.run(
            command,
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def clone(self, root: Path) -> Workspace:
        """The same spec, data and earlier run in another folder."""
        for name in ("spec.yaml", "data.npz"):
            shutil.copy(self.root / name, root / name)
        shutil.copytree(self.root / "runs" / "tiny-1", root / "runs" / "tiny-1")
        return Workspace(root, {**self.env, "DLCLI_CACHE": str(root / "cache")})

    def reset(self) -> None:
        """Back to before the run: only tiny-1, an empty cache."""
        for run in self.root.glob("runs/tiny-*"):
            if run.name != "tiny-1":
                shutil.rmtree(run)
        shutil.rmtree(self.cache, ignore_errors=True)


def _paths(arguments: str) -> list[str]:
    return [quoted or annotated for quoted, annotated in _PATHS.findall(arguments)]


def watched_paths(trace: str, pid: int, folders: list[Path]) -> list[str]:
    """The paths in `folders` that the main thread changes (a call other than a read-only
    openat), from a trace of all its calls; TensorFlow's temporary files, named with the
    process id, are left out."""
    roots = [str(folder) for folder in folders]
    paths: list[str] = []
    for call, arguments in _calls(trace, pid):
        if call == "openat" and not _CHANGES.search(arguments):
            continue
        for path in _paths(arguments):
            inside = any(path == root or path.startswith(root + "/") for root in roots)
            if inside and f"-{pid}-" not in path and path not in paths:
                paths.append(path)
    return paths


def write_points(trace: str, pid: int) -> list[Point]:
    """The main thread's calls in a trace made with the watched paths as strace's filter (-P),
    so that they are counted exactly as strace counts them when it injects the kill."""
    points: list[Point] = []
    for call, arguments in _calls(trace, pid):
        nth = 1 + sum(point.call == call for point in points)
        points.append(Point(len(points) + 1, call, nth, target(call, arguments)))
    return points


def target(call: str, arguments: str) -> str:
    """The path a call acts on, from its arguments (not its result): for the *at calls, a
    folder's descriptor and a name in it are joined.

    Example:
        >>> target("openat", '6</r/backup>, ".partial", O_RDONLY) = 7</r/backup/.partial>')
        '/r/backup/.partial'
        >>> target("rename", '"/r/a.tmp", "/r/a") = 0'), target("write", '4</r/x>, "ab", 2')
        ('/r/a.tmp', '/r/x')
    """
    given = arguments.rsplit(") = ", 1)[0]
    relative = re.match(r'\d+<(/[^>]*)>, "([^"/][^"]*)"', given)
    if relative and call in ("openat", "unlinkat", "mkdirat", "renameat", "renameat2"):
        return f"{relative[1]}/{relative[2]}"
    return (_paths(given) or ["?"])[0]


def _calls(trace: str, pid: int) -> list[tuple[str, str]]:
    """(call, arguments) of each call the thread `pid` entered, in order."""
    calls = []
    for line in trace.splitlines():
        found = _LINE.match(line)
        if found and int(found[1]) == pid and "resumed>" not in line:
            calls.append((found[2], found[3]))
    return calls


def sample(points: list[Point], setting: str) -> list[Point]:
    """All points, or `setting` of them spread evenly between the first and the last (those
    inside a run's life, where a kill leaves the most to recover).

    Example:
        >>> [p.number for p in sample([Point(n, "write", n, "/x") for n in range(1, 12)], "3")]
        [3, 6, 9]
    """
    if setting == "all" or int(setting) >= len(points):
        return points
    count = int(setting)
    return [points[round((i + 1) * (len(points) + 1) / (count + 1)) - 1] for i in range(count)]


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def model_weights(model: Path) -> list[np.ndarray]:
    """Every array in model.keras's weights, in the file's order (read with h5py, no Keras)."""
    import h5py

    with zipfile.ZipFile(model) as archive:
        data = archive.read("model.weights.h5")
    arrays: list[np.ndarray] = []
    with h5py.File(io.BytesIO(data), "r") as weights:
        weights.visititems(
            lambda _, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None
        )
    return arrays


def temporary_files(folder: Path) -> list[str]:
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.name.startswith(".") or path.name.endswith(".tmp")
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, user_env: dict[str, str]) -> Workspace:
    root = tmp_path_factory.mktemp("kill-points")
    write_tiny_data(root, 400, test_rows=80, classes=3, spec=SPEC)
    return Workspace(
        root,
        {
            **user_env,
            "DLCLI_CACHE": str(root / "cache"),
            "COLUMNS": "200",
            "TF_CPP_MIN_LOG_LEVEL": "3",
        },
    )


def traced(
    workspace: Workspace, name: str, *options: str
) -> tuple[str, int, subprocess.CompletedProcess]:
    """`dlcli train spec.yaml` under strace with `options`: the trace, the process id and the
    result."""
    trace = workspace.root / f"{name}.trace"
    strace = ["strace", "-f", "-qq", "-y", "-o", str(trace), "-e", f"trace={CALLS}", *options, "--"]
    result = workspace.dlcli("train", "spec.yaml", strace=strace)
    text = trace.read_text()
    return text, int(text.split(maxsplit=1)[0]), result


@pytest.fixture(scope="module")
def discovered(workspace: Workspace) -> tuple[list[str], list[Point], dict[str, str]]:
    """The run uninterrupted, traced twice from an empty cache: as tiny-1 (the earlier run,
    which must never change) to find the paths it changes, and as tiny-2 with those paths
    (of tiny-2) as strace's filter, to count its calls on them as the killed runs will."""
    trace, pid, result = traced(workspace, "discovery", "--seccomp-bpf")
    assert result.returncode == 0, result.stderr
    earlier = workspace.root / "runs" / "tiny-1"
    paths = [
        path.replace(f"{earlier}", f"{workspace.run}")
        for path in watched_paths(trace, pid, [earlier, workspace.cache])
    ]
    workspace.reset()
    trace, pid, result = traced(workspace, "counted", *(f"-P{path}" for path in paths))
    assert result.returncode == 0, result.stderr
    assert (workspace.run / "history.csv").read_text() == (earlier / "history.csv").read_text()
    for second, first in zip(
        model_weights(workspace.run / "model.keras"),
        model_weights(earlier / "model.keras"),
        strict=True,
    ):
        np.testing.assert_array_equal(second, first)  # the same seed, the same run
    workspace.reset()
    return paths, write_points(trace, pid), snapshot(earlier)


def kill_at(workspace: Workspace, paths: list[str], point: Point) -> str:
    """Train with strace killing the process at `point`; strace's trace of the killed run."""
    inject = f"inject={point.call}:signal=KILL:when={point.nth}"
    filters = [f"-P{path}" for path in paths]
    trace, _, result = traced(workspace, f"kill-{point.number}", *filters, "-e", inject)
    assert result.returncode in (-9, 137), (point, result.returncode, result.stderr[-2000:])
    return trace


def check_resumed(workspace: Workspace, point: Point, earlier: dict[str, str]) -> str:
    """Resume the killed run and check every invariant; what happened, in a few words."""
    run = workspace.run
    resumable = (run / "run.json").is_file() and (run / "spec.yaml").is_file()
    finished = (run / "model.keras").is_file() and not list(run.glob("backup/epoch-*"))
    result = workspace.dlcli("train", "--resume", "runs/tiny-2")
    context = f"{point}: {result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, context
    assert snapshot(workspace.root / "runs" / "tiny-1") == earlier, context
    if not resumable:  # the user trains again: the cache as the kill left it poisons nothing
        assert result.returncode == 2, context
        assert result.stderr.endswith(
            "Error: --resume runs/tiny-2: no such run directory\n"
            if not run.exists()
            else "Error: --resume runs/tiny-2: not a dlcli run directory (no run.json)\n"
        ), context
        existed = run.exists()
        left = sorted(path.name for path in run.glob("*"))
        assert set(left) <= {"spec.yaml", ".spec.yaml.tmp", ".run.json.tmp"}, context
        again = workspace.dlcli("train", "spec.yaml")
        assert again.returncode == 0, f"{point}: {again.stderr[-3000:]}"
        new_run = workspace.root / "runs" / ("tiny-3" if existed else "tiny-2")
        for retrained, whole in zip(
            model_weights(new_run / "model.keras"),
            model_weights(workspace.root / "runs/tiny-1/model.keras"),
            strict=True,
        ):
            np.testing.assert_array_equal(retrained, whole, err_msg=context)
        assert temporary_files(workspace.cache) == [], context
        return f"not a run yet (left: {', '.join(left) or 'nothing'}); trained again"
    if finished:
        assert result.returncode == 2, context
        assert result.stderr.endswith(
            "Error: --resume runs/tiny-2: this run finished (model.keras exists); nothing to "
            "resume (to train it on, add --set fit.epochs=N with more epochs)\n"
        ), context
    else:
        assert result.returncode == 0, context
    history = (run / "history.csv").read_text()
    assert history == (workspace.root / "runs/tiny-1/history.csv").read_text(), context
    assert [row["epoch"] for row in csv.DictReader(io.StringIO(history))] == ["1", "2", "3"]
    assert json.loads((run / "metrics.json").read_text())["epochs"] == EPOCHS, context
    for resumed, whole in zip(
        model_weights(run / "model.keras"),
        model_weights(workspace.root / "runs" / "tiny-1" / "model.keras"),
        strict=True,
    ):
        np.testing.assert_array_equal(resumed, whole, err_msg=context)
    assert sorted(path.name for path in run.iterdir()) == FINISHED_RUN_FILES, context
    assert temporary_files(workspace.root / "runs") == [], context
    assert temporary_files(workspace.cache) == [], context
    programs = next(workspace.cache.glob("xla/*"), None)
    if programs is not None:  # every program kept is one a finished run recorded
        recorded = json.loads((programs / "dlcli-programs.json").read_text())
        for program in programs.glob("*.pb"):
            assert recorded[program.name] == hashlib.sha256(program.read_bytes()).hexdigest()
    if finished:
        return "killed after the run finished: nothing to resume, nothing missing"
    resumed_from = re.search(r"Resuming after epoch (\d+)", result.stderr)
    return f"resumed after epoch {resumed_from[1]}" if resumed_from else "resumed from epoch 1"


def test_kill_at_every_write_point_then_resume(
    workspace: Workspace,
    discovered: tuple[list[str], list[Point], dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
    record_property: pytest.RecordProperty,
) -> None:
    paths, points, earlier = discovered
    assert len(points) > 50, points  # spec.yaml ... every epoch's generation ... model and plots
    chosen = sample(points, os.environ.get("DLCLI_KILL_POINTS", "1"))
    workers = int(os.environ.get("DLCLI_KILL_WORKERS", "1"))
    spaces = [
        workspace,
        *(workspace.clone(tmp_path_factory.mktemp("kill-points")) for _ in range(workers - 1)),
    ]

    def work(space: Workspace, share: list[Point]) -> list[str]:
        moved = [path.replace(str(workspace.root), str(space.root)) for path in paths]
        report = []
        for point in share:
            point = replace(point, path=point.path.replace(str(workspace.root), str(space.root)))
            space.reset()
            trace = kill_at(space, moved, point)
            killed = [found for line in trace.splitlines() if (found := _LINE.match(line))][-1]
            assert (killed[2], target(killed[2], killed[3])) == (point.call, point.path), (
                point,
                killed[0],
            )
            where = point.path.removeprefix(f"{space.root}/")
            outcome = check_resumed(space, point, earlier)
            report.append(f"{point.number:4d} {point.call:9s} {where}: {outcome}")
        return report

    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:  # each worker a folder and a process at a time
        reports = pool.map(work, spaces, [chosen[start::workers] for start in range(workers)])
        report = sorted(line for lines in reports for line in lines)
    record_property("kill_points", f"{len(chosen)} of {len(points)}")
    print(f"\n{len(chosen)} of {len(points)} kill points, {time.monotonic() - started:.0f} s:")
    print("\n".join(report))


def test_a_full_disk_at_the_first_backup_is_one_line_and_leaves_no_run(
    workspace: Workspace,
) -> None:
    """The disk fills as h5py writes the first backup: one `Error:` line, and no run folder left
    behind for a --resume that could not work."""
    run = workspace.root / "full" / "tiny-1"
    weights = run / "backup" / ".partial" / "weights.weights.h5"
    strace = [
        "strace",
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        f"-P{weights}",
        "-e",
        "trace=pwrite64",
        "-e",
        "inject=pwrite64:error=ENOSPC:when=1",
        "--",
    ]
    result = workspace.dlcli("train", "spec.yaml", "--set", "output.dir=full", strace=strace)
    assert result.returncode == 11, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"Error: cannot write the backup of epoch 1 in {run / 'backup'}: No space left on "
        "device; there is no earlier backup to resume from"
    )
    assert "Traceback" not in result.stderr
    assert not (workspace.root / "full").exists()  # made by this run, so removed with it
