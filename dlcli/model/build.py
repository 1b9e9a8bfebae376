"""Spec.model + Spec.compile -> keras.Model, through Keras's own namespaces and `get` functions."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlcli.errors import ConfigError
from dlcli.spec import keras_catalog
from dlcli.spec.columns import typed_columns
from dlcli.spec.messages import KeyPath, format_path
from dlcli.spec.names import is_backbone, nested_namespace
from dlcli.spec.schema import KerasObject, LayerSpec, ModelSpec, Spec


def load_plugins(plugins: list[str]) -> None:
    """Import the modules a spec lists under `plugins:`; they register custom Keras objects."""
    for plugin in plugins:
        try:
            importlib.import_module(plugin)
        except ImportError as error:
            raise ConfigError(f"`plugins`: cannot import `{plugin}`: {error}") from error


def _module(keras: Any, namespace: str) -> Any:
    module = keras
    for part in namespace.split("."):
        module = getattr(module, part)
    return module


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _keras_object(namespace: str, obj: KerasObject, path: KeyPath) -> Any:
    """The Keras object `obj` names, as `dlcli.spec.load` checked it (`keras_catalog.resolve`).

    A name that Keras's `get` (or `model.compile`) reads itself is handed to Keras as written,
    as the catalog saw `get` take it; anything else is built from its resolved public name:
    `getattr(keras.<namespace>, name)`, called with the arguments for a class.
    """
    import keras

    if not obj.config and keras_catalog.takes_string(namespace, obj.class_name):
        return obj.class_name
    resolved = keras_catalog.resolve(namespace, obj.class_name)
    if resolved is not None:
        member = getattr(_module(keras, namespace), resolved)
    else:  # a custom layer that a plugin registered (the spec lists plugins)
        member = keras.saving.get_registered_object(obj.class_name)
        if member is None:
            raise ConfigError(
                f"`{format_path(path)}`: unknown layer `{obj.class_name}` (is its plugin listed?)"
            )
    if resolved is not None and not keras_catalog.is_class(namespace, resolved):
        return member  # a function: a loss, metric or activation (validate refused arguments)
    config = {
        argument: _argument(argument, value, (*path, obj.class_name, argument))
        for argument, value in obj.config.items()
    }
    try:
        return member(**config)
    except Exception as error:  # Keras raises many types for arguments of the wrong kind
        where = format_path((*path, obj.class_name))
        raise ConfigError(f"`{where}`: {_one_line(error)}") from error


def _argument(argument: str, value: Any, path: KeyPath) -> Any:
    """An argument's value, with a nested Keras object (as `spec.nested_namespace` finds it)
    built."""
    namespace = nested_namespace(argument, value)
    if namespace is None:
        return value
    return _keras_object(namespace, KerasObject.model_validate(value), path)


def _layer(layer: LayerSpec, path: KeyPath, dtype: str | None = None) -> Any:
    if dtype is not None:
        layer = layer.model_copy(update={"config": {**layer.config, "dtype": dtype}})
    return _keras_object("layers", layer, path)


def _call(layer: Any, inputs: Any, path: KeyPath) -> Any:
    try:
        return layer(inputs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"`{format_path(path)}`: {_one_line(error)}") from error


def build_model(
    spec: ModelSpec, name: str, *, float32_outputs: bool = False, base_dir: Path | None = None
) -> Any:
    """Build the layer stack (keras.Sequential) or graph (functional API) the spec describes.

    `float32_outputs` keeps the output layers in float32 under mixed precision. A model of
    `keras.applications` written as a layer is built by `dlcli.model.backbones` for the shape
    it is given, its preprocessing before it; its weights file is relative to `base_dir`.
    """
    import keras

    from dlcli.model.backbones import backbone_layers

    paths: list[KeyPath] = [("model", "layers", index) for index in range(len(spec.layers))]
    if not spec.is_graph:
        assert spec.input is not None
        model = keras.Sequential(name=name)
        model.add(keras.Input(shape=tuple(spec.input)))
        last = len(spec.layers) - 1
        for index, (layer, path) in enumerate(zip(spec.layers, paths, strict=True)):
            if is_backbone(layer.class_name):
                shape = model.outputs[0].shape[1:] if model.layers else tuple(spec.input)
                for part in backbone_layers(layer, shape, base_dir, path):
                    _call(model.add, part, path)
                continue
            dtype = "float32" if float32_outputs and index == last else None
            _call(model.add, _layer(layer, path, dtype), path)
        return model
    assert spec.inputs is not None
    tensors: dict[str, Any] = {
        item.name: keras.Input(shape=tuple(item.shape), name=item.name, dtype=item.dtype)
        for item in spec.inputs
    }
    outputs = spec.outputs or [spec.layers[-1].name or ""]
    previous = list(tensors.values())[-1]
    for index, (layer, path) in enumerate(zip(spec.layers, paths, strict=True)):
        is_output = layer.name in outputs or (spec.outputs is None and index == len(paths) - 1)
        sources = [tensors[source] for source in layer.inputs] if layer.inputs else [previous]
        if is_backbone(layer.class_name):
            for part in backbone_layers(layer, sources[0].shape[1:], base_dir, path):
                previous = sources[0] = _call(part, sources[0], path)
            tensors[layer.name or part.name] = previous
            continue
        built = _layer(layer, path, "float32" if float32_outputs and is_output else None)
        previous = _call(built, sources[0] if len(sources) == 1 else sources, path)
        tensors[layer.name or built.name] = previous
    result = [tensors[output] for output in outputs] if spec.outputs else previous
    # One input as a tensor and several by name: the structures the data comes in.
    inputs = {item.name: tensors[item.name] for item in spec.inputs}
    single = len(inputs) == 1
    return keras.Model(
        inputs=next(iter(inputs.values())) if single else inputs, outputs=result, name=name
    )


# Constructor arguments that give a preprocessing layer its statistics; without them it adapts.
_STATISTICS = frozenset({"mean", "variance", "vocabulary", "bin_boundaries", "idf_weights"})


def adapt_preprocessing(model: Any, spec: ModelSpec, x: Any) -> list[str]:
    """`adapt()` the preprocessing layers (Normalization, ...) to the training data.

    `x` is one array, or one per model input by name (each layer adapts on its own input's
    examples). Returns the names of the layers adapted. A layer deeper in the model is adapted
    on what reaches it, computed by the layers before it.
    """
    import keras

    written = {layer.name: layer for layer in spec.layers if layer.name}
    adapted = []
    for index, layer in enumerate(model.layers):
        if not hasattr(layer, "adapt"):
            continue
        layer_spec = written.get(layer.name) or (
            spec.layers[index] if not spec.is_graph and index < len(spec.layers) else None
        )
        if layer_spec is not None and _STATISTICS & set(layer_spec.config):
            continue
        source = next((tensor for tensor in model.inputs if layer.input is tensor), None)
        if source is not None:  # a model input: the input's own examples
            layer.adapt(x[source.name] if isinstance(x, dict) else x)
        else:
            layer.adapt(keras.Model(model.inputs, layer.input).predict(x, verbose=0))
        adapted.append(layer.name)
    return adapted


def _loss(loss: KerasObject | dict[str, KerasObject], path: KeyPath) -> Any:
    if isinstance(loss, dict):
        return {output: _loss(item, (*path, output)) for output, item in loss.items()}
    return _keras_object("losses", loss, path)


def _metrics(metrics: list[KerasObject], path: KeyPath) -> list[Any]:
    return [_keras_object("metrics", item, (*path, index)) for index, item in enumerate(metrics)]


def compile_model(model: Any, spec: Spec, *, steps_per_execution: int) -> None:
    """Compile with the spec's optimizer, loss and metrics, each built by `_keras_object`."""
    base: KeyPath = ("compile", "metrics")
    optimizer = _keras_object("optimizers", spec.compile.optimizer, ("compile", "optimizer"))
    loss = _loss(spec.compile.loss, ("compile", "loss"))
    metrics = spec.compile.metrics
    try:
        model.compile(
            optimizer=optimizer,
            loss=loss,
            metrics=(
                {out: _metrics(group, (*base, out)) for out, group in metrics.items()}
                if isinstance(metrics, dict)
                else _metrics(metrics, base)
            ),
            loss_weights=spec.compile.loss_weights,
            jit_compile=spec.compile.jit_compile,
            steps_per_execution=steps_per_execution,
        )
    except (TypeError, ValueError) as error:
        raise ConfigError(f"`compile`: {_one_line(error)}") from error


