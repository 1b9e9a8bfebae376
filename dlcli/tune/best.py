"""What a search leaves: the best trial's spec as best.yaml (a plain spec `dlcli train`
reproduces), history.png and importances.png, and the best trial alone scored on the test
split."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlcli.errors import TrainingError
from dlcli.runs.record import shell_path
from dlcli.tune.space import as_overrides, relocated
from dlcli.tune.study import Study, TrialRow, rows
from dlcli.utils.atomic import atomic_write


@dataclass(frozen=True)
class Best:
    """The best trial, its spec file, plots and test scores."""

    trial: TrialRow
    spec_file: Path  # best.yaml
    test_metrics: dict[str, float] | None  # None: its model is on another machine
    evaluated_on: str | None  # "test", or "train" for data without a test split
    files: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial": self.trial.to_dict(),
            "spec_file": str(self.spec_file),
            "test_metrics": self.test_metrics,
            "evaluated_on": self.evaluated_on,
            "files": {name: str(path) for name, path in self.files.items()},
        }


def finish(
    study: Study, spec_path: Path, overrides: Sequence[str], metric: str
) -> tuple[Best, list[str]]:
    """Write best.yaml and the plots, and score the best trial's model on the test split.

    Raises:
        TrainingError: no trial of the study completed.
    """
    from dlcli.inference.evaluate import evaluate
    from dlcli.spec.load import load_spec
    from dlcli.utils import plots

    table = rows(study.optuna)
    complete = [row for row in table if row.state == "complete"]
    if not complete:
        states = Counter(row.state for row in table)
        counts = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
        failure = next((f"; trial {r.number}: {r.reason}" for r in table if r.reason), "")
        raise TrainingError(
            f"no trial of study {study.name} completed ({counts or 'no trials'}){failure}"
        )
    number = study.optuna.best_trial.number
    best = next(row for row in table if row.number == number)
    spec = load_spec(spec_path, [*overrides, *as_overrides(best.params), f"seed={study.seed}"])
    spec = relocated(spec.model_copy(update={"search": None}), spec_path.parent, study.folder)
    spec_file = study.folder / "best.yaml"
    header = (
        f"# The best trial ({number}) of study {study.name}: {metric} {best.value:.4f}\n"
        f"# Train it: dlcli train {shell_path(spec_file)}\n"
    )
    atomic_write(spec_file, (header + spec.to_yaml()).encode())
    files, plot_notes = plots.save_search_plots(study.optuna, metric, study.folder)
    model = Path(best.run_dir or "") / "model.keras"
    if not model.is_file():
        note = (
            f"the best trial ran on another machine ({best.run_dir}): its model was not scored "
            "on the test split here"
        )
        return Best(best, spec_file, None, None, files), [*plot_notes, note]
    evaluation = evaluate(model, split="test")
    files.update({f"test {name}": path for name, path in evaluation.files.items()})
    best_found = Best(best, spec_file, evaluation.metrics, evaluation.split, files)
    return best_found, [*plot_notes, *evaluation.warnings]
