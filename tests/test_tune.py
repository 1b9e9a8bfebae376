"""`dlcli tune` as a user runs it: the installed CLI in subprocesses with an empty HOME, a tiny
search on the iris CSV shipped in configs/data, real SQLite studies, two processes sharing
one, Ctrl-C sent to a real process, and each mistake as one line before any trial."""

from __future__ import annotations

import csv
import json
import re
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from .helpers import REPO, SEARCH, accuracy_of, dlcli_command, run_cli, write_search_spec


def trials_in(database: Path) -> list[tuple[int, str]]:
    """(number, state) of every trial in a study.db, read with sqlite3: the storage itself."""
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT number, state FROM trials ORDER BY number").fetchall()


@dataclass(frozen=True)
class Search:
    folder: Path  # where dlcli ran
    result: dict
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory, user_env: dict[str, str]) -> Search:
    """One tiny search of 3 trials, with --json (the table then goes to stderr)."""
    folder = tmp_path_factory.mktemp("search")
    write_search_spec(folder)
    result = run_cli(["tune", "tiny.yaml", "--json"], user_env, folder)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr, result.stderr
    return Search(folder, json.loads(result.stdout), result.stdout, result.stderr)


def test_a_search_runs_its_trials_as_runs_scored_on_the_validation_split(search: Search) -> None:
    study = search.folder / "runs" / "tiny-tune-1"
    result = search.result
    assert result["folder"] == str(study) and result["study"] == "tiny-tune"
    assert result["metric"] == "val_accuracy" and result["direction"] == "maximize"
    assert [row["number"] for row in result["trials"]] == result["ran"] == [0, 1, 2]
    assert trials_in(study / "study.db") == [
        (n, s) for n, s in [(r["number"], r["state"].upper()) for r in result["trials"]]
    ]
    assert {row["state"] for row in result["trials"]} <= {"complete", "pruned"}
    header = re.search(
        r"^ +trial +state +val_accuracy +units +learning_rate +epochs +time$",
        search.stderr,
        re.MULTILINE,
    )
    assert header, search.stderr
    for row in result["trials"]:
        run = study / f"trial-{row['number']}"
        assert row["run_dir"] == str(run)
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["evaluated_on"] == "validation" and "test" not in metrics  # never tuned on
        assert metrics["validation"]["accuracy"] == pytest.approx(row["value"], abs=1e-6)
        spec = yaml.safe_load((run / "spec.yaml").read_text())
        assert (
            spec["model"]["layers"][1]["Dense"]["units"]
            == row["params"]["model.layers[1].Dense.units"]
        )
        assert "search" not in spec and spec["output"]["onnx"] is False
        assert (run / "model.keras").is_file() and not (run / "backup").exists()
    assert (study / "history.png").stat().st_size > 10_000
    assert not (study / "importances.png").exists()  # 3 trials say little about importance
    assert (
        "importances.png not drawn: 3 completed trials; parameter importances need at least 5"
    ) in result["notes"]
    assert json.loads((study / "tune.json").read_text()) == result


def test_best_yaml_is_a_plain_spec_that_train_reproduces(
    search: Search, user_env: dict[str, str]
) -> None:
    best = search.result["best"]
    values = [row["value"] for row in search.result["trials"] if row["state"] == "complete"]
    assert best["trial"]["value"] == max(values)
    assert best["evaluated_on"] == "test"  # the best trial alone, once the search is over
    spec_file = Path(best["spec_file"])
    text = spec_file.read_text()
    assert text.startswith(f"# The best trial ({best['trial']['number']}) of study tiny-tune: ")
    spec = yaml.safe_load(text)
    assert "search" not in spec and spec["output"]["onnx"] is True  # the user's, not a trial's
    # relative to best.yaml's folder, as the spec's were to the spec's
    assert spec["dataset"]["csv"]["train"] == "../../data/iris_train.csv"
    result = run_cli(["validate", str(spec_file)], user_env, search.folder)
    assert result.returncode == 0, result.stderr
    result = run_cli(["train", str(spec_file)], user_env, search.folder)
    assert result.returncode == 0, result.stderr
    assert accuracy_of(result.stdout) == pytest.approx(best["test_metrics"]["accuracy"], abs=1e-4)
    loss = re.search(r"On the test set: .*loss (\d+\.\d+)", result.stdout)
    assert loss and float(loss[1]) == pytest.approx(best["test_metrics"]["loss"], abs=1e-3)


