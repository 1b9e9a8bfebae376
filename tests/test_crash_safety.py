"""One process per run, a restart that keeps the finished model, signals a job ignores, a run
that trained nothing, and a compiled-program cache that cannot poison a run."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .helpers import invoke, tiny_spec, write_tiny_data

SPEC = tiny_spec(
    compile={"metrics": None, "steps_per_execution": 1},
    fit={"epochs": 2, "batch_size": 4, "shuffle": False},
)


def start(folder: Path, *arguments: str, ignore_sigint: bool = False) -> subprocess.Popen:
    """`dlcli train ARGUMENTS` in the background, its stderr in folder/stderr.log."""
    preexec = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
    with (folder / "stderr.log").open("w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "dlcli", "train", *arguments],
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=preexec,
            env={**os.environ, "COLUMNS": "300"},
        )


def wait_for(process: subprocess.Popen, log: Path, text: str) -> None:
    deadline = time.monotonic() + 120
    while text not in log.read_text():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def test_a_second_process_on_the_same_run_is_refused_naming_the_first(tmp_path: Path) -> None:
    """A second process on a run being trained is refused with one line naming the first, and
    the first finishes its history alone."""
    write_tiny_data(tmp_path, 40_000, spec=SPEC)
    first = start(tmp_path, "spec.yaml", "--set", "fit.epochs=50")
    try:
        wait_for(first, tmp_path / "stderr.log", "Run directory: runs/tiny-1")
        second = invoke(["train", "--resume", "runs/tiny-1"])
        assert second.exit_code == 8
        assert second.stderr == (
            f"Error: runs/tiny-1 is being trained by process {first.pid}; wait for it to "
            "finish, or stop it first\n"
        )
    finally:
        first.kill()
        first.wait()


def test_sigint_that_the_job_ignores_stays_ignored(tmp_path: Path) -> None:
    """A script's background job starts with SIGINT ignored; before, fit re-enabled it."""
    write_tiny_data(tmp_path, 40_000, spec=SPEC)
    process = start(tmp_path, "spec.yaml", "--set", "fit.epochs=50", ignore_sigint=True)
    try:
        wait_for(process, tmp_path / "stderr.log", "Run directory: runs/tiny-1")
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        time.sleep(1.0)
        assert process.poll() is None, "SIGINT stopped a job that ignores it"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 143
    finally:
        if process.poll() is None:
            process.kill()


def test_restart_keeps_the_finished_model_until_a_new_one_is_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--resume RUN --restart` keeps the finished model.keras until a new one is saved, so a
    failure in between leaves the old one."""
    import keras

    write_tiny_data(tmp_path, spec=SPEC)
    assert invoke(["train", "spec.yaml"]).exit_code == 0
    run = tmp_path / "runs" / "tiny-1"
    kept = {name: (run / name).read_bytes() for name in ("model.keras", "metrics.json")}

    def fit(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the restarted run dies before it saves anything")

    monkeypatch.setattr(keras.Model, "fit", fit)
    result = invoke(["train", "--resume", "runs/tiny-1", "--restart"])
    assert isinstance(result.exception, RuntimeError), result.output
    assert {name: (run / name).read_bytes() for name in kept} == kept


def test_a_run_that_trained_no_step_saves_no_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A damaged compiled program that makes fit run its epochs with no step fails the run:
    no untrained model.keras or metrics.json is saved as its result."""
    import keras

    write_tiny_data(tmp_path, spec=SPEC)
    monkeypatch.setattr(keras.Model, "fit", lambda *args, **kwargs: None)
    result = invoke(["train", "spec.yaml"])
    assert result.exit_code == 8
    assert result.stderr.splitlines()[-1] == (
        "Error: training ran no step (the training data gave no batch); nothing was saved in "
        "runs/tiny-1"
    )
    assert not Path("runs/tiny-1").exists()


def test_an_epoch_without_a_step_is_never_backed_up(tmp_path: Path) -> None:
    """An epoch that ran no step is not backed up, so the run cannot be resumed into an
    untrained model."""
    import keras

    from dlcli.errors import TrainingError
    from dlcli.train import backup

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    run_dir = tmp_path / "runs" / "tiny-1"
    run_dir.mkdir(parents=True)
    callback = backup.callback(run_dir, [])
    callback.set_model(model)
    with pytest.raises(TrainingError) as stopped:
        callback.on_epoch_end(0, {"loss": 0.5})
    assert str(stopped.value) == (
        "epoch 1 ran no training step (the training data gave no batch); nothing was saved in "
        "runs/tiny-1"
    )
    assert list(run_dir.iterdir()) == []


def test_only_programs_of_a_finished_run_are_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only programs a finished run stored are loaded from the cache: an empty, garbage or
    truncated one is not."""
    from dlcli.distribute import device

    monkeypatch.delenv("TF_XLA_FLAGS", raising=False)
    monkeypatch.setattr(device, "_GPU_DEVICE_FILES", ())
    folder = device._program_folder()
    folder.mkdir(parents=True)
    good, damaged, stray = (folder / f"{name}.pb" for name in ("good", "damaged", "stray"))
    good.write_bytes(b"a program")
    damaged.write_bytes(b"a program")
    monkeypatch.setenv("TF_XLA_FLAGS", f"--tf_xla_persistent_cache_directory={folder}")
    device.record_compiled_programs()  # as after a finished run: both recorded
    damaged.write_bytes(b"a prog")  # truncated since
    stray.write_bytes(b"")  # written by a run that was killed
    writer = subprocess.Popen(["true"])
    writer.wait()  # its process id no longer runs: as a run killed while TensorFlow wrote
    killed_while_writing = folder / f"x.pbvm-2144df-{writer.pid}-6619e4.tmp"
    being_written = folder / f"y.pbvm-2144df-{os.getpid()}-6619e4.tmp"
    for partial in (killed_while_writing, being_written):
        partial.write_bytes(b"half a program")
    monkeypatch.delenv("TF_XLA_FLAGS")
    assert device.keep_compiled_programs() is None
    assert sorted(path.name for path in folder.glob("*.pb")) == ["good.pb"]
    assert sorted(folder.glob("*.tmp")) == [being_written]
    assert os.environ["TF_XLA_FLAGS"] == f"--tf_xla_persistent_cache_directory={folder}"
    manifest = (folder / device.MANIFEST).read_text()
    assert hashlib.sha256(b"a program").hexdigest() in manifest


def test_an_unusable_program_cache_turns_caching_off_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only program cache turns caching off with a note; a `jit_compile: true` run
    still trains."""
    from dlcli.distribute import device

    monkeypatch.delenv("TF_XLA_FLAGS", raising=False)
    monkeypatch.setattr(device, "_GPU_DEVICE_FILES", ())
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("DLCLI_CACHE", str(blocked))
    note = device.keep_compiled_programs()
    assert note is not None and note.startswith("Compiled programs are not cached (")
    assert str(blocked / "xla") in note
    assert "TF_XLA_FLAGS" not in os.environ
