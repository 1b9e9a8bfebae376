"""MLflow runs of dlcli: where a run is tracked, its params, and a run opened, continued, ended.

MLflow is an optional dependency (`pip install 'dlcli[mlflow]'`): it is imported inside the
functions that use it, so `dlcli --help`, `validate` and a run without tracking never load it.
dlcli talks to MLflow through its client API alone (`MlflowClient`), never `autolog`.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlcli.errors import UsageError

if TYPE_CHECKING:
    from dlcli.spec.schema import Spec

INSTALL = "pip install 'dlcli[mlflow]'"
FLAG_ALONE = ""  # `--mlflow` without a URI
# MLflow's limits (mlflow.utils.validation): params per log_batch call, a param value's length
MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_LENGTH = 6000
TRUNCATED = " [truncated]"
# A tracking server that does not answer is retried a little, not MLflow's default of minutes
# (7 retries with a doubling wait); MLflow writes no "View run" links on stdout, which holds
# dlcli's results. The user's own settings win.
MLFLOW_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


@dataclass(frozen=True)
class MlflowRun:
    """A run on a tracking server or store: what run.json records to continue it."""

    run_id: str
    tracking_uri: str
    experiment_id: str

    def to_dict(self) -> dict[str, str]:
        return {
            "run_id": self.run_id,
            "tracking_uri": self.tracking_uri,
            "experiment_id": self.experiment_id,
        }

    @classmethod
    def from_dict(cls, data: Any) -> MlflowRun | None:
        """The run run.json's `mlflow` holds, or None when it holds none (or a damaged one)."""
        keys = ("run_id", "tracking_uri", "experiment_id")
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in keys):
            return None
        return cls(**{key: data[key] for key in keys})


def installed() -> bool:
    """Whether MLflow's client can be imported (without importing it)."""
    return importlib.util.find_spec("mlflow") is not None


def require_mlflow(asked_by: str) -> None:
    """Check that MLflow is installed before anything slow happens.

    Args:
        asked_by: what asked for tracking, for the message (`--mlflow`, `output.mlflow`).

    Raises:
        UsageError: MLflow is not installed; the message names what to install.

    Example:
        require_mlflow("--mlflow")
    """
    if not installed():
        raise UsageError(f"{asked_by} needs MLflow, which is not installed: {INSTALL}")


def tracking_uri(flag: str | None, spec: Spec) -> str | None:
    """Where a run is tracked, or None when it is not.

    Args:
        flag: `--mlflow`'s value: None when not given, `FLAG_ALONE` without a URI, or a URI.
        spec: the run's spec, whose `output.mlflow` asks when the flag does not.

    Returns:
        The URI given, else `MLFLOW_TRACKING_URI`, else `sqlite:///<output.dir>/mlflow.db`
        (absolute); None when neither the flag nor the spec asks for tracking.

    Example:
        tracking_uri(FLAG_ALONE, spec)  # 'sqlite:////home/me/project/runs/mlflow.db'
    """
    asked: bool | str = spec.output.mlflow if flag is None else (flag or True)
    if asked is False:
        return None
    if isinstance(asked, str):
        return asked
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path(spec.output.dir).resolve() / 'mlflow.db'}"


def experiment_name(spec: Spec) -> str:
    """The experiment a spec's runs go to: `output.mlflow_experiment`, else the spec's name."""
    return spec.output.mlflow_experiment or spec.name