def test_two_processes_share_one_study_and_a_rerun_continues_it(
    tmp_path: Path, user_env: dict[str, str]
) -> None:
    """Two `dlcli tune` processes started together on one SQLite study of 2 trials of 1 epoch:
    one study folder, no trial lost or run twice; then a rerun with one more trial continues
    the study and runs that trial."""
    write_search_spec(tmp_path, SEARCH.replace("epochs: 3", "epochs: 1"))
    command = [*dlcli_command(), "tune", "tiny.yaml", "--trials", "2", "--json"]
    processes = [
        subprocess.Popen(
            command,
            cwd=tmp_path,
            env=user_env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
    results = [json.loads(stdout) for stdout, _ in outputs]
    assert [path.name for path in (tmp_path / "runs").iterdir()] == ["tiny-tune-1"]
    study = tmp_path / "runs" / "tiny-tune-1"
    ran = [set(result["ran"]) for result in results]
    numbers = [number for number, _ in trials_in(study / "study.db")]
    # no trial lost or run twice: the union is the study, in order, each trial once
    assert not ran[0] & ran[1] and ran[0] | ran[1] == set(numbers) == set(range(len(numbers)))
    assert 2 <= len(numbers) <= 3  # each process checks the count before it starts a trial
    assert sorted(p.name for p in study.glob("trial-*")) == [f"trial-{n}" for n in numbers]
    assert "Study tiny-tune in runs/tiny-tune-1\n" in outputs[0][1] + outputs[1][1]

    more = len(numbers) + 1
    result = run_cli(["tune", "tiny.yaml", "--trials", str(more)], user_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"Study tiny-tune in runs/tiny-tune-1, continued ({len(numbers)} trials so far)" in (
        result.stderr
    )
    assert re.search(rf"^ +{len(numbers)} +(complete|pruned) ", result.stdout, re.MULTILINE)
    assert len(trials_in(study / "study.db")) == more
    assert f"Study tiny-tune: {more} trials (" in result.stdout


def test_ctrl_c_ends_the_trial_and_keeps_the_finished_ones(
    tmp_path: Path, user_env: dict[str, str]
) -> None:
    """Ctrl-C while trial 1 loads or trains stops it (a signal between two batches, or before
    its first, acts there) and keeps trial 0. Trials of 100 epochs keep trial 1 in training well
    past the half second the signal waits; a signal in its last steps (scoring, saving) would
    let it finish first."""
    long_trials = SEARCH.replace("epochs: 3", "epochs: 100").replace("trials: 3", "trials: 9")
    write_search_spec(tmp_path, long_trials)
    process = subprocess.Popen(
        [*dlcli_command(), "tune", "tiny.yaml"],
        cwd=tmp_path,
        env=user_env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    lines = [process.stdout.readline(), process.stdout.readline()]  # the header, trial 0
    assert re.match(r" +0 +(complete|pruned) ", lines[1]), lines
    time.sleep(0.5)  # trial 1 is loading or training: Ctrl-C ends it either way
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert re.search(
        r"^Error: SIGINT( in trial 1)?: stopped; the study's 1 finished trial is kept in "
        r"runs/tiny-tune-1; continue with the same command: dlcli tune tiny.yaml$",
        stderr,
        re.MULTILINE,
    ), stderr
    study = tmp_path / "runs" / "tiny-tune-1"
    states = dict(trials_in(study / "study.db"))
    assert states[0] in ("COMPLETE", "PRUNED") and states.get(1, "FAIL") == "FAIL"
    assert not (study / "trial-1" / "backup").exists()  # a search does not resume a trial
    assert (study / "trial-0" / "model.keras").is_file()


def test_failed_trials_are_recorded_with_their_reason_and_the_search_goes_on(
    tmp_path: Path, user_env: dict[str, str]
) -> None:
    nan = "    compile.optimizer: {choice: [{SGD: {learning_rate: 1.0e+30}}]}\n"
    text = SEARCH.split("  space:\n")[0].replace("trials: 3", "trials: 2") + "  space:\n" + nan
    write_search_spec(tmp_path, text)
    result = run_cli(["tune", "tiny.yaml"], user_env, tmp_path)
    assert result.returncode == 8, result.stderr
    rows = re.findall(
        r"^ +(\d) +failed +\{SGD: \{learning_rate: 1\.0e\+30\}\} .*  the loss "
        r"became nan in epoch 1",
        result.stdout,
        re.MULTILINE,
    )
    assert rows == ["0", "1"], result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "Error: no trial of study tiny-tune completed (2 failed); trial 0: "
        "the loss became nan in epoch 1"
    )
    assert "Traceback" not in result.stderr
    assert trials_in(tmp_path / "runs" / "tiny-tune-1" / "study.db") == [(0, "FAIL"), (1, "FAIL")]


NO_TENSORFLOW = re.compile(r"^import time:.*\|\s*(tensorflow|keras)(\.|$)", re.MULTILINE)


@pytest.mark.parametrize(
    ("change", "arguments", "code", "message"),
    [
        (
            ("units: {int: [4, 32]", "unit: {int: [4, 32]"),
            [],
            3,
            "`search.space.model.layers[1].Dense.unit`: with 4, `model.layers[1].Dense.unit`: "
            "`Dense` has no argument `unit` (did you mean `units`?) (tiny.yaml, line 22)",
        ),
        (
            ("model.layers[1]", "model.layers[7]"),
            [],
            3,
            "`search.space.model.layers[7].Dense.units`: `model.layers[7]` does not exist in the "
            "spec (tiny.yaml, line 22)",
        ),
        (
            ("{float: [1.0e-3, 1.0e-1], log: true}", "{float: [0.0, 0.1]}"),
            [],
            3,
            "`search.space.compile.optimizer.Adam.learning_rate`: with 0.0, "
            "`compile.optimizer.Adam.learning_rate` must be greater than 0. Received: 0.0 "
            "(tiny.yaml, line 23)",
        ),
        (
            ("  space:", "  first_trials:\n    - model.layers[1].Dense.unit: 8\n  space:"),
            [],
            3,
            "`search.first_trials[0].model.layers[1].Dense.unit`: `model.layers[1].Dense.unit` "
            "is not a key of `search.space` (did you mean `model.layers[1].Dense.units`?) "
            "(tiny.yaml, line 22)",
        ),
        (
            ("  space:", "  first_trials:\n    - model.layers[1].Dense.units: 64\n  space:"),
            [],
            3,
            "`search.first_trials[0].model.layers[1].Dense.units`: 64 is outside the `int` range "
            "[4, 32] (tiny.yaml, line 22)",
        ),
        (
            ("metric: val_accuracy", "metric: accuracy"),
            [],
            3,
            "`search.metric` must be a metric of the validation split, named `val_...` (trials are "
            "never scored on the training or test data), e.g. val_accuracy. Received: 'accuracy' "
            "(tiny.yaml, line 19)",
        ),
        (
            ("  validation_split: 0.25\n", ""),
            [],
            3,
            "tiny.yaml: the data has no validation split, and trials are scored on one (never on "
            "the test split): add `dataset.validation_split: 0.1` (or --set "
            "dataset.validation_split=0.1)",
        ),
        (
            ("metric: val_accuracy", "metric: val_wobble"),
            [],
            3,
            "`search.metric` val_wobble: cannot tell from its name whether higher or lower is "
            "better; add `search.direction: maximize` or `minimize`",
        ),
        (
            None,
            ["--storage", "nosuch://host/db"],
            13,
            "--storage nosuch://host/db: cannot open the study storage (Can't load plugin: "
            "sqlalchemy.dialects:nosuch)",
        ),
    ],
    ids=[
        "misspelt key",
        "no such layer",
        "value refused",
        "first trial off the space",
        "first trial outside a range",
        "training metric",
        "no validation",
        "unknown direction",
        "bad storage",
    ],
)
def test_a_search_mistake_is_one_line_before_any_trial(
    change: tuple[str, str] | None,
    arguments: list[str],
    code: int,
    message: str,
    tmp_path: Path,
    user_env: dict[str, str],
) -> None:
    text = SEARCH.replace(*change) if change else SEARCH
    assert text != SEARCH or not change
    write_search_spec(tmp_path, text)
    env = {**user_env, "PYTHONPROFILEIMPORTTIME": "1"}
    result = run_cli(["tune", "tiny.yaml", *arguments], env, tmp_path)
    lines = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    assert result.returncode == code, "\n".join(lines)
    assert lines == [f"Error: {message}"]
    assert not NO_TENSORFLOW.search(result.stderr)
    assert not list(tmp_path.glob("runs/*/trial-*"))


def test_a_study_of_another_spec_is_refused(tmp_path: Path, user_env: dict[str, str]) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(storage=storage, study_name="shared").set_user_attr("spec_key", "other")
    write_search_spec(tmp_path)
    arguments = ["tune", "tiny.yaml", "--storage", storage, "--study", "shared"]
    result = run_cli(arguments, user_env, tmp_path)
    assert result.returncode == 13, result.stderr
    assert result.stderr.strip() == (
        f"Error: study shared in {storage} was made from another spec (or another search); "
        "give this one its own name with --study NAME"
    )


def test_a_spec_without_search_is_refused(tmp_path: Path, user_env: dict[str, str]) -> None:
    write_search_spec(tmp_path, SEARCH.split("search:")[0])
    result = run_cli(["tune", "tiny.yaml"], user_env, tmp_path)
    assert result.returncode == 3
    assert result.stderr.strip() == (
        "Error: tiny.yaml: no `search:` section; dlcli tune needs one, e.g. search: {metric: "
        "val_accuracy, trials: 20, space: {fit.batch_size: {choice: [64, 128]}}}"
    )


def test_a_metric_the_model_does_not_report_ends_the_search_after_one_epoch(
    tmp_path: Path, user_env: dict[str, str]
) -> None:
    """Keras names its metrics only once the model trains: `val_acc` is found wrong then, and
    ends the search (every trial would miss it) instead of failing trial after trial."""
    write_search_spec(tmp_path, SEARCH.replace("metric: val_accuracy", "metric: val_acc"))
    result = run_cli(["tune", "tiny.yaml"], user_env, tmp_path)
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: `search.metric` val_acc is not among what the model reports on the validation "
        "split: val_accuracy, val_loss"
    )
    study = tmp_path / "runs" / "tiny-tune-1"
    assert trials_in(study / "study.db") == [(0, "FAIL")]
    assert not (study / "trial-0" / "backup").exists()


def test_a_trials_score_is_the_one_its_files_show_and_says_which_epochs_weights(
    tmp_path: Path, user_env: dict[str, str]
) -> None:
    """EarlyStopping that restores the best weights scores a trial with an earlier epoch's
    weights than history.csv's last row: the ranked value equals that epoch's row and the
    table names the epoch."""
    restoring = SEARCH.replace(
        "  batch_size: 16\n",
        "  batch_size: 16\n  callbacks:\n"
        "    - EarlyStopping: {monitor: val_loss, min_delta: 10, patience: 1,"
        " restore_best_weights: true}\n",
    ).replace("trials: 3", "trials: 1")
    write_search_spec(tmp_path, restoring)
    result = run_cli(["tune", "tiny.yaml", "--json"], user_env, tmp_path)
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)["trials"][0]
    trial = tmp_path / "runs" / "tiny-tune-1" / "trial-0"
    with (trial / "history.csv").open(newline="") as handle:
        history = list(csv.DictReader(handle))
    assert len(history) == 2  # epoch 1 is best (nothing beats it by 10); epoch 2 stops
    assert row["value"] == pytest.approx(float(history[0]["val_accuracy"]), abs=1e-6)
    assert row["weights_epoch"] == 1 and row["epochs"] == 2
    assert re.search(
        r"^ +0 +complete .* weights of epoch 1 \(restored by EarlyStopping\)$",
        result.stderr,
        re.MULTILINE,
    ), result.stderr


def test_a_timeout_ends_the_search_before_its_trials(
    tmp_path: Path, user_env: dict[str, str]
) -> None:
    """`--timeout 1` on a search of 20 trials of 1 epoch: no trial starts after a second, the
    output says the timeout ended the search, and the study holds the trials that ran."""
    text = SEARCH.replace("epochs: 3", "epochs: 1").replace("trials: 3", "trials: 20")
    write_search_spec(tmp_path, text)
    result = run_cli(["tune", "tiny.yaml", "--timeout", "1"], user_env, tmp_path)
    assert result.returncode == 0, result.stderr
    ended = re.search(
        r"^The timeout ended the search here after (\d+) trials$", result.stdout, re.M
    )
    assert ended, result.stdout
    ran = int(ended[1])
    assert 1 <= ran < 20
    assert len(trials_in(tmp_path / "runs" / "tiny-tune-1" / "study.db")) == ran


def test_the_first_trials_run_as_given_and_the_median_pruner_stops_a_bad_one(
    tmp_path: Path, user_env: dict[str, str]
) -> None:
    """`search.first_trials` runs five good learning rates, then a deliberately bad one (Adam at
    0.001 learns little in an epoch): the median pruner, which waits for 5 finished trials,
    stops the sixth after its first epoch of three, since its val_loss is above the median of
    the others' first epochs."""
    good = [0.03, 0.04, 0.05, 0.06, 0.08]
    first = [{"compile.optimizer.Adam.learning_rate": rate} for rate in [*good, 0.001]]
    text = SEARCH.replace("metric: val_accuracy", "metric: val_loss").replace(
        "trials: 3", f"trials: 6\n  first_trials: {json.dumps(first)}"
    )
    write_search_spec(tmp_path, text)
    result = run_cli(["tune", "tiny.yaml", "--json"], user_env, tmp_path)
    assert result.returncode == 0, result.stderr
    trials = json.loads(result.stdout)["trials"]
    learning_rates = [row["params"]["compile.optimizer.Adam.learning_rate"] for row in trials]
    assert learning_rates == [*good, 0.001]
    assert [row["state"] for row in trials] == ["complete"] * 5 + ["pruned"]
    assert [row["epochs"] for row in trials] == [3] * 5 + [1]
    history = (tmp_path / "runs" / "tiny-tune-1" / "trial-5" / "history.csv").read_text()
    assert len(history.splitlines()) == 2, history  # the header and the one epoch it trained


def test_the_shipped_mnist_search_runs_its_space_on_tiny_digits(
    tmp_path: Path, user_env: dict[str, str]
) -> None:
    """configs/mnist_tune.yaml as shipped (its model, optimizer and search space), on 160 random
    28x28 images instead of MNIST, 2 trials of 1 epoch: every key path of its space is drawn
    and trained (tests/test_e2e.py searches the real MNIST, behind `slow`)."""
    generator = np.random.default_rng(0)
    images = generator.integers(0, 256, (160, 28, 28), dtype=np.uint8)
    labels = np.arange(160) % 10
    train, test = slice(0, 120), slice(120, None)
    splits = {"x_train": images[train], "y_train": labels[train]}
    np.savez(tmp_path / "digits.npz", **splits, x_test=images[test], y_test=labels[test])
    arguments = [
        "tune",
        str(REPO / "configs" / "mnist_tune.yaml"),
        "--trials",
        "2",
        "--set",
        "fit.epochs=1",
        "--set",
        f"dataset={{npz: {tmp_path / 'digits.npz'}, validation_split: 0.25}}",
        "--json",
    ]
    result = run_cli(arguments, user_env, tmp_path)
    assert result.returncode == 0, result.stderr
    tuned = json.loads(result.stdout)
    assert [row["state"] for row in tuned["trials"]] == ["complete", "complete"]
    space = yaml.safe_load((REPO / "configs" / "mnist_tune.yaml").read_text())["search"]["space"]
    for row in tuned["trials"]:
        assert set(row["params"]) == set(space)
        units = row["params"]["model.layers[2].Dense.units"]
        trained = yaml.safe_load((Path(row["run_dir"]) / "spec.yaml").read_text())
        assert trained["model"]["layers"][2] == {"Dense": {"units": units, "activation": "relu"}}
    best = yaml.safe_load(Path(tuned["best"]["spec_file"]).read_text())
    assert best["dataset"]["npz"]["path"] == str(tmp_path / "digits.npz")
    assert "search" not in best
