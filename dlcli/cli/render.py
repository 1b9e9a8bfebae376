"""All terminal rendering (rich), on an injected Console; nothing else in dlcli prints.

Files are drawn by dlcli.utils.plots; the numbers come from dlcli.model.scoring.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    import numpy as np

    from dlcli.data.common import Splits
    from dlcli.inference.evaluate import Evaluation
    from dlcli.inference.export import ExportResult
    from dlcli.inference.predict import PredictResult
    from dlcli.model.scoring import ClassScores
    from dlcli.runs.listing import Comparison, RunList, RunSummary
    from dlcli.train.callbacks import Monitor
    from dlcli.train.pipeline import TrainResult

_LOG_ORDER = ("loss", "accuracy")
MAX_TABLE_ROWS = 20
MAX_LOG_LINES = 100  # piped output: every epoch up to this many, then every k-th (and the last)
ELIDED = "…"


def shown(path: Path) -> str:
    """A path as the user would type it: relative to the current folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _format_logs(logs: dict[str, float]) -> str:
    keys = sorted(
        logs.keys() - {LEARNING_RATE}, key=lambda k: (k.startswith("val_"), k not in _LOG_ORDER, k)
    )
    return "  ".join(f"{key} {logs[key]:.4f}" for key in keys)


LEARNING_RATE = "learning_rate"  # in the epoch table only when it changed during training


