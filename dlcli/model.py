"""Spec.model + Spec.compile -> keras.Model, through Keras's own namespaces and `get` functions."""

from __future__ import annotations

import importlib
from typing import Any

from dlcli.errors import ConfigError
from dlcli.spec import _NESTED_NAMESPACES, KerasObject, LayerSpec, ModelSpec, Spec, format_path


def load_plugins(plugins: list[str]) -> None:
    """Import the modules a spec lists under `plugins:`; they register custom Keras objects."""
    for plugin in plugins:
        try:
            importlib.import_module(plugin)
        except ImportError as error:
            raise ConfigError(f"`plugins`: cannot import `{plugin}`: {error}") from error


def _serialized(obj: KerasObject) -> dict[str, Any]:
    return {"class_name": obj.class_name, "config": obj.config}


def _argument(name: str, value: Any, path: str) -> Any:
    """Turn a nested `{ClassName: {args}}` argument into the Keras object it names."""
    import keras

    namespace = next((ns for pattern, ns in _NESTED_NAMESPACES if pattern.match(name)), None)
    if namespace is None or not isinstance(value, dict) or len(value) != 1:
        return value
    nested = KerasObject.model_validate(value)
    nested.config = {k: _argument(k, v, path) for k, v in nested.config.items()}
    if namespace == "layers":
        return _layer(LayerSpec.model_validate(value), path)
    if namespace == "optimizers.schedules":
        return keras.optimizers.schedules.deserialize(_serialized(nested))
    module = getattr(keras, namespace)
    return module.get(_serialized(nested))


def _layer(layer: LayerSpec, path: str, dtype: str | None = None) -> Any:
    import keras

    cls = getattr(keras.layers, layer.class_name, None) or keras.saving.get_registered_object(
        layer.class_name
    )
    if cls is None:
        raise ConfigError(f"`{path}`: unknown layer `{layer.class_name}` (is its plugin listed?)")
    config = {k: _argument(k, v, f"{path}.{k}") for k, v in layer.config.items()}
    if dtype is not None:
        config["dtype"] = dtype
    try:
        return cls(**config)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"`{path}.{layer.class_name}`: {error}") from error


def _call(layer: Any, inputs: Any, path: str) -> Any:
    try:
        return layer(inputs)
    except (TypeError, ValueError) as error:
        message = " ".join(str(error).split())
        raise ConfigError(f"`{path}`: {message}") from error


def build_model(spec: ModelSpec, name: str, *, float32_outputs: bool = False) -> Any:
    """Build the layer stack (keras.Sequential) or graph (functional API) the spec describes.

    `float32_outputs` keeps the output layers in float32 under mixed precision.
    """
    import keras

    paths = [format_path(("model", "layers", index)) for index in range(len(spec.layers))]
    if not spec.is_graph:
        assert spec.input is not None
        model = keras.Sequential(name=name)
        model.add(keras.Input(shape=tuple(spec.input)))
        last = len(spec.layers) - 1
        for index, (layer, path) in enumerate(zip(spec.layers, paths, strict=True)):
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
        built = _layer(layer, path, "float32" if float32_outputs and is_output else None)
        sources = [tensors[source] for source in layer.inputs] if layer.inputs else [previous]
        previous = _call(built, sources[0] if len(sources) == 1 else sources, path)
        tensors[layer.name or built.name] = previous
    result = [tensors[output] for output in outputs] if spec.outputs else previous
    return keras.Model(inputs=list(tensors[i.name] for i in spec.inputs), outputs=result, name=name)


# Constructor arguments that give a preprocessing layer its statistics; without them it adapts.
_STATISTICS = frozenset({"mean", "variance", "vocabulary", "bin_boundaries", "idf_weights"})


def adapt_preprocessing(model: Any, spec: ModelSpec, x: Any) -> list[str]:
    """`adapt()` the preprocessing layers (Normalization, ...) to the training data.

    Returns the names of the layers adapted. A layer deeper in the model is adapted on what
    reaches it, computed by the layers before it.
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
        if any(layer.input is model_input for model_input in model.inputs):
            layer.adapt(x)
        else:
            layer.adapt(keras.Model(model.inputs, layer.input).predict(x, verbose=0))
        adapted.append(layer.name)
    return adapted


def _loss(loss: KerasObject | dict[str, KerasObject]) -> Any:
    import keras

    if isinstance(loss, dict):
        return {output: _loss(item) for output, item in loss.items()}
    return keras.losses.get(_serialized(loss)) if loss.config else loss.class_name


def _metric(metric: KerasObject) -> Any:
    import keras

    return keras.metrics.get(_serialized(metric)) if metric.config else metric.class_name


def compile_model(model: Any, spec: Spec, *, steps_per_execution: int) -> None:
    """Compile with the spec's optimizer, loss and metrics (resolved by Keras's `get`)."""
    import keras

    optimizer_spec = spec.compile.optimizer
    config = {k: _argument(k, v, "compile.optimizer") for k, v in optimizer_spec.config.items()}
    try:
        optimizer = keras.optimizers.get(
            {"class_name": optimizer_spec.class_name, "config": config}
        )
        metrics = spec.compile.metrics
        model.compile(
            optimizer=optimizer,
            loss=_loss(spec.compile.loss),
            metrics=(
                {out: [_metric(m) for m in group] for out, group in metrics.items()}
                if isinstance(metrics, dict)
                else [_metric(m) for m in metrics]
            ),
            loss_weights=spec.compile.loss_weights,
            jit_compile=spec.compile.jit_compile,
            steps_per_execution=steps_per_execution,
        )
    except (TypeError, ValueError) as error:
        raise ConfigError(f"`compile`: {' '.join(str(error).split())}") from error


def create_training_variables(model: Any, x: Any, y: Any) -> None:
    """Create the optimizer's and the compiled metrics' variables now, from one example.

    With no distribution strategy, Keras's TensorFlow trainer leaves them to the first trace of
    the train step, and TensorFlow traces a function that creates variables twice: ~0.35 s of
    the MNIST MLP's first epoch on the 2-core machine.
    """
    import keras

    x, y = (keras.tree.map_structure(lambda array: array[:1], data) for data in (x, y))
    model.optimizer.build(model.trainable_variables)
    model.compute_metrics(x, y, model(x, training=False))
    model.reset_metrics()


def build_callbacks(spec: Spec) -> list[Any]:
    """The spec's callbacks, each class taken from keras.callbacks."""
    import keras

    callbacks = []
    for index, callback in enumerate(spec.fit.callbacks):
        try:
            callbacks.append(getattr(keras.callbacks, callback.class_name)(**callback.config))
        except (TypeError, ValueError) as error:
            path = format_path(("fit", "callbacks", index))
            raise ConfigError(f"`{path}.{callback.class_name}`: {error}") from error
    return callbacks
