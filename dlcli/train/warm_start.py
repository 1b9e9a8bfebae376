"""Starting from trained weights: `fit.initial_weights` (or `dlcli train --from MODEL`) and
`fit.freeze`, for fine-tuning.

Weights go from layer to layer by name, as the model summary shows them (Keras names the layers
of a stack `dense`, `dense_1`, ... in order; give a layer a `name:` to match it across specs).
A layer of the spec's model that the file does not have keeps its fresh weights, and is named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlcli.errors import ConfigError
from dlcli.spec.messages import suggest


def freeze(model: Any, names: list[str]) -> None:
    """Make the named layers not trainable (before the model is compiled).

    Raises:
        ConfigError: a name that is not a layer of the model, with the names there are; or
            nothing left to train.
    """
    layers = {layer.name: layer for layer in model.layers}
    for index, name in enumerate(names):
        if name not in layers:
            raise ConfigError(
                f"`fit.freeze[{index}]`: no layer `{name}`{suggest(name, list(layers))}; the "
                f"layers are {', '.join(layers)}"
            )
        layers[name].trainable = False
    if names and not model.trainable_weights:
        raise ConfigError("`fit.freeze`: every layer with weights is frozen: nothing would train")


def load_initial_weights(model: Any, path: Path) -> str:
    """Copy the weights of each layer of the .keras file at `path` into the layer of `model`
    with the same name; what was copied, as a note for the user.

    Raises:
        ModelFileError: the file cannot be loaded (dlcli.model.artifact.load).
        ConfigError: a layer whose weights have other shapes there (the first one, with both
            shapes), or no layer in common.
    """
    from dlcli.model import artifact

    source = artifact.load(path, require_metadata=False).model
    theirs = {layer.name: layer for layer in source.layers}
    copied, fresh = [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        other = theirs.get(layer.name)
        if other is None:
            fresh.append(layer.name)
            continue
        ours_shapes = [tuple(weight.shape) for weight in layer.weights]
        their_shapes = [tuple(weight.shape) for weight in other.weights]
        if ours_shapes != their_shapes:
            raise ConfigError(
                f"`fit.initial_weights`: layer `{layer.name}` has weights of shape "
                f"{_shapes(their_shapes)} in {path} but {_shapes(ours_shapes)} in this spec's "
                "model; give the layer another `name:` to start it fresh"
            )
        layer.set_weights(other.get_weights())
        copied.append(layer.name)
    if not copied:
        raise ConfigError(
            f"`fit.initial_weights`: no layer of this spec's model is in {path} (its layers: "
            f"{', '.join(theirs)})"
        )
    note = f"Initial weights from {path}: {', '.join(copied)}"
    return note + (f"; not in it, so trained from scratch: {', '.join(fresh)}" if fresh else "")


def _shapes(shapes: list[tuple[int, ...]]) -> str:
    """Example:
    >>> _shapes([(784, 512), (512,)])
    '(784, 512), (512,)'
    """
    return ", ".join(str(shape) for shape in shapes)
