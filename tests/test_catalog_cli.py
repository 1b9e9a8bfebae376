"""Names that `dlcli validate` accepted and `dlcli train` then crashed on, through the real CLI.

Each is now refused by validate, in one line naming the key path and the nearest valid name,
with exit code 3 (on the old catalog, parsed from Keras's source, each validated with exit 0).
The CLI runs with an empty HOME and the session's shared dlcli cache, whose Keras catalog the
real CLI built once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import REPO

XOR = REPO / "configs" / "xor.yaml"
SEE = "see keras.{namespace} for the valid names (--set {override})"
REFUSED = [
    (
        "fit.callbacks=[early_stopping]",
        "`fit.callbacks[0]`: unknown callback `early_stopping` (did you mean `EarlyStopping`?); "
        + SEE.format(namespace="callbacks", override="fit.callbacks=[early_stopping]"),
    ),
    (
        "model.layers[0]={dense: {units: 2}}",
        "`model.layers[0]`: unknown layer `dense` (did you mean `Dense`?); "
        + SEE.format(namespace="layers", override="model.layers[0]={dense: {units: 2}}"),
    ),
    (
        "compile.optimizer=config",
        "`compile.optimizer`: unknown optimizer `config`; "
        + SEE.format(namespace="optimizers", override="compile.optimizer=config"),
    ),
    (
        "model.layers[0].Dense.kernel_initializer=class_name",
        "`model.layers[0].Dense.kernel_initializer`: unknown initializer `class_name`; "
        + SEE.format(
            namespace="initializers", override="model.layers[0].Dense.kernel_initializer=class_name"
        ),
    ),
    (
        "compile.optimizer=adamm",
        "`compile.optimizer`: unknown optimizer `adamm` (did you mean `adam`?); "
        + SEE.format(namespace="optimizers", override="compile.optimizer=adamm"),
    ),
    (
        "compile.optimizer=Adamm",
        "`compile.optimizer`: unknown optimizer `Adamm` (did you mean `Adam`?); "
        + SEE.format(namespace="optimizers", override="compile.optimizer=Adamm"),
    ),
    (
        "model.layers[0]=Dense",
        "`model.layers[0]`: `Dense` needs the argument `units` (--set model.layers[0]=Dense)",
    ),
    (
        "compile.optimizer=LossScaleOptimizer",
        "`compile.optimizer`: `LossScaleOptimizer` needs the argument `inner_optimizer` "
        "(--set compile.optimizer=LossScaleOptimizer)",
    ),
    (
        "compile.optimizer={Adam: {learning_rate: fast}}",
        "`compile.optimizer.Adam.learning_rate` must be a number or {ClassName: {arguments}} "
        "from keras.optimizers.schedules. Received: 'fast' "
        "(--set compile.optimizer={Adam: {learning_rate: fast}})",
    ),
    (
        "model.layers[0]=Layer",
        "`model.layers[0]`: `Layer` is refused: it is the abstract base class "
        "(--set model.layers[0]=Layer)",
    ),
]


def dlcli(cache: Path, home: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "DLCLI_CACHE": str(cache)}
    env.pop("XDG_CACHE_HOME", None)
    command = [sys.executable, "-m", "dlcli", *arguments]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize(("override", "message"), REFUSED, ids=[o for o, _ in REFUSED])
def test_validate_refuses_what_train_cannot_build(
    override: str,
    message: str,
    keras_names_cache: Path,
    tmp_path: Path,
) -> None:
    result = dlcli(keras_names_cache, tmp_path, "validate", str(XOR), "--set", override)
    assert (result.returncode, result.stderr) == (3, f"Error: {message}\n")


def test_names_keras_reads_itself_validate_and_build(
    keras_names_cache: Path,
    tmp_path: Path,
) -> None:
    """Aliases, snake_case and nested objects that Keras's `get` takes: summary builds them."""
    overrides = [
        "compile.optimizer={adam: {learning_rate: {CosineDecay: "
        "{initial_learning_rate: 0.1, decay_steps: 10}}}}",
        "compile.loss=mse",
        "compile.metrics=[mae, acc, AUC]",
        "model.layers[0].Dense.kernel_initializer={HeNormal: {seed: 1}}",
        "model.layers[0].Dense.kernel_regularizer=l2",
        "fit.callbacks=[{EarlyStopping: {patience: 2}}]",
    ]
    arguments = [str(XOR), *(part for o in overrides for part in ("--set", o))]
    assert dlcli(keras_names_cache, tmp_path, "validate", *arguments).returncode == 0
    summary = dlcli(keras_names_cache, tmp_path, "summary", *arguments)
    assert summary.returncode == 0, summary.stderr[-2000:]
    assert "Total params: 9" in summary.stdout
