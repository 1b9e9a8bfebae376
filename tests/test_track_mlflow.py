"""`dlcli train --mlflow-uri` and `dlcli tune --mlflow-uri` against a real `mlflow server`
(SQLite store, started once for this module on a free 127.0.0.1 port, stopped at the end), each
run read back with `MlflowClient`: params, every epoch's values, the test scores, the files,
the status; a run stopped by SIGINT is KILLED and `--resume` continues it in the same MLflow
run without logging an epoch twice; a server that goes away mid-run costs one warning line and
nothing else. Without MLflow installed (the dev extra installs it) the module is skipped."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .helpers import dlcli_command, run_cli, write_answers

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mlflow") is None
    or not (Path(sys.executable).parent / "mlflow").is_file(),
    reason="MLflow is not installed (pip install -e '.[dev]' installs it and its server)",
)

SPEC = """\
name: answer
seed: 1
dataset:
  csv: {train: answers/train.csv, test: answers/test.csv, label: answer}
  validation_split: 0.25
model:
  input: [2]
  layers:
    - Dense: {units: 3, activation: tanh}
    - Dense: {units: 1, activation: sigmoid}
compile:
  optimizer:
    Adam:
      learning_rate:
        ExponentialDecay: {initial_learning_rate: 0.1, decay_steps: 12, decay_rate: 0.5}
  loss: binary_crossentropy
  metrics: [accuracy]
  jit_compile: false
fit: {epochs: EPOCHS, batch_size: 4}
"""
FILES = {
    "spec.yaml",
    "history.csv",
    "metrics.json",
    "curves.png",
    "confusion_matrix.png",
    "model.keras",
    "model.onnx",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _direct(url: str) -> bytes:
    """GET `url` without any proxy of the environment."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return response.read()


@dataclass(frozen=True)
class Server:
    """The module's `mlflow server`: its URI, and a client that reads it back."""

    uri: str
    port: int
    seconds: float  # from start to its first answer
    client: Any  # mlflow.MlflowClient


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`mlflow server` on a SQLite file, one worker, a free port; stopped (its process group)
    at the end."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination",
        str(folder / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # its job runner: 10 s more to start
    started = time.monotonic()
    with (folder / "server.log").open("w") as log:
        process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=log, stderr=log, start_new_session=True
        )
    try:
        while True:
            assert process.poll() is None, (folder / "server.log").read_text()[-3000:]
            assert time.monotonic() - started < 180, "mlflow server did not answer in 180 s"
            with suppress(OSError):
                if _direct(f"http://127.0.0.1:{port}/health") == b"OK":
                    break
            time.sleep(0.2)
        seconds = time.monotonic() - started
        from mlflow import MlflowClient

        with pytest.MonkeyPatch.context() as patch:
            for name in ("no_proxy", "NO_PROXY"):
                patch.setenv(name, "127.0.0.1,localhost")
            uri = f"http://127.0.0.1:{port}"
            yield Server(uri, port, seconds, MlflowClient(tracking_uri=uri))
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def env(user_env: dict[str, str]) -> dict[str, str]:
    """The new user's environment, with 127.0.0.1 reached directly (not through the refusing
    proxy that stands for the dataset origins)."""
    direct = f"{user_env['no_proxy']},127.0.0.1,localhost"
    return {**user_env, "no_proxy": direct, "NO_PROXY": direct}


def project(folder: Path, epochs: int) -> Path:
    """A spec (the CSV answers: a+b > 0) and its data in `folder`."""
    (folder / "answers").mkdir(parents=True, exist_ok=True)
    write_answers(folder / "answers")
    (folder / "spec.yaml").write_text(SPEC.replace("EPOCHS", str(epochs)))
    return folder / "spec.yaml"


def recorded_run(run_dir: Path) -> dict[str, str]:
    return json.loads((run_dir / "run.json").read_text())["mlflow"]


def history(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """history.csv as {name: [(epoch, value), ...]}."""
    lines = (run_dir / "history.csv").read_text().splitlines()
    names = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:]]
    return {
        name: [(int(row[0]), float(row[column])) for row in rows if row[column] != "NA"]
        for column, name in enumerate(names)
        if name != "epoch"
    }


def logged(server: Server, run_id: str, name: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in server.client.get_metric_history(run_id, name))


def same(found: list[tuple[int, float]], expected: list[tuple[int, float]]) -> bool:
    """The same epochs with the same values (MLflow keeps doubles; history.csv their text)."""
    steps = [step for step, _ in found] == [step for step, _ in expected]
    return steps and [value for _, value in found] == pytest.approx([v for _, v in expected])


def wait_for_epochs(process: subprocess.Popen, run_dir: Path, epochs: int) -> None:
    """Wait until history.csv holds `epochs` rows (the process still running)."""
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, "training ended before it was stopped"
        assert time.monotonic() < deadline, f"no {epochs} epochs in 120 s"
        path = run_dir / "history.csv"
        with suppress(OSError):
            if path.read_text().count("\n") > epochs:
                return
        time.sleep(0.01)


