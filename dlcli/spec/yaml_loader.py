"""YAML text -> plain data and a key path -> line map, refusing what a spec has no use for.

The loader refuses tags, anchors and aliases, duplicate keys, keys that are lists or mappings,
more than 1 MiB and nesting deeper than 64; each refusal is one ConfigError naming the line.
`--set KEY.PATH=VALUE` overrides are applied to the plain data here, before it is typed.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from dlcli.errors import ConfigError
from dlcli.spec.messages import KeyPath, format_path, one_line

MAX_SPEC_BYTES = 1024 * 1024
MAX_DEPTH = 64
_SAFE_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null")} | {
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that refuses tags, anchors, aliases, duplicate keys and deep nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # The composer's depth check comes too late for `[[[[...`: PyYAML scans up to 1024
        # characters ahead for a possible key, in time quadratic in the brackets.
        if self.flow_level >= MAX_DEPTH:
            raise ConfigError(
                f"the spec nests deeper than {MAX_DEPTH} levels (line {self.line + 1})"
            )
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: Any, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise ConfigError(
                f"anchors and aliases (&name, *name) are not allowed in a spec "
                f"(line {event.start_mark.line + 1}); write the value out in full"
            )
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ConfigError(
                f"the spec nests deeper than {MAX_DEPTH} levels (line {event.start_mark.line + 1})"
            )
        node = super().compose_node(parent, index)
        assert node is not None  # PyYAML always composes a node here (its stubs allow None)
        self.depth -= 1
        if node.tag not in _SAFE_TAGS:
            raise ConfigError(
                f"the YAML tag `{node.tag.replace('tag:yaml.org,2002:', '!!')}` is not allowed "
                f"(line {node.start_mark.line + 1}); a spec holds plain values, lists and mappings"
            )
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, list | dict):
                raise ConfigError(
                    f"a key must be a plain value, not a list or mapping (line {line})"
                )
            if key in first_line:
                raise ConfigError(
                    f"duplicate key `{key}` at lines {first_line[key]} and {line}; "
                    "keep only one of them"
                )
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def _line_map(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, key_node.value)
            lines[key_path] = key_node.start_mark.line + 1
            _line_map(value_node, key_path, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, (*path, index), lines)


def parse_yaml(text: str, where: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse YAML text into plain data and a key path -> line map; `where` starts messages.

    Example:
        >>> parse_yaml("fit:\\n  epochs: 3\\n", "x.yaml")
        ({'fit': {'epochs': 3}}, {(): 1, ('fit',): 1, ('fit', 'epochs'): 2})
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SPEC_BYTES:
        raise ConfigError(f"{where}: the spec is larger than 1 MiB; a spec holds no data")
    loader = None
    try:
        loader = _SpecLoader(text)  # refuses control characters before parsing
        node = loader.get_single_node()
        if node is None:
            return None, {}
        data = loader.construct_document(node)
    except ConfigError as error:
        raise ConfigError(one_line(f"{where}: {error}")) from None
    except yaml.reader.ReaderError as error:
        line = text[: error.position].count("\n") + 1
        raise ConfigError(
            f"{where}, line {line}: invalid YAML: unacceptable character "
            f"#x{error.character:04x}: {error.reason}"
        ) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        at_line = f", line {mark.line + 1}" if mark else ""
        problem = " ".join(str(error.problem or error).split())
        raise ConfigError(f"{where}{at_line}: invalid YAML: {problem}") from None
    except (yaml.YAMLError, RecursionError) as error:
        raise ConfigError(f"{where}: invalid YAML: {' '.join(str(error).split())}") from None
    except ValueError as error:  # an integer with more digits than Python converts
        raise ConfigError(f"{where}: invalid YAML: {str(error).split(';')[0]}") from None
    finally:
        if loader is not None:
            loader.dispose()
    lines: dict[KeyPath, int] = {}
    _line_map(node, (), lines)
    return data, lines


def _split_key_path(key_path: str) -> KeyPath:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", key_path) if p)


def apply_override(data: dict[str, Any], override: str) -> KeyPath:
    """Set one `KEY.PATH=VALUE` in the raw spec data; returns the key path.

    Example:
        >>> data = {"fit": {"epochs": 5}}
        >>> apply_override(data, "fit.epochs=2"), data
        (('fit', 'epochs'), {'fit': {'epochs': 2}})
    """
    key_path, separator, raw_value = override.partition("=")
    if not separator or not _split_key_path(key_path):
        raise ConfigError(f"--set {override}: expected KEY.PATH=VALUE, e.g. --set fit.epochs=3")
    value, _ = parse_yaml(raw_value, f"--set {override}")
    try:
        return set_key(data, key_path, value)
    except KeyError as error:
        raise ConfigError(f"--set {override}: {error.args[0]}") from None


def set_key(data: dict[str, Any], key_path: str, value: Any) -> KeyPath:
    """Set the key at `key_path` (e.g. `model.layers[1].Dense.units`) in the raw spec data.

    A missing key of a mapping is added (the schema then names it if it is not a spec key); a
    list item must exist.

    Raises:
        KeyError: the path goes through a list item or a value that does not exist.

    Example:
        >>> data = {"model": {"layers": [{"Dense": {"units": 8}}]}}
        >>> set_key(data, "model.layers[0].Dense.units", 16), data["model"]
        (('model', 'layers', 0, 'Dense', 'units'), {'layers': [{'Dense': {'units': 16}}]})
    """
    parts = _split_key_path(key_path)
    target: Any = data
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if isinstance(target, dict) and isinstance(part, str):
            if last:
                target[part] = value
            else:
                target = target.setdefault(part, {})
        elif isinstance(target, list) and isinstance(part, int) and part < len(target):
            if last:
                target[part] = value
            else:
                target = target[part]
        else:
            raise KeyError(f"`{format_path(parts[: index + 1])}` does not exist in the spec")
    return parts
