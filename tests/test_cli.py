"""The command line itself: help texts, validate, summary, schema."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from dlcli.cli.app import app

from .helpers import REPO, invoke

README = (REPO / "README.md").read_text()


def registered_commands() -> list[str]:
    return [command.name or command.callback.__name__ for command in app.registered_commands]


def test_every_command_has_help_with_an_example_and_is_in_the_readme() -> None:
    for name in registered_commands():
        result = invoke([name, "--help"])
        assert result.exit_code == 0
        assert "Example: dlcli " + name in " ".join(result.stdout.split()), name
        assert f"dlcli {name}" in README, f"`dlcli {name}` is missing from the README"


def test_validate_good_and_bad() -> None:
    result = invoke(["validate", str(REPO / "configs" / "mnist.yaml")])
    assert result.exit_code == 0
    assert result.stdout.endswith("mnist.yaml: valid (mnist: 4 layers)\n")
    missing = invoke(["validate", "nope.yaml"])
    assert missing.exit_code == 3
    assert missing.stderr == "Error: spec file not found: nope.yaml\n"


def test_summary_prints_layers_and_parameter_counts() -> None:
    result = invoke(["summary", str(REPO / "configs" / "mnist.yaml")])
    assert result.exit_code == 0, result.output
    assert re.search(r"dense(_\d+)? \(Dense\)\s+│ \(None, 512\)\s+│\s+401,920", result.stdout)
    assert "Total params: 407,050" in result.stdout


def test_summary_reports_keras_errors_with_the_layer_path(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    text = (REPO / "configs" / "mnist.yaml").read_text()
    spec.write_text(text.replace("units: 512", "units: -5"))
    result = invoke(["summary", str(spec)])
    assert result.exit_code == 3
    assert result.stderr.startswith("Error: `model.layers[2].Dense`: Received an invalid value")
    assert "units=-5" in result.stderr


def test_schema_is_json_schema_of_the_spec() -> None:
    result = invoke(["schema"])
    schema = json.loads(result.stdout)
    assert set(schema["required"]) == {"name", "dataset", "model", "compile", "fit"}
    assert schema["properties"]["fit"]["$ref"].endswith("FitSpec")


@pytest.mark.parametrize("argv", [["--help"], []])
def test_top_level_help(argv: list[str]) -> None:
    result = invoke(argv)
    assert "train" in result.output and "validate" in result.output


def test_tensorflow_start_up_noise_is_not_shown() -> None:
    """TensorFlow's CUDA stubs write to file descriptor 2 while it is imported: a subprocess."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    command = [sys.executable, "-m", "dlcli", "summary", str(REPO / "configs" / "xor.yaml")]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "Total params: 9" in result.stdout


def test_commands_that_load_tensorflow_keep_exit_code_and_output(tmp_path: Path) -> None:
    """They leave with os._exit (no teardown): the code and every line must still come out."""
    import subprocess
    import sys

    missing = tmp_path / "missing.keras"
    command = [sys.executable, "-m", "dlcli", "evaluate", str(missing)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 6
    assert result.stderr == f"Error: model file not found: {missing}\n"