@dataclass(frozen=True)
class Trained:
    folder: Path
    run_dir: Path
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, server: Server, env: dict[str, str]
) -> Trained:
    folder = tmp_path_factory.mktemp("tracked")
    project(folder, epochs=4)
    result = run_cli(["train", "spec.yaml", "--mlflow-uri", server.uri], env, folder)
    assert result.returncode == 0, result.stderr
    return Trained(folder, folder / "runs" / "answer-1", result)


def test_train_is_read_back_from_the_server(trained: Trained, server: Server) -> None:
    """Everything the issue lists is on the server: the params at their --set paths, the
    data, versions and device, every epoch's values (validation and learning rate too), the
    test scores and times, the run's files, FINISHED; run.json and the output name the run."""
    run_id = recorded_run(trained.run_dir)["run_id"]
    assert recorded_run(trained.run_dir)["tracking_uri"] == server.uri
    assert f"MLflow: run {run_id} at {server.uri}" in trained.result.stdout
    run = server.client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "answer-1"
    assert server.client.get_experiment(run.info.experiment_id).name == "answer"
    params = run.data.params
    assert params["model.layers.0.Dense.units"] == "3"
    assert params["model.layers.1.Dense.activation"] == "sigmoid"
    assert params["compile.optimizer.Adam.learning_rate.ExponentialDecay.decay_rate"] == "0.5"
    assert params["seed"] == "1" and params["fit.epochs"] == "4"
    assert params["model.input"] == "[2]"
    assert len(params["dataset.digest"]) == 64
    sizes = {key: params[f"dataset.size.{key}"] for key in ("train", "validation", "test")}
    assert sizes == {"train": "45", "validation": "15", "test": "24"}
    assert params["version.keras"] == importlib.metadata.version("keras")
    assert params["device"].startswith("CPU")
    for name, rows in history(trained.run_dir).items():  # loss, accuracy, val_loss, ...
        assert same(logged(server, run_id, name), rows), name
    assert {"val_loss", "val_accuracy"} <= set(history(trained.run_dir))
    rates = logged(server, run_id, "learning_rate")
    assert [step for step, _ in rates] == [1, 2, 3, 4]
    assert all(a[1] > b[1] for a, b in zip(rates, rates[1:], strict=False)), rates
    metrics = json.loads((trained.run_dir / "metrics.json").read_text())
    for name, value in metrics["test"].items():
        assert run.data.metrics[f"test_{name}"] == pytest.approx(value)
    assert run.data.metrics["fit_seconds"] > 0
    assert run.data.metrics["total_seconds"] > run.data.metrics["fit_seconds"]
    files = {item.path for item in server.client.list_artifacts(run_id)}
    assert files == FILES
    copy = server.client.download_artifacts(run_id, "spec.yaml", str(trained.folder))
    assert Path(copy).read_bytes() == (trained.run_dir / "spec.yaml").read_bytes()


def test_runs_shows_the_mlflow_run(trained: Trained, env: dict[str, str]) -> None:
    """`dlcli runs` names each run's MLflow run, in the table's notes and in --json."""
    mlflow = recorded_run(trained.run_dir)
    listed = run_cli(["runs", "--json"], env, trained.folder)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["runs"][0]["mlflow"] == mlflow
    table = run_cli(["runs"], env, trained.folder)
    line = f"answer-1: MLflow run {mlflow['run_id']} at {mlflow['tracking_uri']}"
    assert line in table.stdout.splitlines(), table.stdout


