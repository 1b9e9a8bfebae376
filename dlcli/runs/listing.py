"""The runs in a folder, read from their files alone: `dlcli runs` lists them and compares them.

A run folder (`runs/<name>-<n>/`, see dlcli.runs.record) is one that holds `spec.yaml` or
`run.json`, the files a run writes first. Its status comes from what it holds:

- finished: `model.keras` and `metrics.json` (both read: dlcli.json through dlcli.model.artifact);
- running: a process holds the folder's lock (Linux's /proc/locks; not seen elsewhere);
- resumable: a backup generation `backup/epoch-N/`, the rule of dlcli.runs.record.resumable;
- failed: none of these (it stopped before its first backup);
- damaged: a file that should say more cannot be read; the reason is kept.

A run's start time is the modification time of its run.json, written once as the run starts
(`spec.yaml` is rewritten by `--restart`, and the folder's times change with every backup).
Nothing here imports TensorFlow, Keras or dlcli.train.pipeline (which loads numpy and the data
modules): `dlcli runs` answers at once for hundreds of runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dlcli.errors import DlcliError, UsageError
from dlcli.runs.folder import generations, lock_holders

if TYPE_CHECKING:
    from pydantic import BaseModel

    from dlcli.spec.schema import DatasetSpec

Record = TypeVar("Record", bound="BaseModel")

DEFAULT_FOLDER = Path("runs")
DEFAULT_PLOT = Path("compare.png")
RUN_FILES = ("spec.yaml", "run.json")  # a folder holding neither is not a run


@dataclass(frozen=True)
class Headline:
    """The one score a run is known by, and the split it was measured on."""

    name: str
    value: float
    split: str


@dataclass(frozen=True)
class RunSummary:
    """One run as `dlcli runs` shows it; `detail` is why it is damaged, or who is running it."""

    path: Path
    started: float  # seconds since the epoch (run.json's modification time)
    status: str  # finished, running, resumable, failed or damaged
    dataset: str | None = None
    epochs_done: int = 0
    epochs_asked: int | None = None
    evaluated_on: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    model: Path | None = None
    detail: str | None = None
    mlflow: dict[str, str] | None = None  # the MLflow run it is mirrored to (run.json)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def headline(self) -> Headline | None:
        name = headline_metric(list(self.scores))
        if name is None or self.evaluated_on is None:
            return None
        return Headline(name, self.scores[name], self.evaluated_on)

    def to_dict(self) -> dict[str, Any]:
        headline = self.headline
        return {
            "name": self.name,
            "path": str(self.path),
            "started": datetime.fromtimestamp(self.started).astimezone().isoformat("T", "seconds"),
            "status": self.status,
            "detail": self.detail,
            "dataset": self.dataset,
            "epochs_done": self.epochs_done,
            "epochs_asked": self.epochs_asked,
            "metric": None if headline is None else headline.__dict__,
            "evaluated_on": self.evaluated_on,
            "scores": self.scores,
            "model": None if self.model is None else str(self.model),
            "mlflow": self.mlflow,
        }


@dataclass(frozen=True)
class RunList:
    """The runs of a folder, oldest first, and remarks for stderr (an empty folder)."""

    folder: Path
    runs: list[RunSummary]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"dir": str(self.folder), "runs": [run.to_dict() for run in self.runs]}


@dataclass(frozen=True)
class Comparison:
    """Runs side by side: their summaries, their history.csv columns and the plot written."""

    runs: list[RunSummary]
    labels: list[str]  # the legend's name of each run: its folder name, or path if repeated
    histories: list[dict[str, list[float]]]
    plot: Path

    @property
    def last(self) -> list[dict[str, float]]:
        """Each run's last value of each history column (validation: the last validated)."""
        return [
            {
                name: known[-1]
                for name, values in history.items()
                if (known := [value for value in values if value == value])
            }  # not NaN
            for history in self.histories
        ]

    def to_dict(self) -> dict[str, Any]:
        runs = [
            {**run.to_dict(), "label": label, "last_epoch": last}
            for run, label, last in zip(self.runs, self.labels, self.last, strict=True)
        ]
        return {"plot": str(self.plot), "runs": runs}