def logged_every(epochs: int) -> int:
    """Piped output prints every k-th epoch (and always the first and the last): every epoch up
    to MAX_LOG_LINES epochs, then at most about that many lines.

    Example:
        >>> logged_every(40), logged_every(100), logged_every(3000)
        (1, 1, 30)
    """
    return max(1, -(-epochs // MAX_LOG_LINES))


def shown_epochs(
    epochs: list[int], keep: set[int], limit: int = MAX_TABLE_ROWS
) -> list[int | None]:
    """The epochs the end-of-run table shows, None where rows are left out: all of them when
    they fit, else the first and the last epochs and those in `keep` (the best) with their
    neighbours, at most `limit` in all.

    Example:
        >>> shown_epochs([1, 2, 3], set())
        [1, 2, 3]
        >>> shown_epochs(list(range(1, 41)), {14}, limit=9)
        [1, 2, 3, None, 13, 14, 15, None, 38, 39, 40]
    """
    if len(epochs) <= limit:
        return list(epochs)
    index = {epoch: position for position, epoch in enumerate(epochs)}
    around = {
        epochs[position]
        for epoch in keep & set(epochs)
        for position in range(max(index[epoch] - 1, 0), min(index[epoch] + 2, len(epochs)))
    }
    head = max(limit - len(around), 2) // 2
    tail = max(limit - len(around) - head, 1)
    chosen = set(epochs[:head]) | set(epochs[-tail:]) | around
    rows: list[int | None] = []
    for position, epoch in enumerate(epochs):
        if epoch not in chosen:
            continue
        if rows and rows[-1] != epochs[position - 1]:
            rows.append(None)
        rows.append(epoch)
    return rows


def best_epoch(
    history: list[tuple[int, dict[str, float]]], monitor: Monitor
) -> tuple[int, float] | None:
    """The epoch whose `monitor.name` is best (lowest for mode min, highest for max), with its
    value; None when no epoch logged it.

    Example:
        >>> from dlcli.train.callbacks import Monitor
        >>> best_epoch([(1, {"val_loss": 0.5}), (2, {"val_loss": 0.3})], Monitor("val_loss", "min"))
        (2, 0.3)
    """
    logged = [(epoch, logs[monitor.name]) for epoch, logs in history if monitor.name in logs]
    if not logged:
        return None
    pick = min if monitor.mode == "min" else max
    return pick(logged, key=lambda item: item[1])


class TrainView:
    """What a person sees while a run trains.

    On a terminal: a bar for the whole run (epochs done, elapsed, time left), a bar for the
    epoch in hand, and the last finished epoch's training and validation scores. Piped: one
    line per epoch (`logged_every`), with its validation scores. At the end, a table of the
    epochs with the best one marked. `quiet` shows none of the progress, only the run's first
    lines and the table's summary line.

    Updates arrive once per `steps_per_execution` steps; rich redraws at most 10 times a
    second, so the training loop pays nothing per batch.
    """

    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.live: Any = None
        self.run_bar: Any = None
        self.epoch_bar: Any = None
        self.last_epoch = Text("")
        self.run_task: Any = None
        self.epoch_task: Any = None
        self.steps = 0
        self.total_epochs = 0
        self.epochs: list[tuple[int, dict[str, float], float]] = []
        self.epoch_started = 0.0
        self.monitor: Monitor | None = None

    def start(
        self, device: str, splits: Splits, run_dir: Path, *, monitor: Monitor | None = None
    ) -> None:
        sizes = ", ".join(f"{name} {count:,}" for name, count in splits.info.sizes.items() if count)
        self.console.print(f"Training on {device}")
        self.console.print(f"Data: {splits.info.source} ({sizes})")
        if splits.info.skipped:
            self.console.print(f"Skipped {splits.info.skipped} image files that cannot be read")
        self.console.print(f"Run directory: {shown(run_dir)}")
        self.monitor = monitor
        if self.console.is_terminal and not self.quiet:
            self._start_live()

    def _start_live(self) -> None:
        # rich.progress and rich.live only here: predict and evaluate do without their import
        from rich.console import Group
        from rich.live import Live
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.run_bar = Progress(
            TextColumn("[bold]run  "),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} epochs"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
        )
        self.epoch_bar = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[logs]}"),
        )
        self.live = Live(
            Group(self.run_bar, self.epoch_bar, self.last_epoch),
            console=self.console,
            transient=True,
            refresh_per_second=10,
        )
        self.live.start()

    def note(self, text: str) -> None:
        """One line of information before training starts."""
        self.console.print(text, markup=False, highlight=False)

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self.epoch_started = time.perf_counter()
        self.steps, self.total_epochs = steps, epochs
        if self.live is None:
            return
        if self.run_task is None:
            self.run_task = self.run_bar.add_task("", total=epochs, completed=epoch - 1)
        if self.epoch_task is not None:
            self.epoch_bar.remove_task(self.epoch_task)
        self.epoch_task = self.epoch_bar.add_task(
            "", total=steps, epoch=f"{epoch}/{epochs}", logs=""
        )

    def advance(self, steps_done: int, logs: dict[str, float]) -> None:
        if self.live is not None:
            self.epoch_bar.update(self.epoch_task, completed=steps_done, logs=_format_logs(logs))

    def end_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        seconds = time.perf_counter() - self.epoch_started
        rate = logs.get(LEARNING_RATE)
        previous = self.epochs[-1][1].get(LEARNING_RATE) if self.epochs else rate
        changed = rate is not None and rate != previous
        self.epochs.append((epoch, logs, seconds))
        shown_rate = f"  {LEARNING_RATE} {rate:.3g}" if changed else ""
        line = f"epoch {epoch}: {_format_logs(logs)}{shown_rate} ({seconds:.1f}s)"
        if self.live is not None:
            self.epoch_bar.update(self.epoch_task, completed=self.steps, logs=_format_logs(logs))
            self.run_bar.update(self.run_task, completed=epoch)
            self.last_epoch.plain = f"last {line}"
            return
        total = self.total_epochs
        if not self.quiet and (epoch == 1 or epoch % logged_every(total) == 0 or epoch == total):
            self.console.print(line, markup=False, highlight=False)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        if not self.epochs:
            return
        best = best_epoch([(e, logs) for e, logs, _ in self.epochs], self._monitor())
        if not self.quiet:
            self.console.print(self._table(best[0] if best else None))
        if best is not None:
            mark = "" if self.quiet else " (*)"
            self.console.print(
                f"Best {self._monitor().name} {best[1]:.4f} at epoch {best[0]}{mark}",
                markup=False,
                highlight=False,
            )

    def _monitor(self) -> Monitor:
        """What training said it monitors, else the default for what the epochs logged."""
        from dlcli.train.callbacks import monitored

        if self.monitor is not None:
            return self.monitor
        return monitored([], validated=any("val_loss" in logs for _, logs, _ in self.epochs))

    def _table(self, best: int | None) -> Table:
        table = Table(title="Training", title_justify="left")
        table.add_column("epoch", justify="right")
        named = {key for _, logs, _ in self.epochs for key in logs}  # validation_freq: not all
        rates = {logs.get(LEARNING_RATE) for _, logs, _ in self.epochs}
        if len(rates) == 1:
            named.discard(LEARNING_RATE)
        keys = sorted(named, key=lambda k: (k == LEARNING_RATE, k.startswith("val_"), k))
        for key in keys:
            table.add_column(key, justify="right")
        table.add_column("time", justify="right")
        by_epoch = {epoch: (logs, seconds) for epoch, logs, seconds in self.epochs}
        keep = {best} if best is not None else set()
        digits = {LEARNING_RATE: ".3g"}
        for epoch in shown_epochs(list(by_epoch), keep):
            if epoch is None:
                table.add_row(ELIDED, *([""] * len(keys)), "")
                continue
            logs, seconds = by_epoch[epoch]
            cells = [f"{logs[k]:{digits.get(k, '.4f')}}" if k in logs else "" for k in keys]
            marked = f"{epoch} *" if epoch == best else str(epoch)
            table.add_row(marked, *cells, f"{seconds:.1f}s", style="bold" if epoch == best else "")
        return table


