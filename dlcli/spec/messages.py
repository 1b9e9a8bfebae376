"""How a mistake in a spec is written: a key path, the nearest valid name, one line.

Nothing here imports pydantic or YAML: the functions take the plain data pydantic reports.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

KeyPath = tuple[str | int, ...]
# A number YAML reads as text: `1e-3` has no dot, so YAML 1.1 does not take it as a float.
FLOAT_AS_STRING = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)$")


def format_path(path: KeyPath) -> str:
    """A key path as the spec's reader writes it.

    Example:
        >>> format_path(("model", "layers", 2, "Dense"))
        'model.layers[2].Dense'
        >>> format_path(())
        ''
    """
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def suggest(word: str, options: Iterable[str]) -> str:
    """` (did you mean `x`?)` for the closest option, or "".

    Options written in the same style as `word` come first: lower-case names and aliases for a
    lower-case word, class names for a word with capitals. Case is ignored in the comparison.

    Example:
        >>> suggest("adamm", ["Adam", "Nadam", "adam", "nadam"])
        ' (did you mean `adam`?)'
        >>> suggest("Flaten", ["Flatten", "flatten_x"])
        ' (did you mean `Flatten`?)'
        >>> suggest("optimiser", ["loss", "metrics"])
        ''
    """
    options = sorted(set(options))
    lower_case = word == word.lower()
    same_style = [option for option in options if (option == option.lower()) == lower_case]
    for group in (same_style, options):
        folded: dict[str, str] = {}
        for option in group:
            folded.setdefault(option.lower(), option)
        close = difflib.get_close_matches(word.lower(), list(folded), n=1, cutoff=0.6)
        if close:
            return f" (did you mean `{folded[close[0]]}`?)"
    return ""


def one_line(message: str) -> str:
    r"""Control characters from the spec (a quoted key with a line break) written as escapes.

    Example:
        >>> print(one_line("unknown key `a\nb`"))
        unknown key `a\nb`
    """
    return re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", lambda m: repr(m.group())[1:-1], message)


def describe_error(error: ErrorDetails) -> tuple[KeyPath, str]:
    """One error of pydantic's `ValidationError.errors()` as (key path, what is wrong)."""
    path: KeyPath = tuple(part for part in error["loc"] if not str(part).startswith("function-"))
    if error["type"] == "unknown_key":
        return (*path, error["ctx"]["key"]), error["msg"]
    message = error["msg"]
    if message.startswith("Input should be "):
        message = "must be " + message.removeprefix("Input should be ")
    elif message.startswith(("Value error, ", "Assertion failed, ")):
        message = message.split(", ", 1)[1]
    if error["type"] == "literal_error":
        options = re.findall(r"'([^']*)'", error["ctx"]["expected"])
        message += suggest(str(error["input"]), options)
    value = error.get("input")
    if error["type"] in ("missing",):
        return path, "is required but missing"
    if not isinstance(value, dict | list) and error["type"] not in ("unknown_key",):
        message += f". Received: {value!r}"
        if isinstance(value, str) and FLOAT_AS_STRING.match(value):
            example = f"{float(value):.1e}".replace("e-0", "e-")
            message += f" (YAML reads {value} as text; write it with a dot, e.g. {example})"
    return path, message


def located(path: KeyPath, message: str, locations: dict[KeyPath, str]) -> str:
    """The one line shown for a mistake at `path`: the key, the message, where it was written.

    `locations` maps key paths to "file, line N" (or the `--set` that gave the value); the
    nearest enclosing key that has one names the place.

    Example:
        >>> located(("fit", "epochs"), "must be greater than 0", {("fit",): "x.yaml, line 9"})
        '`fit.epochs` must be greater than 0 (x.yaml, line 9)'
    """
    joiner = " " if message.startswith(("must ", "is ")) else ": "
    enclosing = (path[:end] for end in range(len(path), -1, -1) if path[:end] in locations)
    where = next((f"({locations[key]})" for key in enclosing), "")
    return one_line(f"`{format_path(path)}`{joiner}{message} {where}".rstrip())