def test_stopped_run_is_killed_and_resumed_in_the_same_run(
    tmp_path: Path, server: Server, env: dict[str, str]
) -> None:
    """SIGINT after 2 epochs: the MLflow run is KILLED with the epochs backed up; `--resume`
    continues that run to FINISHED, each epoch logged once, equal to history.csv."""
    project(tmp_path, epochs=60)
    run_dir = tmp_path / "runs" / "answer-1"
    command = [*dlcli_command(), "train", "spec.yaml", "--mlflow-uri", server.uri]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_epochs(process, run_dir, 2)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    run_id = recorded_run(run_dir)["run_id"]
    assert server.client.get_run(run_id).info.status == "KILLED"
    done = len(history(run_dir)["loss"])
    assert [step for step, _ in logged(server, run_id, "loss")] == list(range(1, done + 1))

    resumed = run_cli(["train", "--resume", "runs/answer-1"], env, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert recorded_run(run_dir)["run_id"] == run_id
    run = server.client.get_run(run_id)
    assert run.info.status == "FINISHED"
    rows = history(run_dir)["loss"]
    assert [epoch for epoch, _ in rows] == list(range(1, 61))
    assert same(logged(server, run_id, "loss"), rows)
    assert {item.path for item in server.client.list_artifacts(run_id)} == FILES


class Forwarder:
    """127.0.0.1:`port` forwarded to the server until `cut()`: then connections are refused
    (the server going away, seen from the training process)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self.listener.accept()
            except OSError:
                return
            far = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [near, far]
            for source, sink in ((near, far), (far, near)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept() (Linux): refused from now
        self.listener.close()
        for end in self.sockets:
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()


def test_server_gone_mid_run_costs_one_line(
    tmp_path: Path, server: Server, env: dict[str, str]
) -> None:
    """The server goes away after 2 epochs: training goes on to the end (exit 0), one warning
    line says so, the run folder is complete and `dlcli runs` shows it finished."""
    project(tmp_path, epochs=40)
    run_dir = tmp_path / "runs" / "answer-1"
    forwarder = Forwarder(server.port)
    uri = f"http://127.0.0.1:{forwarder.port}"
    command = [*dlcli_command(), "train", "spec.yaml", "--mlflow-uri", uri]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_epochs(process, run_dir, 2)
        forwarder.cut()
        stdout, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    said = [line for line in stderr.splitlines() if "MLflow" in line]
    assert len(said) == 1, stderr
    assert said[0].startswith(f"MLflow: {uri} did not take the values (")
    assert said[0].endswith("); training goes on without tracking")
    assert "Traceback" not in stderr
    assert {"model.keras", "metrics.json", "history.csv", "model.onnx"} <= {
        path.name for path in run_dir.iterdir()
    }
    assert len(history(run_dir)["loss"]) == 40
    assert "MLflow: run" not in stdout  # the run is not said to be mirrored
    listed = run_cli(["runs", "--json"], env, tmp_path)
    (run,) = json.loads(listed.stdout)["runs"]
    assert (run["status"], run["epochs_done"]) == ("finished", 40)
    assert run["mlflow"]["tracking_uri"] == uri


SEARCH = """\
name: answers-search
seed: 1
dataset:
  csv: {train: answers/train.csv, test: answers/test.csv, label: answer}
  validation_split: 0.25
model:
  input: [2]
  layers:
    - Dense: {units: 3, activation: tanh}
    - Dense: {units: 1, activation: sigmoid, kernel_initializer: zeros}
compile:
  optimizer: {Adam: {learning_rate: 0.1}}
  loss: binary_crossentropy
  metrics: [accuracy]
  jit_compile: false
fit: {epochs: 3, batch_size: 4}
search:  # 1e-9 leaves the output weights at zero: those trials learn nothing
  metric: val_accuracy
  trials: 7
  space:
    model.layers[0].Dense.units: {int: [2, 8]}
    compile.optimizer.Adam.learning_rate: {choice: [0.1, 1.0e-9]}
"""


def test_tune_is_a_parent_run_with_a_child_per_trial(
    tmp_path: Path, server: Server, env: dict[str, str]
) -> None:
    """`dlcli tune --mlflow-uri`: the study is a parent run (the search's params, the best
    trial and value, best.yaml and Optuna's plots), each trial a child run with its sampled
    params and per-epoch values, tagged with its state (pruned ones too); the best is tagged."""
    project(tmp_path, epochs=3)
    (tmp_path / "spec.yaml").write_text(SEARCH)
    result = run_cli(["tune", "spec.yaml", "--json", "--mlflow-uri", server.uri], env, tmp_path)
    assert result.returncode == 0, result.stderr
    tuned = json.loads(result.stdout)
    client = server.client
    experiment = client.get_experiment_by_name("answers-search")
    (parent,) = client.search_runs(
        [experiment.experiment_id], f"tags.`dlcli.study` = '{tuned['study']}'"
    )
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == tuned["study"]
    assert parent.data.params["search.metric"] == "val_accuracy"
    best = tuned["best"]["trial"]
    assert parent.data.tags["dlcli.best_trial"] == str(best["number"])
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(best["value"])
    files = {item.path for item in client.list_artifacts(parent.info.run_id)}
    assert {"best.yaml", "history.png", "importances.png"} <= files
    children = client.search_runs(
        [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    by_number = {int(child.data.tags["dlcli.trial"]): child for child in children}
    trials = {row["number"]: row for row in tuned["trials"]}
    assert sorted(by_number) == sorted(trials) == list(range(7))
    states = {number: child.data.tags["dlcli.state"] for number, child in by_number.items()}
    assert states == {number: row["state"] for number, row in trials.items()}
    assert "complete" in states.values(), states  # "pruned" too, for most of the study's seeds
    for number, child in by_number.items():
        row = trials[number]
        assert child.info.run_name == f"trial-{number}"
        units = child.data.params["model.layers.0.Dense.units"]
        assert units == str(row["params"]["model.layers[0].Dense.units"])
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy")]
        assert steps == list(range(1, row["epochs"] + 1))
        if row["state"] == "pruned":
            assert child.data.tags["dlcli.pruned_after_epoch"] == str(row["epochs"]) < "3"
    assert [n for n, c in by_number.items() if c.data.tags.get("dlcli.best")] == [best["number"]]
