"""A training run that fails before its first backup leaves nothing behind: no run folder,
and no output folder when the run would have made it."""

from __future__ import annotations

from pathlib import Path

from .helpers import invoke

SPEC = """\
name: tiny
dataset:
  csv: {train: data.csv, label: y}
model:
  input: [2]
  layers:
    - Dense: {units: 2, activation: softmax}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy}
fit: {epochs: 1}
"""


def test_a_run_failing_on_its_data_leaves_no_runs_folder(isolated: Path) -> None:
    Path("spec.yaml").write_text(SPEC)
    Path("data.csv").write_text("a,b,y\n1,2,0\n3,x,1\n")
    result = invoke(["train", "spec.yaml"])
    assert result.exit_code == 4, result.output
    assert result.stderr == "Error: data.csv, line 3, column `b`: `x` is not a number\n"
    assert not Path("runs").exists()


def test_an_output_folder_the_user_made_is_kept(isolated: Path) -> None:
    Path("spec.yaml").write_text(SPEC)
    Path("data.csv").write_text("a,b,y\n1,2,0\n3,x,1\n")
    Path("runs").mkdir()
    result = invoke(["train", "spec.yaml"])
    assert result.exit_code == 4, result.output
    assert Path("runs").is_dir() and list(Path("runs").iterdir()) == []