def create_training_variables(model: Any, x: Any, y: Any) -> None:
    """Create the optimizer's and the compiled metrics' variables now, from one example.

    With no distribution strategy, Keras's TensorFlow trainer leaves them to the first trace of
    the train step, and TensorFlow traces a function that creates variables twice, which
    lengthens the first epoch.
    """
    import keras

    x, y = (keras.tree.map_structure(lambda array: array[:1], data) for data in (x, y))
    model.optimizer.build(model.trainable_variables)
    model.compute_metrics(x, y, model(x, training=False))
    model.reset_metrics()


def build_callbacks(spec: Spec) -> list[Any]:
    """The spec's callbacks, each class taken from keras.callbacks."""
    return [
        _keras_object("callbacks", callback, ("fit", "callbacks", index))
        for index, callback in enumerate(spec.fit.callbacks)
    ]


def summarize(spec_path: Path, overrides: Sequence[str] = ()) -> list[str]:
    """The lines of Keras's `model.summary()` for the model a spec describes (`dlcli summary`).

    Args:
        spec_path: the YAML spec.
        overrides: `KEY.PATH=VALUE` strings applied to the spec.

    Returns:
        The summary's lines: layers, output shapes and parameter counts.

    Raises:
        ConfigError: a mistake in the spec, or a plugin that cannot be imported.

    Example:
        summarize(Path("configs/mnist_cnn.yaml"))
    """
    from dlcli.spec.load import load_spec

    spec = load_spec(spec_path, overrides)
    load_plugins(spec.plugins)
    model_spec, lines, csv = spec.model, [], spec.dataset.csv
    if typed_columns(spec.dataset) is not None:  # the input is FeatureSpace's output
        from dlcli.data.load import load_dataset
        from dlcli.model.feature_space import adapt_spec, encoding_note

        splits = load_dataset(spec.dataset, spec_path.parent, spec.seed or 0)
        encoder = adapt_spec(spec, splits.train.x)
        width = int(encoder.output.shape[-1])
        lines.append(f"Input: {encoding_note(spec, encoder)}")
        if model_spec.input is None:
            model_spec = model_spec.model_copy(update={"input": [width]})
    if csv is not None and csv.windows is not None:  # the input is one window of rows
        from dlcli.data.time_windows import window_shape

        length, features = window_shape(csv, spec_path.parent)
        lines.append(
            f"Input: windows of {length} rows of {features} features, normalised inside the "
            "model by the training rows' mean and variance (a Normalization layer in front)"
        )
        if model_spec.input is None:
            model_spec = model_spec.model_copy(update={"input": [length, features]})
    model = build_model(model_spec, spec.name, base_dir=spec_path.parent)
    model.summary(print_fn=lambda line, **_: lines.append(line))
    return lines
