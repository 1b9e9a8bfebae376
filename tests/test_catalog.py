"""One resolver: every spec `validate` accepts builds, or the builder says why in one line.

The catalog is asked of Keras itself (`dlcli.spec.keras_catalog`); the property test draws specs
from the
catalog's own names, in every spelling it accepts and a few it does not, with nested objects
and random but type-plausible arguments (wrong ones too), and builds each accepted spec with
`build_model`, `compile_model` and `build_callbacks`. On the old catalog, which parsed Keras's
source, it failed on `early_stopping`, `dense`, `config` and `class_name`, as the tables in
test_catalog_cli.py do through the CLI.
"""

from __future__ import annotations

import doctest
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlcli.errors import ConfigError
from dlcli.spec import keras_catalog, load, messages, names

from .helpers import REPO

XOR = REPO / "configs" / "xor.yaml"


@pytest.fixture(autouse=True)
def shared_catalog(keras_names_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process checks read the session's catalog (`keras_catalog.load` caches per folder)."""
    monkeypatch.setenv("DLCLI_CACHE", str(keras_names_cache))


RESOLVED = [
    ("optimizers", "adam", "Adam"),
    ("optimizers", "rmsprop", "RMSprop"),
    ("optimizers", "RMSprop", "RMSprop"),
    ("optimizers", "config", None),  # a key of a dict literal in Keras's source
    ("losses", "mse", "mean_squared_error"),
    ("losses", "MeanSquaredError", "MeanSquaredError"),
    ("losses", "crossentropy", "crossentropy"),  # model.compile's own
    ("metrics", "accuracy", "accuracy"),
    ("metrics", "acc", "acc"),
    ("metrics", "mae", "MeanAbsoluteError"),  # metrics.get returns an instance
    ("callbacks", "EarlyStopping", "EarlyStopping"),
    ("callbacks", "early_stopping", None),  # keras.callbacks has no `get`
    ("layers", "Dense", "Dense"),
    ("layers", "dense", None),  # keras.layers has no `get`
    ("layers", "add", None),  # a function of keras.layers, not a layer
    ("initializers", "he_normal", "he_normal"),  # a public alias of HeNormal
    ("initializers", "class_name", None),
    ("activations", "relu", "relu"),
    ("optimizers.schedules", "CosineDecay", "CosineDecay"),
]


@pytest.mark.parametrize(("namespace", "identifier", "expected"), RESOLVED)
def test_resolve_answers_as_keras_get_does(
    namespace: str, identifier: str, expected: str | None
) -> None:
    assert keras_catalog.resolve(namespace, identifier) == expected


def test_arguments_follow_kwargs_into_the_base_classes() -> None:
    dense, dense_required = keras_catalog.arguments("layers", "Dense") or (frozenset(), frozenset())
    assert {"units", "activation", "kernel_initializer"} <= dense
    assert {"name", "dtype", "trainable"} <= dense  # Layer's, through **kwargs
    assert "input_shape" not in dense and dense_required == {"units"}
    adam, _ = keras_catalog.arguments("optimizers", "Adam") or (frozenset(), frozenset())
    assert {"learning_rate", "beta_1", "clipnorm", "weight_decay"} <= adam  # BaseOptimizer's
    assert keras_catalog.is_class("losses", "Huber") and not keras_catalog.is_class(
        "losses", "huber"
    )


def test_docstring_examples() -> None:
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner()
    for function in (messages.suggest, keras_catalog.resolve):
        for test in finder.find(function):
            runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


SUGGESTED = [
    ("adamm", "optimizers", "adam"),
    ("Adamm", "optimizers", "Adam"),
    ("rmsprob", "optimizers", "rmsprop"),
    ("early_stopping", "callbacks", "EarlyStopping"),
    ("dense", "layers", "Dense"),
    ("he_normall", "initializers", "he_normal"),
    ("HeNormall", "initializers", "HeNormal"),
]


@pytest.mark.parametrize(("word", "namespace", "expected"), SUGGESTED)
def test_suggestion_prefers_the_spelling_style_written(
    word: str, namespace: str, expected: str
) -> None:
    assert (
        messages.suggest(word, keras_catalog.identifiers(namespace))
        == f" (did you mean `{expected}`?)"
    )


# ---------------------------------------------------------------------------------------------
# Property: what validate accepts, the builder builds (or refuses with a ConfigError)

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=True,  # the same in CI
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
BASE = yaml.safe_load(XOR.read_text())
PLAIN_VALUES = st.sampled_from(
    [None, True, False, 0, 1, 2, 3, -1, 0.5, 1e-3, "same", "valid", "auto", "x", [1, 1], [2]]
)
NAMED_ARGUMENTS = {"units": st.integers(1, 4), "rate": st.floats(0, 0.9), "axis": st.just(-1)}


def spellings(name: str) -> list[str]:
    """`name` as written and as a user might misspell it in style: lower case, snake_case."""
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
    return [name, name.lower(), snake]


@st.composite
def keras_names(draw: st.DrawFn, namespace: str) -> str:
    """A name the catalog accepts in `namespace`, often respelled, sometimes a refused one."""
    name = draw(st.sampled_from(sorted(keras_catalog.identifiers(namespace))))
    return draw(st.sampled_from(spellings(name)))


@st.composite
def keras_objects(draw: st.DrawFn, namespace: str, depth: int = 0) -> Any:
    """`name` or `{name: {argument: value}}` with arguments from the catalog (and a wrong one)."""
    name = draw(keras_names(namespace))
    resolved = keras_catalog.resolve(namespace, name)
    if draw(st.booleans()) or resolved is None or not keras_catalog.is_class(namespace, resolved):
        return name if draw(st.integers(0, 4)) else {name: {}}
    known = keras_catalog.arguments(namespace, resolved)
    names = sorted(known[0]) if known else []
    chosen = draw(st.lists(st.sampled_from(names), max_size=3, unique=True)) if names else []
    if draw(st.integers(0, 5)) == 0:
        chosen.append(draw(st.sampled_from(["unit", "lr", "initializer", "activations"])))
    return {name: {argument: draw(argument_values(argument, depth)) for argument in chosen}}


@st.composite
def argument_values(draw: st.DrawFn, argument: str, depth: int) -> Any:
    namespace = names.nested_namespace(argument, "x")
    if namespace is not None and depth < 2 and draw(st.integers(0, 3)):
        if namespace == "optimizers.schedules" and draw(st.booleans()):
            return draw(st.floats(1e-4, 1.0))
        return draw(keras_objects(namespace, depth + 1))
    return draw(NAMED_ARGUMENTS.get(argument, PLAIN_VALUES))


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    layers = draw(st.lists(keras_objects("layers"), min_size=0, max_size=2))
    data["model"]["layers"] = [*layers, {"Dense": {"units": 1, "activation": "sigmoid"}}]
    if draw(st.booleans()):
        data["compile"]["optimizer"] = draw(keras_objects("optimizers"))
    if draw(st.booleans()):
        data["compile"]["loss"] = draw(keras_objects("losses"))
    data["compile"]["metrics"] = draw(st.lists(keras_objects("metrics"), max_size=2))
    data["fit"]["callbacks"] = draw(st.lists(keras_objects("callbacks"), max_size=2))
    return data


@pytest.fixture(scope="module")
def keras() -> Any:
    from dlcli.distribute.device import import_keras

    return import_keras()


def build_everything(text: str) -> None:
    """Validate, and where that passes, build as `dlcli train` does (ConfigError allowed)."""
    from dlcli.model.build import build_callbacks, build_model, compile_model

    try:
        checked = load.spec_from_text(text, "generated.yaml")
    except ConfigError:
        return
    try:
        model = build_model(checked.model, checked.name)
        compile_model(model, checked, steps_per_execution=1)
        build_callbacks(checked)
    except ConfigError as error:
        assert len(str(error).splitlines()) == 1, str(error)


@PROPERTY
@given(specs())
def test_every_spec_that_validates_builds_or_is_a_config_error(keras: Any, data: dict) -> None:
    build_everything(yaml.safe_dump(data, sort_keys=False))


BUGS = [  # each validated and then crashed the builder with the catalog parsed from source
    "fit:\n  epochs: 1\n  callbacks: [early_stopping]\n",
    "model:\n  input: [2]\n  layers: [{dense: {units: 1}}]\n",
    "compile:\n  optimizer: config\n  loss: mse\n",
    "model:\n  input: [2]\n  layers: [{Dense: {units: 1, kernel_initializer: class_name}}]\n",
    # found by the property after the catalog was rebuilt: AttributeError inside Keras
    "compile:\n  loss: binary_crossentropy\n  metrics: [{Accuracy: {name: true}}]\n",
]


@pytest.mark.parametrize(
    "override", BUGS, ids=["callback", "layer", "optimizer", "initializer", "metric-name"]
)
def test_the_bugs_found_are_refused_by_validate(override: str) -> None:
    data = {**BASE, **{k: {**BASE[k], **v} for k, v in yaml.safe_load(override).items()}}
    with pytest.raises(ConfigError):
        load.spec_from_text(yaml.safe_dump(data), "generated.yaml")