def train_result(console: Console, result: TrainResult) -> None:
    """Test metrics and where everything was written."""
    split = "training data (no test split)" if result.evaluated_on == "train" else "test set"
    metrics = ", ".join(f"{name} {value:.4f}" for name, value in result.test_metrics.items())
    if result.stopped_early:
        console.print(result.stopped_early)
    console.print(f"On the {split}: {metrics}")
    console.print(
        f"Fit {result.fit_seconds:.1f}s, total {result.total_seconds:.1f}s on {result.device}"
    )
    if result.saved_by:  # a worker of a cluster: its own files were scratch
        console.print(f"Model and run directory: written by {result.saved_by}")
        return
    console.print(f"Model: {shown(result.model_path)}")
    if result.exported:
        console.print(result.exported, markup=False, highlight=False, soft_wrap=True)
    console.print(f"Run directory: {shown(result.run_dir)}")
    if result.mlflow:
        run = result.mlflow
        notes(console, [f"MLflow: run {run['run_id']} at {run['tracking_uri']}"])


# ---------------------------------------------------------------------------------------------
# evaluate and predict

MAX_MATRIX_CLASSES = 20


def _number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def evaluation(console: Console, result: Evaluation) -> None:
    """The evaluation report: metrics, per-class scores, confusion matrix, files written."""
    data = result.data if result.split == "all" else f"{result.data}, {result.split} split"
    console.print(
        f"Evaluated {result.model_path} on {data} ({result.examples:,} examples)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    metrics = "  ".join(f"{name} {value:.4f}" for name, value in result.metrics.items())
    console.print(metrics, markup=False, highlight=False)
    _evaluation_details(console, result)
    for name, part in result.outputs.items():
        console.print(f"Output `{name}` ({part.task})", markup=False, highlight=False)
        _evaluation_details(console, part)
    written = result.files.items()
    notes(console, [f"{name.replace('_', ' ').capitalize()}: {path}" for name, path in written])


def _evaluation_details(console: Console, result: Evaluation) -> None:
    """Regression errors, or a classifier's ROC AUC, per-class scores and confusion matrix."""
    from dlcli.model.signature import Task

    if result.regression:
        errors = result.regression
        console.print(
            f"MAE {_number(errors['mae'])}  MSE {_number(errors['mse'])}  "
            f"RMSE {_number(errors['rmse'])}  R² {_number(errors['r2'])}",
            highlight=False,
        )
    if result.task == Task.binary:
        console.print(
            f"ROC AUC {_number(result.roc_auc)} (threshold {result.threshold})", highlight=False
        )
    if result.classes:
        console.print(_scores_table(result.classes, result.averages))
    if result.confusion is not None:
        if len(result.class_names) <= MAX_MATRIX_CLASSES:
            console.print("Confusion matrix (rows: true class, columns: predicted class)")
            console.print(_matrix_table(result.confusion, result.class_names))
        if result.confused_pairs:
            pairs = ", ".join(f"{t} as {p} ({n})" for t, p, n in result.confused_pairs)
            notes(console, [f"Most confused (true as predicted): {pairs}"])


def _scores_table(classes: list[ClassScores], averages: dict[str, ClassScores]) -> Table:
    table = Table()
    table.add_column("class")
    for column in ("precision", "recall", "f1", "support"):
        table.add_column(column, justify="right")
    rows = list(classes)
    for index, item in enumerate([*rows, *averages.values()]):
        table.add_row(
            Text(item.name),
            f"{item.precision:.4f}",
            f"{item.recall:.4f}",
            f"{item.f1:.4f}",
            f"{item.support:,}",
            end_section=index == len(rows) - 1,
        )
    return table


def _matrix_table(matrix: np.ndarray, names: list[str]) -> Table:
    table = Table()
    table.add_column("")
    for name in names:
        table.add_column(Text(name), justify="right")
    for name, row in zip(names, matrix, strict=True):
        table.add_row(Text(name), *(str(count) for count in row))
    return table


def evaluation_json(console: Console, result: Evaluation) -> None:
    """evaluation.json on stdout, nothing else."""
    import json

    console.out(json.dumps(result.to_dict(), indent=2), highlight=False)


def notes(console: Console, lines: list[str]) -> None:
    """Warnings and remarks (the chosen model, assumptions) as plain lines."""
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _top_cell(label: str, probability: float) -> str:
    return f"{label} {probability:.1%}"


def predictions(console: Console, result: PredictResult) -> None:
    """A table: one row per input (and output, for a model of several) with its top-k labels
    and probabilities, or its values."""
    if not result.predictions:
        return
    table = Table()
    table.add_column("input")
    rows = result.predictions
    if any(p.output is not None for p in rows):
        table.add_column("output")
    kinds = {bool(p.values) for p in rows}
    width = max((len(p.values or p.labels) for p in rows), default=1)
    for index in range(width):
        if kinds == {True}:
            table.add_column("value" if width == 1 else f"value {index}", justify="right")
        else:
            table.add_column(f"top {index + 1}" if kinds == {False} else str(index + 1))
    for prediction in rows:
        if prediction.values:
            cells = [f"{value:.4g}" for value in prediction.values]
        else:
            pairs = zip(prediction.labels, prediction.probabilities, strict=True)
            cells = [_top_cell(label, probability) for label, probability in pairs]
        named = (
            prediction.input if prediction.row is None else f"{prediction.input}[{prediction.row}]"
        )
        output = [] if prediction.output is None else [prediction.output]
        table.add_row(Text(named), *(Text(cell) for cell in [*output, *cells]))
    console.print(table)


def predictions_json(console: Console, result: PredictResult) -> None:
    """One JSON document on stdout."""
    import json

    console.out(json.dumps(result.to_dict(), indent=2), highlight=False)


def predictions_csv(console: Console, result: PredictResult) -> None:
    """One CSV row per input: input, row, then label/probability pairs or the values."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    rows = result.predictions
    several = any(p.output is not None for p in rows)
    labels = max((len(p.labels) for p in rows), default=0)
    values = max((len(p.values) for p in rows), default=0)
    header = [f"{kind}_{n}" for n in range(1, labels + 1) for kind in ("label", "probability")]
    header += ["value"] if values == 1 else [f"value_{index}" for index in range(values)]
    writer.writerow(["input", "row", *(["output"] if several else []), *header])
    for p in rows:
        pairs = [
            cell
            for label, probability in zip(p.labels, p.probabilities, strict=True)
            for cell in (label, f"{probability:.6f}")
        ]
        pairs += [""] * (2 * labels - len(pairs))
        numbers = [f"{value:.6g}" for value in p.values] + [""] * (values - len(p.values))
        output = [p.output or ""] if several else []
        writer.writerow([p.input, "" if p.row is None else p.row, *output, *pairs, *numbers])
    console.out(buffer.getvalue().rstrip("\n"), highlight=False)


def prediction_output(console: Console, result: PredictResult, style: str) -> None:
    """Predictions as a table, JSON (`style="json"`) or CSV (`style="csv"`)."""
    {"json": predictions_json, "csv": predictions_csv}.get(style, predictions)(console, result)


def skipped(console: Console, problems: list[str]) -> None:
    """One line per input that could not be predicted."""
    notes(console, [f"Skipped {problem}" for problem in problems])


# ---------------------------------------------------------------------------------------------
# runs

_STATUS_SHOWN = {"resumable": "interrupted, resumable", "failed": "failed, no backup"}


def _status(run: RunSummary) -> str:
    if run.status == "running":
        return f"running ({run.detail})"
    return _STATUS_SHOWN.get(run.status, run.status)


def _epochs(run: RunSummary) -> str:
    return f"{run.epochs_done}/{'?' if run.epochs_asked is None else run.epochs_asked}"


def _headline(run: RunSummary) -> str:
    headline = run.headline
    return "" if headline is None else f"{headline.name} {headline.value:.4f} ({headline.split})"


def runs_table(console: Console, listed: RunList) -> None:
    """A row per run (oldest first), then why each damaged run is, and how to resume each
    interrupted one."""
    from datetime import datetime

    if not listed.runs:
        return
    table = Table()
    for column in ("run", "started", "dataset", "epochs", "metric", "status", "model"):
        table.add_column(column, justify="right" if column == "epochs" else "left")
    for run in listed.runs:
        started = datetime.fromtimestamp(run.started).strftime("%Y-%m-%d %H:%M")
        model = "" if run.model is None else shown(run.model)
        table.add_row(
            Text(run.name),
            started,
            Text(run.dataset or ""),
            _epochs(run),
            _headline(run),
            _status(run),
            Text(model),
        )
    console.print(table)
    lines = [f"{run.name}: damaged: {run.detail}" for run in listed.runs if run.status == "damaged"]
    lines += [
        f"Resume {run.name}: dlcli train --resume {shown(run.path)}"
        for run in listed.runs
        if run.status == "resumable"
    ]
    lines += [
        f"{run.name}: MLflow run {run.mlflow['run_id']} at {run.mlflow['tracking_uri']}"
        for run in listed.runs
        if run.mlflow
    ]
    notes(console, lines)


def runs_json(console: Console, listed: RunList) -> None:
    """The runs as one JSON document on stdout."""
    import json

    console.out(json.dumps(listed.to_dict(), indent=2), highlight=False)


def comparison(console: Console, result: Comparison) -> None:
    """The runs' metrics side by side (a column per run), then the plot's path."""
    table = Table()
    table.add_column("")
    for label in result.labels:
        table.add_column(Text(label), justify="right")
    rows = {
        "status": [_status(run) for run in result.runs],
        "dataset": [run.dataset or "" for run in result.runs],
        "epochs": [_epochs(run) for run in result.runs],
    }
    ends = [len(rows) - 1]  # a line under the runs' description and under their scores
    scores = sorted(
        {(run.evaluated_on, name) for run in result.runs if run.evaluated_on for name in run.scores}
    )
    for split, name in scores:
        rows[f"{split} {name}"] = [
            f"{run.scores[name]:.4f}" if run.evaluated_on == split and name in run.scores else ""
            for run in result.runs
        ]
    ends.append(len(rows) - 1)
    columns = sorted(
        {name for history in result.histories for name in history},
        key=lambda k: (k.startswith("val_"), k),
    )
    for name in columns:
        rows[f"last epoch {name}"] = [
            f"{last[name]:.4f}" if name in last else "" for last in result.last
        ]
    for index, (key, cells) in enumerate(rows.items()):
        table.add_row(key, *(Text(cell) for cell in cells), end_section=index in ends)
    console.print(table)
    notes(console, [f"Plot: {shown(result.plot)}"])


def comparison_json(console: Console, result: Comparison) -> None:
    """The comparison as one JSON document on stdout."""
    import json

    console.out(json.dumps(result.to_dict(), indent=2), highlight=False)


# ---------------------------------------------------------------------------------------------
# export


def export_result(console: Console, result: ExportResult) -> None:
    """What was written, and how it compared with the Keras model."""
    quantized = f", {result.quantize}" if result.quantize else ""
    kib = result.bytes / 1024
    console.print(
        f"Exported {result.path} ({result.format}{quantized}, {kib:,.0f} KiB; "
        f"model.keras {result.keras_bytes / 1024:,.0f} KiB) in {result.seconds:.1f}s",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    figures = [f"max abs difference {result.max_abs_diff:.3g}"]
    if result.top1_agreement is not None:
        figures.append(f"top-1 agreement {result.top1_agreement:.2%}")
    if result.keras_accuracy is not None and result.exported_accuracy is not None:
        figures.append(
            f"accuracy {result.exported_accuracy:.4f} (Keras {result.keras_accuracy:.4f})"
        )
    console.print(
        f"Verified on {result.examples} examples of {result.data}: " + ", ".join(figures),
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    notes(console, result.notes)


def export_json(console: Console, result: ExportResult) -> None:
    """The export's record as JSON on stdout, nothing else."""
    import json

    console.out(json.dumps(result.to_dict(), indent=2), highlight=False)
