"""`dlcli train --resume RUN`: the run's own spec, checked against the file it came from
(the backup it continues from is dlcli.train.backup's)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from dlcli.errors import ConfigError, TrainingError, UsageError
from dlcli.spec import Spec, format_path
from dlcli.train.runs import BACKUP_DIR, RUN_RECORD, read_record, resumable


def _first_difference(old: Any, new: Any, path: tuple = ()) -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            found = _first_difference(old.get(key), new.get(key), (*path, key))
            if found:
                return found
        return ""
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            found = _first_difference(a, b, (*path, index))
            if found:
                return found
        return ""
    return "" if old == new else f"{format_path(path)}: {old!r} -> {new!r}"


def prepare_resume(run_dir: Path, *, restart: bool = False) -> tuple[Spec, Path]:
    """The spec and spec folder to continue `run_dir` with.

    The run's own spec.yaml is the spec. If the spec file it came from has changed since, resuming
    is refused (the backup belongs to the old spec) unless `restart`, which starts the run over
    with the file as it is now. A finished run is not resumed. `run_dir` exists: the caller
    has checked it and holds its lock (`dlcli.train.run`).
    """
    from dlcli.spec import load_spec

    record_path = run_dir / RUN_RECORD
    if not record_path.is_file() or not (run_dir / "spec.yaml").is_file():
        raise UsageError(f"--resume {run_dir}: not a dlcli run directory (no {RUN_RECORD})")
    # a backup beside model.keras: an earlier --restart that did not finish
    if (run_dir / "model.keras").exists() and not restart and not resumable(run_dir):
        shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)  # what a kill left of none
        raise UsageError(
            f"--resume {run_dir}: this run finished (model.keras exists); nothing to resume"
        )
    record = read_record(record_path)
    try:
        recorded = load_spec(run_dir / "spec.yaml")
    except ConfigError as error:
        raise TrainingError(
            f"--resume {run_dir}: its spec.yaml is damaged ({error}); this run cannot be "
            "resumed, train again with: dlcli train SPEC"
        ) from error
    spec_file = Path(record["spec_file"]) if record["spec_file"] else None
    spec = recorded
    if spec_file is not None and spec_file.is_file():
        current = load_spec(spec_file, record["overrides"])
        if current.seed is None:
            current = current.model_copy(update={"seed": recorded.seed})
        change = _first_difference(
            recorded.model_dump(mode="json"), current.model_dump(mode="json")
        )
        if change and not restart:
            raise ConfigError(
                f"--resume {run_dir}: {spec_file} changed since the run was interrupted "
                f"({change}); undo the change to resume, or add --restart to start the run over"
            )
        spec = current
    if restart:
        # model.keras and its files stay until the restarted run replaces them
        for leftover in (run_dir / BACKUP_DIR, run_dir / "history.csv"):
            if leftover.is_dir():
                shutil.rmtree(leftover)
            elif leftover.exists():
                leftover.unlink()
    return spec, Path(record["spec_dir"])
