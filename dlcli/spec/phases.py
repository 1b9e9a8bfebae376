"""The two phases of a fine-tuning run (`fit.freeze`, then `fit.fine_tune`) checked without Keras.

What the spec alone shows is checked here, before TensorFlow loads: the second phase starts
within the run's epochs, and the layer it unfreezes is one the first phase froze. What needs
the built model (how many sublayers that layer has) is checked when the model is built
(`dlcli.train.fine_tune.check_unfreeze`).
"""

from __future__ import annotations

from collections.abc import Iterator

from dlcli.spec.messages import KeyPath, suggest
from dlcli.spec.schema import FitSpec, Spec


def phase_problems(spec: Spec) -> Iterator[tuple[KeyPath, str]]:
    """(key path, what is wrong) for `fit.fine_tune` against the rest of `fit`.

    Example:
    >>> from dlcli.spec.messages import format_path
    >>> from dlcli.spec.schema import FitSpec
    >>> fit = FitSpec.model_validate({"epochs": 4, "freeze": ["backbone"],
    ...     "fine_tune": {"from_epoch": 6, "unfreeze": "backbon", "learning_rate": 1e-5}})
    >>> for path, message in _fine_tune_problems(fit):  # doctest: +NORMALIZE_WHITESPACE
    ...     print(format_path(path), message)
    fit.fine_tune.from_epoch must be at most `fit.epochs` (4): the run's epochs are those of
        both phases. Received: 6
    fit.fine_tune.unfreeze.layer `backbon` was not frozen in the first phase (did you mean
        `backbone`?); `fit.freeze` lists backbone
    """
    yield from _fine_tune_problems(spec.fit)


def _fine_tune_problems(fit: FitSpec) -> Iterator[tuple[KeyPath, str]]:
    fine_tune = fit.fine_tune
    if fine_tune is None:
        return
    if fine_tune.from_epoch > fit.epochs:
        yield (
            ("fit", "fine_tune", "from_epoch"),
            f"must be at most `fit.epochs` ({fit.epochs}): the run's epochs are those of both "
            f"phases. Received: {fine_tune.from_epoch}",
        )
    layer = fine_tune.unfreeze.layer
    if layer not in fit.freeze:
        listed = (
            f"`fit.freeze` lists {', '.join(fit.freeze)}"
            if fit.freeze
            else "`fit.freeze` is empty: list it there"
        )
        yield (
            ("fit", "fine_tune", "unfreeze", "layer"),
            f"`{layer}` was not frozen in the first phase{suggest(layer, fit.freeze)}; {listed}",
        )
