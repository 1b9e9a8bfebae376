"""The run folder: `runs/<name>-<n>/`, its record (run.json) and its history (history.csv).

A new run's folder is created only once the data and the model have been checked, and a run
that fails before it holds a backup to resume leaves none behind.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shlex
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from dlcli.distribute.cluster import LAUNCHED
from dlcli.errors import OutputError, TrainingError
from dlcli.runs.folder import generations, lock_holders
from dlcli.spec.schema import Spec

RUN_RECORD = "run.json"  # what --resume needs besides spec.yaml: the spec's folder


def resume_command(run_dir: Path) -> str:
    """The command that continues a run (with `--workers N` if dlcli launched its workers)."""
    workers = os.environ.get(LAUNCHED, "")
    command = f"dlcli train --resume {shell_path(run_dir)}"
    return f"{command} --workers {workers}" if workers else command


def output_folder(spec: Spec) -> Path:
    """The folder runs go to (`output.dir`, relative to the current folder), checked before
    anything slow happens: it, or the folder it will be made in, must be writable. It is made
    with the first run folder in it (`new_run_dir`), so a run that fails first leaves none."""
    output_dir = Path(spec.output.dir)
    output_dir = output_dir if output_dir.is_absolute() else Path.cwd() / output_dir
    existing = next(folder for folder in (output_dir, *output_dir.parents) if folder.exists())
    if not existing.is_dir():
        raise OutputError(f"cannot create {output_dir}: {existing} is not a folder")
    if not os.access(existing, os.W_OK):
        raise OutputError(f"cannot write to {existing}: permission denied")
    return output_dir


def made(output_dir: Path) -> Path:
    """`output_dir`, created if it is not there yet."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create {output_dir}: {error.strerror}") from error
    return output_dir


def new_run_dir(output_dir: Path, name: str) -> Path:
    """Create `output_dir/<name>-<n>` atomically with the next free n; earlier runs untouched."""
    made(output_dir)
    taken = [p.name.removeprefix(f"{name}-") for p in output_dir.glob(f"{name}-*")]
    number = max((int(n) for n in taken if n.isdigit()), default=0) + 1
    while True:
        run_dir = output_dir / f"{name}-{number}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            number += 1
        except OSError as error:
            raise OutputError(f"cannot create {run_dir}: {error.strerror}") from error


@contextmanager
def kept_only_if_resumable(
    run_dir: Path, resuming: bool, *, made_output_dir: bool = False
) -> Iterator[None]:
    """A new run that fails before it holds a backup to resume (or a model) leaves no folder,
    and no empty output folder when this run made it (`made_output_dir`)."""
    try:
        yield
    except BaseException:
        if not resuming and not resumable(run_dir) and not (run_dir / "model.keras").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
            if made_output_dir:
                with suppress(OSError):  # another run's folder in it keeps it
                    run_dir.parent.rmdir()
        raise


def resumable(run_dir: Path) -> bool:
    """Whether the run holds a backup of at least one epoch."""
    return bool(generations(run_dir))


def write_record(
    run_dir: Path,
    spec: Spec,
    spec_dir: Path,
    spec_file: Path | None,
    overrides: Sequence[str],
    *,
    new: bool,
) -> None:
    """spec.yaml (resolved, with the seed; rewritten when a run restarts with a changed spec)
    and, for a `new` run, run.json: where the spec and its data are, for --resume."""
    from dlcli.model.artifact import write_json
    from dlcli.utils.atomic import atomic_write

    atomic_write(run_dir / "spec.yaml", spec.to_yaml().encode())
    if new:
        record = {
            "spec_dir": str(spec_dir.resolve()),
            "spec_file": str(spec_file.resolve()) if spec_file else None,
            "overrides": list(overrides),
        }
        write_json(run_dir / RUN_RECORD, record)


def read_record(path: Path) -> dict[str, Any]:
    """run.json, checked: a damaged one cannot say where the spec and its data were."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        if not isinstance(record.get("spec_dir"), str):
            raise ValueError("`spec_dir` is missing")
        if not isinstance(record.get("spec_file"), str | None):
            raise ValueError("`spec_file` is not a path")
        overrides = record.get("overrides", [])
        if not (isinstance(overrides, list) and all(isinstance(o, str) for o in overrides)):
            raise ValueError("`overrides` is not a list of KEY=VALUE strings")
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError included
        raise TrainingError(
            f"--resume {path.parent}: {path.name} is damaged ({error}); this run cannot be "
            "resumed, train again with: dlcli train SPEC"
        ) from error
    return {
        "spec_dir": record["spec_dir"],
        "spec_file": record.get("spec_file"),
        "overrides": overrides,
        "mlflow": record.get("mlflow") if isinstance(record.get("mlflow"), dict) else None,
    }


def record_tracking(run_dir: Path, tracking: dict[str, str]) -> None:
    """Add the run's MLflow run (id, tracking URI, experiment) to its run.json, which keeps its
    modification time: the run's start (dlcli.runs.listing)."""
    from dlcli.model.artifact import write_json

    path = run_dir / RUN_RECORD
    times = os.stat(path)
    record = json.loads(path.read_text(encoding="utf-8"))
    write_json(path, {**record, "mlflow": tracking})
    os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))


def read_history(path: Path) -> dict[str, list[float]]:
    """history.csv (continuous across resumes) as columns; an epoch without a value (NA: not
    validated, with fit.validation_freq) reads as NaN."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = [key for key in (rows[0] if rows else {}) if key != "epoch"]
    return {
        key: [float(row[key]) if row[key] not in ("", "NA") else math.nan for row in rows]
        for key in columns
    }


def read_rows(path: Path) -> list[dict[str, float]]:
    """history.csv as the rows `write_history` writes (an NA cell left out of its row)."""
    with path.open(newline="") as handle:
        return [
            {
                key: int(value) if key == "epoch" else float(value)
                for key, value in row.items()
                if value not in ("", "NA")
            }
            for row in csv.DictReader(handle)
        ]


def write_history(path: Path, rows: list[dict[str, float]]) -> None:
    """history.csv: a row per epoch, numbered from 1 as the progress table and curves are, the
    columns in Keras's CSVLogger order (epoch, then the logs' names sorted)."""
    from dlcli.utils.atomic import atomic_write

    names = sorted({name for row in rows for name in row} - {"epoch"})
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["epoch", *names])
    writer.writerows([row["epoch"], *(row.get(name, "NA") for name in names)] for row in rows)
    atomic_write(path, text.getvalue().encode())


def shell_path(path: Path) -> str:
    """A path as the user would type it: relative to the current folder when inside it."""
    try:
        return shlex.quote(str(path.relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(path))


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold the run folder for this process (an OS lock, released when the process ends, also
    by kill -9): a second process that trains or resumes the same run is refused.

    Raises:
        TrainingError: another process holds the run, named by its process id where the
            system says it (Linux's /proc/locks).
    """
    import fcntl

    handle = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(run_dir)
            raise TrainingError(
                f"{shell_path(run_dir)} is being trained by {holder}; wait for it to finish, "
                "or stop it first"
            ) from None
        yield
    finally:
        os.close(handle)


def _lock_holder(path: Path) -> str:
    """ "process N" holding an flock on `path`, from /proc/locks; "another process" elsewhere."""
    return lock_holders().get(os.stat(path).st_ino, "another process")
