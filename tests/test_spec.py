"""Spec mistakes: each ends in one line naming the file, line, key path, expectation and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlcli.errors import ConfigError
from dlcli.spec.load import load_spec, spec_from_text

from .helpers import CONFIGS, REPO

MNIST = (REPO / "configs" / "mnist.yaml").read_text()
WHERE = "configs/mnist.yaml"


def replaced(old: str, new: str) -> str:
    assert old in MNIST, old
    return MNIST.replace(old, new, 1)


CASES = [
    (
        replaced("epochs: 5", "epoch: 5"),
        "`fit.epoch`: unknown key `epoch` (did you mean `epochs`?); valid keys: epochs, "
        "batch_size, shuffle, callbacks, class_weight, validation_freq, initial_weights, freeze, "
        "fine_tune (configs/mnist.yaml, line 20)",
    ),
    (
        replaced("epochs: 5", "epochs: -3"),
        "`fit.epochs` must be greater than 0. Received: -3 (configs/mnist.yaml, line 20)",
    ),
    (
        replaced("batch_size: 128", "batch_size: 0"),
        "`fit.batch_size` must be greater than 0. Received: 0 (configs/mnist.yaml, line 21)",
    ),
    (
        replaced("name: mnist\nmodel", "name: mnist\n  validation_split: 1.5\nmodel"),
        "`dataset.validation_split` must be less than 1. Received: 1.5 "
        "(configs/mnist.yaml, line 7)",
    ),
    (
        replaced("- Flatten", "- Flaten"),
        "`model.layers[1]`: unknown layer `Flaten` (did you mean `Flatten`?); see keras.layers "
        "for the valid names (configs/mnist.yaml, line 11)",
    ),
    (
        replaced("units: 512", "unit: 512"),
        "`model.layers[2].Dense.unit`: `Dense` has no argument `unit` (did you mean `units`?) "
        "(configs/mnist.yaml, line 12)",
    ),
    (
        replaced("activation: relu", "activation: rellu"),
        "`model.layers[2].Dense.activation`: unknown activation `rellu` (did you mean `relu`?); "
        "see keras.activations for the valid names (configs/mnist.yaml, line 12)",
    ),
    (
        replaced("optimizer: rmsprop", "optimizer: rmsprob"),
        "`compile.optimizer`: unknown optimizer `rmsprob` (did you mean `rmsprop`?); "
        "see keras.optimizers for the valid names (configs/mnist.yaml, line 15)",
    ),
    (
        replaced("loss: sparse_categorical_crossentropy", "loss: sparse_categorical_crossentrop"),
        "`compile.loss`: unknown loss `sparse_categorical_crossentrop` (did you mean "
        "`sparse_categorical_crossentropy`?); see keras.losses for the valid names "
        "(configs/mnist.yaml, line 16)",
    ),
    (
        replaced("metrics: [accuracy]", "metrics: [acuracy]"),
        "`compile.metrics[0]`: unknown metric `acuracy` (did you mean `accuracy`?); "
        "see keras.metrics for the valid names (configs/mnist.yaml, line 17)",
    ),
    (
        replaced("optimizer: rmsprop", "optimizer: {Adam: {learning_rate: 1e-3}}"),
        "`compile.optimizer.Adam.learning_rate` must be a number. Received: '1e-3', which YAML "
        "reads as text; write it with a dot, e.g. 1.0e-3 (configs/mnist.yaml, line 15)",
    ),
    (
        replaced("optimizer: rmsprop", "optimizer: {Adam: {learning_rate: -0.1}}"),
        "`compile.optimizer.Adam.learning_rate` must be greater than 0. Received: -0.1 "
        "(configs/mnist.yaml, line 15)",
    ),
    (
        replaced(
            "optimizer: rmsprop",
            "optimizer: {Adam: {learning_rate: {CosineDecay: {initial_learning_rate: 0.1, "
            "decay_step: 100}}}}",
        ),
        "`compile.optimizer.Adam.learning_rate.CosineDecay.decay_step`: `CosineDecay` has no "
        "argument `decay_step` (did you mean `decay_steps`?) (configs/mnist.yaml, line 15)",
    ),
    (
        replaced("units: 512,", "units: 512, kernel_initializer: {HeNormall: {seed: 1}},"),
        "`model.layers[2].Dense.kernel_initializer`: unknown initializer `HeNormall` (did you "
        "mean `HeNormal`?); see keras.initializers for the valid names "
        "(configs/mnist.yaml, line 12)",
    ),
    (
        replaced("- Flatten", "- Lambda: {function: x}"),
        "`model.layers[1]`: `Lambda` is refused: it runs Python code from the spec; write a "
        "custom layer in a plugin module (configs/mnist.yaml, line 11)",
    ),
    (
        MNIST + "  callbacks:\n    - EarlyStoping: {monitor: val_loss}\n",
        "`fit.callbacks[0]`: unknown callback `EarlyStoping` (did you mean `EarlyStopping`?); "
        "see keras.callbacks for the valid names (configs/mnist.yaml, line 23)",
    ),
    (
        MNIST + "  callbacks:\n    - LambdaCallback: {}\n",
        "`fit.callbacks[0]`: `LambdaCallback` is refused: it runs Python code from the spec "
        "(configs/mnist.yaml, line 23)",
    ),
    (
        replaced("name: mnist\nmodel", "name: minst\nmodel"),
        "`dataset.name` must be 'mnist', 'fashion_mnist', 'cifar10', 'cifar100', 'imdb', "
        "'reuters', 'boston_housing' or 'california_housing' (did you mean `mnist`?). "
        "Received: 'minst' (configs/mnist.yaml, line 6)",
    ),
    (
        replaced("  name: mnist\n", "  name: mnist\n  npz: data.npz\n"),
        "`dataset`: give exactly one of `name` (a Keras dataset), `npz`, `csv`, `images`, "
        "`text_folders` or `inline`; found `name`, `npz` (configs/mnist.yaml, line 5)",
    ),
    (
        replaced("fit:\n  epochs: 5\n  batch_size: 128\n", ""),
        "`fit` is required but missing (configs/mnist.yaml)",
    ),
    (
        replaced("epochs: 5", "epochs: [5"),
        "configs/mnist.yaml, line 21: invalid YAML: expected ',' or ']', but got ':'",
    ),
    (
        replaced("epochs: 5", "epochs: !!python/object/apply:os.system ['touch pwned']"),
        "configs/mnist.yaml: the YAML tag `!!python/object/apply:os.system` is not allowed "
        "(line 20); a spec holds plain values, lists and mappings",
    ),
    (
        replaced("  batch_size: 128", "  batch_size: 128\n  epochs: 3"),
        "configs/mnist.yaml: duplicate key `epochs` at lines 20 and 22; keep only one of them",
    ),
    (
        replaced("epochs: 5", "epochs: &e 5\n  shuffle: *e"),
        "configs/mnist.yaml: anchors and aliases (&name, *name) are not allowed in a spec "
        "(line 20); write the value out in full",
    ),
    (
        replaced("  layers:", "  outputs: [out]\n  layers:"),
        "`model`: `outputs` belongs to a graph model; use `inputs:` with it "
        "(configs/mnist.yaml, line 7)",
    ),
]


@pytest.mark.parametrize(("text", "message"), CASES, ids=range(len(CASES)))
def test_spec_mistake_is_one_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        spec_from_text(text, WHERE)
    assert str(caught.value) == message


def test_python_tag_runs_nothing(tmp_path: Path) -> None:
    text = replaced("epochs: 5", "epochs: !!python/object/apply:os.system ['touch pwned']")
    with pytest.raises(ConfigError):
        spec_from_text(text, WHERE)
    assert not (tmp_path / "pwned").exists()


def test_graph_wiring_mistakes() -> None:
    graph = (REPO / "configs" / "mnist_two_branch.yaml").read_text()
    broken = graph.replace("from: [dense_view, conv_view]", "from: [dense_veiw, conv_view]")
    with pytest.raises(
        ConfigError,
        match=r"`model.layers\[6\].Concatenate.from`: `dense_veiw` "
        r"is not an input or an earlier layer \(did you mean `dense_view`\?\)",
    ):
        spec_from_text(broken, "two_branch.yaml")
    with pytest.raises(
        ConfigError,
        match=r"`model.outputs\[0\]`: `digits` is not a layer "
        r"\(did you mean `digit`\?\) \(two_branch.yaml, line 20\)",
    ):
        spec_from_text(graph.replace("outputs: [digit]", "outputs: [digits]"), "two_branch.yaml")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "fit.epochs=-1",
            "`fit.epochs` must be greater than 0. Received: -1 (--set fit.epochs=-1)",
        ),
        (
            "fit.nope.x=1",
            "`fit.nope`: unknown key `nope`; valid keys: epochs, batch_size, "
            "shuffle, callbacks, class_weight, validation_freq, initial_weights, freeze, "
            "fine_tune (--set fit.nope.x=1)",
        ),
        (
            "model.layers.9.units=1",
            "--set model.layers.9.units=1: `model.layers[9]` does not exist in the spec",
        ),
        ("fitepochs", "--set fitepochs: expected KEY.PATH=VALUE, e.g. --set fit.epochs=3"),
    ],
)
def test_override_mistakes(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        spec_from_text(MNIST, WHERE, [override])
    assert str(caught.value) == message


def test_overrides_apply_with_dotted_and_indexed_paths() -> None:
    spec = spec_from_text(MNIST, WHERE, ["fit.epochs=2", "model.layers[2].Dense.units=64"])
    assert spec.fit.epochs == 2
    assert spec.model.layers[2].config == {"units": 64, "activation": "relu"}


def test_oversized_and_deeply_nested_specs_are_refused() -> None:
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        spec_from_text("a: " + "x" * (1024 * 1024 + 1), "big.yaml")
    with pytest.raises(ConfigError, match="nests deeper than 64 levels"):
        spec_from_text("a: " + "[" * 100 + "]" * 100, "deep.yaml")


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"spec file not found: {tmp_path / 'nope.yaml'}"):
        load_spec(tmp_path / "nope.yaml")


def test_resolved_spec_round_trips() -> None:
    spec = spec_from_text(MNIST, WHERE)
    again = spec_from_text(spec.to_yaml(), "resolved.yaml")
    assert again == spec


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_shipped_config_is_valid(config: Path) -> None:
    spec = load_spec(config)
    assert spec.name == config.stem.removesuffix("_tune")  # a search's runs: <name>-tune-<n>
