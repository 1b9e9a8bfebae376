"""The second phase of a fine-tuning run (`fit.fine_tune`), as "Deep Learning with Python"
(ch. 8) fine-tunes a pretrained convnet.

The first phase trains the new head with `fit.freeze` frozen. At the epoch `from_epoch` the
named layer becomes trainable, whole or its last `layers` sublayers; its BatchNormalization
layers stay frozen, which in Keras 3 also keeps them in inference mode (they normalize with the
statistics they learned, not those of the batch, and do not update them: a small new data set
would otherwise wreck what the backbone learned). The model is then compiled again, as Keras
requires after a change of `trainable`, with the spec's optimizer made anew at the lower
`learning_rate`, so large updates do not destroy the pretrained features.

The training pipeline (dlcli.train.pipeline) runs the two phases as two calls of `fit` that
number their epochs on, into one history and one backup; the backup records its phase, and a
run resumed in the second phase enters it before its weights and optimizer state are loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dlcli.errors import ConfigError
from dlcli.spec.schema import FineTuneSpec, KerasObject, Spec

FIRST_PHASE, SECOND_PHASE = 1, 2


def check_unfreeze(model: Any, fine_tune: FineTuneSpec | None) -> None:
    """Refuse an `unfreeze.layers` count the built model cannot give, before training starts
    (the layer itself was checked when it was frozen: `dlcli.train.warm_start.freeze`).

    Raises:
        ConfigError: the layer has no sublayers to count, or fewer than asked for.
    """
    if fine_tune is None or fine_tune.unfreeze.layers is None:
        return
    name, count = fine_tune.unfreeze.layer, fine_tune.unfreeze.layers
    sublayers = getattr(model.get_layer(name), "layers", None)
    if not sublayers:
        raise ConfigError(
            f"`fit.fine_tune.unfreeze.layers`: `{name}` has no layers inside it to count; leave "
            "`layers` out to unfreeze it whole"
        )
    if count > len(sublayers):
        raise ConfigError(
            f"`fit.fine_tune.unfreeze.layers` must be at most {len(sublayers)}, the layers of "
            f"`{name}`. Received: {count}"
        )


def enter_second_phase(model: Any, spec: Spec) -> str:
    """Unfreeze what `fit.fine_tune` names (BatchNormalization kept frozen) and compile the
    model again with the spec's optimizer at the second phase's learning rate; what was done,
    as a note for the user. The caller runs it in the device strategy's scope.
    """
    import keras

    from dlcli.model.build import compile_model

    fine_tune = spec.fit.fine_tune
    assert fine_tune is not None  # only a run with a second phase enters it
    layer = model.get_layer(fine_tune.unfreeze.layer)
    layer.trainable = True  # every layer inside too
    sublayers = list(getattr(layer, "layers", []))
    count = fine_tune.unfreeze.layers
    if count is not None:
        for sublayer in sublayers[: len(sublayers) - count]:
            sublayer.trainable = False
    normalizations = [
        inner for inner in _nested(layer) if isinstance(inner, keras.layers.BatchNormalization)
    ]
    for normalization in normalizations:
        normalization.trainable = False
    optimizer = spec.compile.optimizer
    slower = KerasObject(
        class_name=optimizer.class_name,
        config={**optimizer.config, "learning_rate": fine_tune.learning_rate},
    )
    second = spec.compile.model_copy(update={"optimizer": slower})
    compile_model(
        model,
        spec.model_copy(update={"compile": second}),
        steps_per_execution=model.steps_per_execution,
    )
    which = f"its last {count} of {len(sublayers)} layers" if count is not None else "all of it"
    kept = f"; its {len(normalizations)} BatchNormalization layers kept frozen" * bool(
        normalizations
    )
    return (
        f"Fine-tuning: `{layer.name}` trained ({which}{kept}), "
        f"with {optimizer.class_name} made anew at learning rate {fine_tune.learning_rate:g}"
    )


def _nested(layer: Any) -> Iterator[Any]:
    """The layer and every layer inside it, at any depth."""
    yield layer
    for inner in getattr(layer, "layers", []):
        yield from _nested(inner)
