"""The `search:` section checked against the spec: every key path of `search.space` must exist
and every value it can take must give a valid spec, before any trial runs."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import ValidationError

from dlcli.spec.messages import KeyPath, describe_error, format_path
from dlcli.spec.names import keras_problems
from dlcli.spec.schema import Spec
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
    return []


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
