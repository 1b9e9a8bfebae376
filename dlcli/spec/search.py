"""The `search:` section checked against the spec: every key path of `search.space` must exist
and every value it can take must give a valid spec, before any trial runs."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import ValidationError

from dlcli.spec.messages import KeyPath, describe_error, format_path, suggest
from dlcli.spec.names import keras_problems
from dlcli.spec.schema import Distribution, Spec
from dlcli.spec.yaml_loader import set_key


def search_problems(spec: Spec, data: dict[str, Any]) -> list[tuple[KeyPath, str]]:
    """What is wrong in `spec.search.space`, as (key path, message) pairs, the first found.

    Each key of the space is set, in a copy of the raw spec `data` without its `search:`
    section, to the ends of its range (or to each choice), and that spec is checked like any
    other: a key that does not exist, or a value the spec refuses, is named.

    Example:
        # with `search.space` holding `fit.batch_size: {int: [0, 8]}`:
        search_problems(spec, data)
        # [(('search', 'space', 'fit.batch_size'),
        #   'with 0, `fit.batch_size` must be greater than 0. Received: 0')]
    """
    assert spec.search is not None
    base = {key: value for key, value in data.items() if key != "search"}
    for key, distribution in spec.search.space.items():
        where: KeyPath = ("search", "space", key)
        if key.split(".")[0].split("[")[0] == "search":
            return [(where, "the search cannot search its own settings")]
        for value in distribution.extremes():
            candidate = copy.deepcopy(base)
            try:
                set_key(candidate, key, value)
            except KeyError as error:
                return [(where, str(error.args[0]))]
            problem = _spec_problem(candidate)
            if problem is not None:
                return [(where, f"with {value!r}, {problem}")]
    return _first_trial_problems(spec.search.first_trials or [], spec.search.space)[:1]


def _first_trial_problems(
    trials: list[dict[str, Any]], space: dict[str, Distribution]
) -> list[tuple[KeyPath, str]]:
    """Each value of `search.first_trials` must be one the space can take (the spec was checked
    with the space's extremes, so such a value gives a valid spec).

    Example:
        >>> space = {"fit.batch_size": Distribution.model_validate({"choice": [16, 32]})}
        >>> _first_trial_problems([{"fit.batch_size": 64}], space)
        [(('search', 'first_trials', 0, 'fit.batch_size'), '64 is not among the choices [16, 32]')]
    """
    problems: list[tuple[KeyPath, str]] = []
    for index, trial in enumerate(trials):
        for key, value in trial.items():
            where: KeyPath = ("search", "first_trials", index, key)
            if key not in space:
                hint = suggest(key, space)
                problems.append((where, f"`{key}` is not a key of `search.space`{hint}"))
                continue
            problem = _outside(value, space[key])
            if problem is not None:
                problems.append((where, problem))
    return problems


def _outside(value: Any, distribution: Distribution) -> str | None:
    """What keeps `value` out of `distribution`, or None if it is one the sampler could draw."""
    if distribution.choice is not None:
        if value in distribution.choice:
            return None
        return f"{value!r} is not among the choices {distribution.choice}"
    bounds = distribution.int_range or distribution.float_range
    assert bounds is not None
    kind = "int" if distribution.int_range is not None else "float"
    wrong_type = isinstance(value, bool) or not isinstance(value, int | float)
    if wrong_type or (kind == "int" and not isinstance(value, int)):
        return f"{value!r} is not a number of the `{kind}` range {bounds}"
    if not bounds[0] <= value <= bounds[1]:
        return f"{value!r} is outside the `{kind}` range {bounds}"
    return None


def _spec_problem(data: dict[str, Any]) -> str | None:
    """The first mistake of a raw spec, as "`key.path` what is wrong", or None."""
    try:
        spec = Spec.model_validate(data)
    except ValidationError as error:
        key_path, message = describe_error(error.errors(include_url=False)[0])
    else:
        problem = next(keras_problems(spec), None)
        if problem is None:
            return None
        key_path, message = problem
    joiner = " " if message.startswith(("must ", "is ")) else ": "
    return f"`{format_path(key_path)}`{joiner}{message}"