def headline_metric(names: Sequence[str]) -> str | None:
    """The metric a run is known by: accuracy, else the first other than a loss, else loss.

    A model of several outputs names its metrics by output (`species_accuracy`), and has a
    loss of each output besides the total.

    Example:
        >>> headline_metric(["loss", "mae"]), headline_metric(["loss"]), headline_metric([])
        ('mae', 'loss', None)
        >>> headline_metric(["auc", "loss", "accuracy"])
        'accuracy'
        >>> headline_metric(["loss", "size_loss", "size_mae", "species_accuracy"])
        'species_accuracy'
    """
    for accuracy in ("accuracy", *(name for name in names if name.endswith("_accuracy"))):
        if accuracy in names:
            return accuracy
    others = (name for name in names if name != "loss" and not name.endswith("_loss"))
    return next(others, "loss" if "loss" in names else None)


def list_runs(folder: Path | None = None, names: Sequence[str] = ()) -> RunList:
    """Every run in `folder` (or the runs `names`), oldest first, read without TensorFlow.

    Args:
        folder: the folder of runs; None is `runs/`, which need not exist yet.
        names: run folders, or names of runs in the folder; empty for every run.

    Returns:
        The runs; a damaged one is listed with the reason, never raised.

    Raises:
        UsageError: `folder` was given and is not a folder, or a name is not a run folder.

    Example:
        [run.status for run in list_runs(Path("runs")).runs]  # ['finished', 'resumable']
    """
    shown_folder = folder or DEFAULT_FOLDER
    paths = [find_run(name, shown_folder) for name in names] if names else _run_folders(folder)
    holders = lock_holders()
    runs = sorted((read_run(path, holders) for path in paths), key=lambda r: (r.started, r.name))
    notes = [] if runs else [f"No runs in {shown_folder}/ (dlcli train SPEC writes them there)"]
    return RunList(shown_folder, runs, notes)


def _run_folders(folder: Path | None) -> list[Path]:
    """The run folders in `folder` (None: `runs/`, which need not exist)."""
    where = folder or DEFAULT_FOLDER
    if not where.is_dir():
        if folder is None and not where.exists():
            return []
        problem = "not a folder" if where.exists() else "no such folder"
        raise UsageError(f"--dir {where}: {problem}")
    with os.scandir(where) as entries:
        folders = [Path(entry.path) for entry in entries if entry.is_dir()]
    return [path for path in folders if any((path / name).is_file() for name in RUN_FILES)]


def find_run(text: str, folder: Path) -> Path:
    """A run folder given as a path, or as a name in `folder`.

    Raises:
        UsageError: neither is a folder, or the folder is not a run.
    """
    candidates = [Path(text), folder / text]
    for path in candidates:
        if path.is_dir() and any((path / name).is_file() for name in RUN_FILES):
            return path
    for path in candidates:
        if path.is_dir():
            raise UsageError(f"{path}: not a dlcli run folder (it holds no spec.yaml or run.json)")
    raise UsageError(f"no run folder {text} (looked for {candidates[0]} and {candidates[1]})")


def read_run(path: Path, holders: dict[int, str] | None = None) -> RunSummary:
    """One run folder's summary; what cannot be read makes it `damaged`, with the reason.

    `holders` maps the inode of each locked folder to its process (`lock_holders`).
    """
    started = 0.0
    try:
        files = set(os.listdir(path))
        started = _started(path, files)
        if {"model.keras", "metrics.json"} <= files:
            summary = _finished(path, started)
        else:
            summary = _unfinished(path, started, files)
        holder = (holders or {}).get(os.stat(path).st_ino)
    except (DlcliError, OSError, ValueError) as error:
        return RunSummary(path, started, "damaged", detail=_reason(error))
    summary = replace(summary, mlflow=_tracking(path, files))
    if holder is not None:  # a run being trained (or restarted: its old result still there)
        return replace(summary, status="running", detail=holder)
    return summary