def param_key(key_path: str) -> str:
    """A `--set` key path as an MLflow param name: list indices as `.N` (MLflow refuses
    brackets; `--set` reads both), any other character MLflow refuses as `_`.

    Example:
        >>> param_key("model.layers[2].Dense.units")
        'model.layers.2.Dense.units'
        >>> param_key("dataset.csv.columns.width (cm)")
        'dataset.csv.columns.width _cm_'
    """
    dotted = re.sub(r"\[(\d+)\]", r".\1", key_path)
    return re.sub(r"[^/\w.\- :]", "_", dotted)[:250]


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Nested spec data as `--set` key paths (MLflow's spelling, `param_key`) and their values;
    a list without a mapping in it (a shape, metric names, inline data) is one JSON value.

    Example:
        >>> flatten({"seed": 1, "model": {"input": [2], "layers": [{"Dense": {"units": 8}}]}})
        {'seed': '1', 'model.input': '[2]', 'model.layers.0.Dense.units': '8'}
    """
    if isinstance(data, dict) and data:
        items = [(f"{prefix}.{key}" if prefix else str(key), value) for key, value in data.items()]
    elif isinstance(data, list) and _has_mapping(data):
        items = [(f"{prefix}.{index}", value) for index, value in enumerate(data)]
    else:
        return {param_key(prefix): data if isinstance(data, str) else json.dumps(data)}
    return {key: text for path, value in items for key, text in flatten(value, path).items()}


def _has_mapping(data: Any) -> bool:
    if isinstance(data, dict):
        return True
    return isinstance(data, list) and any(_has_mapping(item) for item in data)


def truncated(params: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The params with each value cut to MLflow's length limit (marked `[truncated]`), and the
    names of those cut.

    Example:
        >>> values, cut = truncated({"a": "x" * 7000, "b": "1"})
        >>> len(values["a"]), values["a"][-11:], cut
        (6000, '[truncated]', ['a'])
    """
    cut = [key for key, value in params.items() if len(value) > MAX_PARAM_LENGTH]
    keep = MAX_PARAM_LENGTH - len(TRUNCATED)
    return {
        key: value[:keep] + TRUNCATED if key in cut else value for key, value in params.items()
    }, cut


def client(uri: str) -> Any:
    """An `MlflowClient` of `uri`, with dlcli's `MLFLOW_DEFAULTS` unless the user set them, and
    MLflow's log lines (a new database's tables) kept for warnings."""
    for name, value in MLFLOW_DEFAULTS.items():
        os.environ.setdefault(name, value)
    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri)


def open_run(
    uri: str,
    experiment: str,
    run_name: str,
    *,
    tags: dict[str, str] | None = None,
    artifacts: Path | None = None,
) -> tuple[Any, MlflowRun]:
    """Start a run in `experiment` (created when missing) at `uri`.

    Args:
        uri: the tracking URI.
        experiment: the experiment's name.
        run_name: the run's name (the run folder's name).
        tags: the run's tags (`mlflow.parentRunId` makes it a child run).
        artifacts: where a new experiment of a local store keeps its artifacts (None: the
            server's or store's default).

    Returns:
        The client and the run, RUNNING.

    Example:
        client, run = open_run("http://127.0.0.1:5000", "mnist", "mnist-3")
    """
    tracker = client(uri)
    found = tracker.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        location = artifacts.resolve().as_uri() if artifacts is not None else None
        try:
            experiment_id = tracker.create_experiment(experiment, artifact_location=location)
        except Exception:  # made at the same time by another process
            found = tracker.get_experiment_by_name(experiment)
            if found is None:
                raise
            experiment_id = found.experiment_id
    run = tracker.create_run(experiment_id, run_name=run_name, tags=tags or {})
    return tracker, MlflowRun(run.info.run_id, uri, experiment_id)


def local_artifacts(uri: str) -> Path | None:
    """The artifact folder beside a local SQLite store (`sqlite:///DIR/x.db` -> DIR/mlartifacts),
    so that a run's files land next to its database, not in the current folder.

    Example:
        >>> local_artifacts("sqlite:////tmp/runs/mlflow.db")
        PosixPath('/tmp/runs/mlartifacts')
        >>> local_artifacts("http://127.0.0.1:5000") is None
        True
    """
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts"


def log_params(tracker: Any, run_id: str, params: dict[str, str]) -> None:
    """Log params in chunks of MLflow's batch limit."""
    from mlflow.entities import Param

    items = [Param(key, value) for key, value in params.items()]
    for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
        tracker.log_batch(run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])


def continue_run(run: MlflowRun) -> tuple[Any, set[int]]:
    """Mark a run RUNNING again (`--resume`); the client and the epochs it has logged already."""
    tracker = client(run.tracking_uri)
    tracker.update_run(run.run_id, status="RUNNING")
    logged = {int(metric.step) for metric in tracker.get_metric_history(run.run_id, "loss")}
    return tracker, logged


def one_line(error: BaseException) -> str:
    """An error of MLflow or of its HTTP client as one short line.

    Example:
        >>> one_line(ConnectionError("refused\\n  at host"))
        'ConnectionError: refused at host'
    """
    text = " ".join(str(error).split())
    text = text if len(text) <= 200 else text[:199] + "…"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
