"""A search in the terminal: a table of trials that grows a row as each trial ends (stdout),
a progress line for the trial in hand (stderr, on a terminal only), then the best trial."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from dlcli.cli.render import shown
from dlcli.tune.space import column_names

if TYPE_CHECKING:
    from dlcli.data.common import Splits
    from dlcli.spec.schema import Spec
    from dlcli.train.callbacks import Monitor
    from dlcli.tune.study import Study, TrialRow
    from dlcli.tune.tuner import TuneResult


def _cell(value: Any, digits: str = ".4g") -> str:
    """A value of the table: 4 significant digits (a metric: 4 decimals, as training shows)."""
    if value is None:
        return ""
    return f"{value:{digits}}" if isinstance(value, float) else str(value)


class TuneView:
    """The trials table on `console`, progress and notes on `errors` (stderr)."""

    def __init__(self, console: Console, errors: Console) -> None:
        self.console, self.errors = console, errors
        self.columns: dict[str, str] = {}
        self.widths: list[int] = []
        self.metric = ""

    def start(self, study: Study, spec: Spec, trials: int) -> None:
        from dlcli.tune.study import counted

        assert spec.search is not None
        search, where = spec.search, shown(study.folder)
        self.metric, self.columns = search.metric, column_names(list(search.space))
        had = counted(study.optuna)
        kept = f", continued ({had} trial{'s' * (had != 1)} so far)" if study.continued else ""
        self.errors.print(f"Study {study.name} in {where}{kept}", markup=False, highlight=False)
        direction = study.optuna.direction.name.lower()
        self.errors.print(
            f"Searching {len(self.columns)} parameters for the best {self.metric} "
            f"({direction}), {trials} trials",
            markup=False,
        )
        names = ["trial", "state", self.metric, *self.columns.values(), "epochs", "time"]
        self.widths = [max(len(name), 8) for name in names]
        self._line(names)

    def _line(self, cells: list[str], tail: str = "") -> None:
        text = "  ".join(cell.rjust(width) for cell, width in zip(cells, self.widths, strict=True))
        self.console.print(
            text + (f"  {tail}" if tail else ""), markup=False, highlight=False, soft_wrap=True
        )

    def trial_done(self, row: TrialRow) -> None:
        params = [_cell(row.params.get(key)) for key in self.columns]
        seconds = f"{row.seconds:.1f}s" if row.seconds is not None else ""
        value = _cell(row.value, ".4f")
        cells = [str(row.number), row.state, value, *params, _cell(row.epochs), seconds]
        tail = row.reason or ""
        if not tail and row.weights_epoch is not None:  # why its value is not history's last row
            tail = f"weights of epoch {row.weights_epoch} (restored by EarlyStopping)"
        self._line(cells, tail)

    def progress(self, number: int, values: dict[str, Any]) -> _TrialProgress:
        return _TrialProgress(self.errors, number)


class _TrialProgress:
    """One trial's training: a transient bar on a terminal, nothing in a log."""

    def __init__(self, console: Console, number: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn(f"trial {number}, epoch {{task.fields[epoch]}}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=True,
        )
        self.task: Any = None
        self.live = console.is_terminal

    def start(
        self, device: str, splits: Splits, run_dir: Path, *, monitor: Monitor | None = None
    ) -> None:
        if self.live:
            self.progress.start()

    def note(self, text: str) -> None:
        pass  # said once for the search, not for each trial

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task("", total=steps, epoch=f"{epoch}/{epochs}")

    def advance(self, steps_done: int, logs: dict[str, float]) -> None:
        self.progress.update(self.task, completed=steps_done)

    def end_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        pass

    def stop(self) -> None:
        if self.live:
            self.progress.stop()


def tune_result(console: Console, view: TuneView, result: TuneResult) -> None:
    """The best trial, its test scores and where the files are."""
    if not result.ran:  # nothing new here: the study as it stands
        console.print(
            "The study already has its trials (raise them with --trials N):", markup=False
        )
        for row in result.trials:
            view.trial_done(row)
    if result.stopped == "timeout":
        console.print(
            f"The timeout ended the search here after {len(result.ran)} trials", markup=False
        )
    best, where = result.best, shown(result.folder)
    states = Counter(row.state for row in result.trials)
    counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    console.print(
        f"\nStudy {result.study}: {len(result.trials)} trials ({counts}) in {where}",
        markup=False,
        highlight=False,
    )
    console.print(
        f"Best: trial {best.trial.number}, {result.metric} {best.trial.value:.4f}",
        markup=False,
        highlight=False,
    )
    for key, value in best.trial.params.items():
        console.print(f"  {key}: {_cell(value)}", markup=False, highlight=False)
    if best.test_metrics is not None:
        scores = ", ".join(f"{name} {value:.4f}" for name, value in best.test_metrics.items())
        split = "test split" if best.evaluated_on == "test" else "training data (no test split)"
        console.print(
            f"On the {split}, the best trial alone: {scores}", markup=False, highlight=False
        )
    for note in result.notes:
        console.print(f"Note: {note}", markup=False, highlight=False)
    files = ", ".join(path.name for name, path in best.files.items() if "test" not in name)
    console.print(f"Wrote best.yaml, {files} in {where}", markup=False, highlight=False)
    console.print(
        f"Train the best spec: dlcli train {shown(best.spec_file)}", markup=False, highlight=False
    )


def tune_json(console: Console, result: TuneResult) -> None:
    """The result as JSON (tune.json's content) on stdout."""
    text = json.dumps(result.to_dict(), indent=2, default=str)
    console.print(text, markup=False, highlight=False, soft_wrap=True)