def _tracking(path: Path, files: set[str]) -> dict[str, str] | None:
    """The MLflow run that run.json names (run_id, tracking_uri, experiment_id), if any."""
    from dlcli.runs.record import read_record

    if "run.json" not in files:
        return None
    try:
        return read_record(path / "run.json")["mlflow"]
    except DlcliError:  # a damaged run.json: the run's other files still say what it is
        return None


def _reason(error: Exception) -> str:
    if isinstance(error, OSError) and error.filename:
        return f"{Path(error.filename).name}: {error.strerror}"
    return str(error)


def _started(path: Path, files: set[str]) -> float:
    """When the run started: run.json's time, else spec.yaml's, else the folder's."""
    name = next((name for name in ("run.json", "spec.yaml") if name in files), None)
    return os.stat(path / name if name else path).st_mtime


def _finished(path: Path, started: float) -> RunSummary:
    """A run with model.keras and metrics.json: both must be readable."""
    from dlcli.model import artifact

    info = artifact.inspect(path / "model.keras").info
    assert info is not None  # inspect requires dlcli.json
    metrics = _typed(path / "metrics.json", artifact.FinalMetrics, _json)
    scores = getattr(metrics, metrics.evaluated_on) or {}
    return RunSummary(
        path,
        started,
        "finished",
        dataset=_dataset(info.spec.dataset, path),
        epochs_done=metrics.epochs,
        epochs_asked=info.spec.fit.epochs,
        evaluated_on=metrics.evaluated_on,
        scores=dict(scores),
        model=path / "model.keras",
    )


def _unfinished(path: Path, started: float, files: set[str]) -> RunSummary:
    """A run without its result: resumable from its newest backup generation, or failed."""
    from dlcli.spec.schema import Spec
    from dlcli.spec.yaml_loader import MAX_SPEC_BYTES

    if "spec.yaml" not in files:
        raise ValueError("spec.yaml is missing")
    spec = _typed(path / "spec.yaml", Spec, _spec_yaml, limit=MAX_SPEC_BYTES)
    epochs = generations(path)
    status = "resumable" if epochs else "failed"
    done = max(epochs) if epochs else _history_rows(path / "history.csv", files)
    return RunSummary(
        path,
        started,
        status,
        dataset=_dataset(spec.dataset, path),
        epochs_done=done,
        epochs_asked=spec.fit.epochs,
    )


def _dataset(dataset: DatasetSpec, path: Path) -> str:
    """Where a run's data came from, as the user would type it here: a file or folder is
    resolved from the folder of the spec that named it (run.json's `spec_dir`), then shown
    relative to the current folder when inside it; a Keras dataset or inline data by name."""
    from dlcli.runs.record import read_record

    source = dataset.source
    if dataset.name or dataset.inline is not None or Path(source).is_absolute():
        return source
    try:
        spec_dir = Path(read_record(path / "run.json")["spec_dir"])
    except DlcliError:  # no readable run.json: the path as the spec wrote it
        return source
    located = Path(os.path.normpath(spec_dir / source))
    try:
        return str(located.relative_to(Path.cwd()))
    except ValueError:
        return str(located)


def _typed(
    path: Path, kind: type[Record], parse: Callable[[bytes, str], Any], limit: int = 1024**2
) -> Record:
    """`path` read by `parse` and validated as the pydantic class `kind`; ValueError names the
    file and what is wrong (the first key, for a value)."""
    from pydantic import ValidationError

    from dlcli.spec.messages import describe_error, located

    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path.name}: larger than {limit:,} bytes")
    document = parse(data, path.name)
    try:
        return kind.model_validate(document)
    except ValidationError as error:
        key_path, message = describe_error(error.errors(include_url=False)[0])
        problem = located(key_path, message, {}) if key_path else message
        raise ValueError(f"{path.name}: {problem}") from None


def _json(data: bytes, where: str) -> Any:
    """A JSON document; ValueError starting with `where` when it is not one."""
    try:
        return json.loads(data)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{where}: not JSON ({error})") from None
    except RecursionError:
        raise ValueError(f"{where}: not JSON (nested too deeply)") from None


