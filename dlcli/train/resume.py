"""`dlcli train --resume RUN`: the run's own spec, checked against the file it came from, and
its newest backup (written by dlcli.train.backup) loaded into the model."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlcli.errors import ConfigError, TrainingError, UsageError
from dlcli.runs.folder import BACKUP_DIR
from dlcli.runs.record import RUN_RECORD, read_record, resumable, shell_path
from dlcli.spec.messages import format_path
from dlcli.spec.schema import Spec
from dlcli.train import backup
from dlcli.train.fine_tune import FIRST_PHASE, SECOND_PHASE

if TYPE_CHECKING:
    from dlcli.train.pipeline import ProgressView


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


def prepare_resume(
    run_dir: Path, *, restart: bool = False, epochs: int | None = None, read_only: bool = False
) -> tuple[Spec, Path]:
    """The spec and spec folder to continue `run_dir` with.

    The run's own spec.yaml is the spec. If the spec file it came from has changed since, resuming
    is refused (the backup belongs to the old spec) unless `restart`, which starts the run over
    with the file as it is now. A finished run is not resumed, unless `epochs` asks for more
    epochs than it had: it then trains on from its model.keras, in the same folder. `run_dir`
    exists: the caller has checked it and holds its lock (`dlcli.train.pipeline.run`), or reads it
    only
    (`read_only`: a worker of a cluster besides the chief, which changes the folder for all).
    """
    from dlcli.spec.load import load_spec

    record_path = run_dir / RUN_RECORD
    if not record_path.is_file() or not (run_dir / "spec.yaml").is_file():
        raise UsageError(f"--resume {run_dir}: not a dlcli run directory (no {RUN_RECORD})")
    finished = (run_dir / "model.keras").exists() and not resumable(run_dir)
    # a backup beside model.keras: an earlier --restart that did not finish
    if finished and not restart and epochs is None:
        if not read_only:
            shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)  # a kill's leftovers
        raise UsageError(
            f"--resume {run_dir}: this run finished (model.keras exists); nothing to resume "
            "(to train it on, add --set fit.epochs=N with more epochs)"
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
    if epochs is not None and read_only:  # the chief checks it and records it
        spec = spec.model_copy(update={"fit": spec.fit.model_copy(update={"epochs": epochs})})
    elif epochs is not None:
        spec = _with_more_epochs(run_dir, spec, epochs, finished=finished)
    if restart and not read_only:
        # model.keras and its files stay until the restarted run replaces them
        for leftover in (run_dir / BACKUP_DIR, run_dir / "history.csv"):
            if leftover.is_dir():
                shutil.rmtree(leftover)
            elif leftover.exists():
                leftover.unlink()
    return spec, Path(record["spec_dir"])


def _with_more_epochs(run_dir: Path, spec: Spec, epochs: int, *, finished: bool) -> Spec:
    """`spec` asking for `epochs`, recorded in run.json; a finished run's model becomes its
    backup to go on from."""
    from dlcli.model.artifact import write_json

    if epochs <= spec.fit.epochs:
        raise UsageError(
            f"--resume {run_dir} --set fit.epochs={epochs}: the run asks for {spec.fit.epochs} "
            "epochs already; give more to train on"
        )
    if finished:  # a two-phase run ends in its second phase, and trains on in it
        backup.from_finished(run_dir, SECOND_PHASE if spec.fit.fine_tune else FIRST_PHASE)
    record = read_record(run_dir / RUN_RECORD)
    overrides = [o for o in record["overrides"] if not o.startswith("fit.epochs=")]
    write_json(run_dir / RUN_RECORD, {**record, "overrides": [*overrides, f"fit.epochs={epochs}"]})
    return spec.model_copy(update={"fit": spec.fit.model_copy(update={"epochs": epochs})})


def more_epochs(
    resume: Path, spec_path: Path | None, overrides: Sequence[str], *, restart: bool
) -> int | None:
    """N from `--resume RUN --set fit.epochs=N`; any other spec or override is refused."""
    key, _, value = overrides[0].partition("=") if len(overrides) == 1 else ("", "", "")
    if spec_path is None and not overrides:
        return None
    if spec_path is None and not restart and key.strip() == "fit.epochs" and value.isdigit():
        return int(value)
    given = " ".join([str(spec_path or ""), *(f"--set {o}" for o in overrides)]).strip()
    raise UsageError(
        f"--resume continues {resume} with its own spec.yaml, so `{given}` cannot be applied "
        "(only --set fit.epochs=N, to train on); to change the spec, edit the spec file and "
        "add --restart"
    )


def restore_backup(
    model: Any,
    run_dir: Path,
    epochs: int,
    view: ProgressView,
    *,
    tidy: bool,
    enter_second_phase: Callable[[], str],
) -> backup.Generation | None:
    """Load the run's newest backup generation into the model (None when it has none), after
    removing what a killed run left half-written (if `tidy`: the run is this process's).

    A generation of the second phase of `fit.fine_tune` is loaded into the model as that phase
    trains it: `enter_second_phase` unfreezes and recompiles it first, so its optimizer has the
    variables the backup holds; what it did is said after the resume."""
    generation = backup.latest(run_dir)
    if tidy:
        backup.tidy(run_dir)
    if generation is None:
        return None
    try:
        phase_note = enter_second_phase() if generation.phase == SECOND_PHASE else None
        backup.restore(model, generation)
    except (OSError, ValueError) as error:
        raise TrainingError(
            f"the backup in {run_dir / BACKUP_DIR} cannot be restored ({error}); start the run "
            f"over with: dlcli train --resume {shell_path(run_dir)} --restart"
        ) from error
    view.note(f"Resuming after epoch {generation.epoch} of {epochs}, from its backup")
    if phase_note is not None:
        view.note(phase_note)
    return generation