def _spec_yaml(data: bytes, where: str) -> Any:
    """A spec's YAML, as the spec's own loader reads it (no tags, aliases or deep nesting).

    Text without `&`, `*` or `!` cannot hold an anchor, alias or tag: it is read by libyaml's
    safe loader where PyYAML has it, ten times faster; other text, and text libyaml refuses
    (for the spec loader's message), is read by the spec's loader.
    """
    import yaml

    from dlcli.spec.yaml_loader import parse_yaml

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{where}: not UTF-8 text (byte {error.start})") from None
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None and not any(mark in text for mark in "&*!"):
        try:
            return yaml.load(text, Loader=fast)
        except (yaml.YAMLError, RecursionError):
            pass
    try:
        return parse_yaml(text, where)[0]
    except DlcliError as error:  # ConfigError, naming `where` and the line
        raise ValueError(str(error)) from None


def _history_rows(path: Path, files: set[str]) -> int:
    """The epochs history.csv holds (a header, then a row per epoch); 0 without one."""
    if path.name not in files:
        return 0
    with path.open("rb") as handle:
        return max(0, sum(1 for line in handle if line.strip()) - 1)


def compare(
    names: Sequence[str], folder: Path | None = None, output: Path | None = None
) -> Comparison:
    """Overlay the curves of runs in one PNG (loss, and the headline metric where all have it).

    Args:
        names: two or more run folders, or names of runs in `folder`.
        folder: where names are looked up; None is `runs/`.
        output: the PNG to write; None is `compare.png` in the current folder.

    Returns:
        The runs in the order given, with their history.csv columns and the plot's path.

    Raises:
        UsageError: fewer than two runs, a name that is not a run folder, a run named twice,
            or a run without a readable history.csv (no epoch finished).
        OutputError: the PNG cannot be written.

    Example:
        compare(["mnist-1", "mnist-2"]).plot  # PosixPath('compare.png')
    """
    if len(names) < 2:
        received = f"{len(names)}: {names[0]}" if names else "none"
        raise UsageError(f"--compare needs at least two runs; received {received}")
    paths = [find_run(name, folder or DEFAULT_FOLDER) for name in names]
    for index, path in enumerate(paths):
        if any(os.path.samefile(path, other) for other in paths[:index]):
            raise UsageError(f"--compare names {path} twice")
    holders = lock_holders()
    runs = [read_run(path, holders) for path in paths]
    histories = [_curves(path) for path in paths]
    repeated = len({path.name for path in paths}) < len(paths)
    labels = [str(path) if repeated else path.name for path in paths]
    panels = _panels(histories)
    if not panels:
        raise UsageError(f"--compare: {', '.join(labels)} have no metric in common to plot")
    from dlcli.utils import plots

    plot = output or DEFAULT_PLOT
    plots.save_comparison(dict(zip(labels, histories, strict=True)), panels, plot)
    return Comparison(runs, labels, histories, plot)


def _curves(path: Path) -> dict[str, list[float]]:
    """history.csv's columns (dlcli.runs.record.read_history); UsageError when it has none."""
    from dlcli.runs.record import read_history

    try:
        history = read_history(path / "history.csv")
    except FileNotFoundError:
        history = {}
    except (OSError, ValueError, TypeError) as error:
        raise UsageError(f"{path}: history.csv cannot be read ({error})") from None
    if not any(history.values()):
        raise UsageError(f"{path}: no epoch finished (no history.csv), nothing to compare")
    return history


def _panels(histories: list[dict[str, list[float]]]) -> list[str]:
    """The metrics to plot: loss and the headline metric, each where every run has it."""
    trained = [[key for key in history if not key.startswith("val_")] for history in histories]
    wanted = [
        "loss",
        *(headline_metric([k for k in keys if k != "learning_rate"]) for keys in trained),
    ]
    return [name for name in dict.fromkeys(wanted) if name and all(name in h for h in histories)]
