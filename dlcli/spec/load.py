"""YAML experiment spec -> typed, validated `Spec`, without importing TensorFlow.

The YAML is read with a loader that refuses what a config file has no business containing
(`dlcli.spec.yaml_loader`), and every key path is mapped to its line so that each mistake is
reported as one line naming the file, line, key path, what was expected and what was received
(`dlcli.spec.messages`). The typed classes (`dlcli.spec.schema`) check every key; Keras names
(layers, optimizers, losses, metrics, callbacks and the objects nested in their arguments) are
checked against the installed Keras through `dlcli.spec.keras_catalog` (`dlcli.spec.names`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from dlcli.errors import ConfigError
from dlcli.spec.columns import column_problems
from dlcli.spec.messages import describe_error, located
from dlcli.spec.names import keras_problems
from dlcli.spec.phases import phase_problems
from dlcli.spec.schema import (
    Spec,
)
from dlcli.spec.search import search_problems
from dlcli.spec.yaml_loader import MAX_SPEC_BYTES, apply_override, parse_yaml


def check_spec_file(path: Path) -> None:
    """A spec file that is not there, as one line: checked before anything heavy loads."""
    if not path.is_file():
        raise ConfigError(f"spec file not found: {path}")


def load_spec(path: Path, overrides: Sequence[str] = ()) -> Spec:
    """Read, check and type a spec file, without importing TensorFlow.

    The file is parsed with a safe YAML loader, the `overrides` are applied, every key is
    checked against the schema and every Keras name against the installed Keras (through the
    cached `dlcli.spec.keras_catalog`). The first mistake found is raised.

    Args:
        path: the YAML spec file (at most 1 MiB of UTF-8 text).
        overrides: `KEY.PATH=VALUE` strings (`dlcli train --set`), each VALUE read as YAML;
            a list item is addressed by its index, e.g. `model.layers[1].Dense.units=64`.

    Returns:
        The typed, validated spec; nothing after this reads the raw YAML.

    Raises:
        ConfigError: one line naming the file (or the `--set`), the line, the key path, what
            was expected and what was received, e.g. "`fit.epochs` must be greater than 0.
            Received: -3 (configs/mnist.yaml, line 12)".
        CatalogError: Keras's names cannot be read (Keras missing or broken).

    Example:
        spec = load_spec(Path("configs/mnist.yaml"), ["fit.epochs=2"])
        spec.fit.epochs  # 2
    """
    check_spec_file(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SPEC_BYTES + 1)  # a huge file is refused without reading it
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read: {error.strerror}") from None
    if len(data) > MAX_SPEC_BYTES:
        raise ConfigError(f"{path}: the spec is larger than 1 MiB; a spec holds no data")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start})") from None
    return spec_from_text(text, str(path), overrides)


def spec_from_text(text: str, source: str, overrides: Sequence[str] = ()) -> Spec:
    """Check and type a spec given as YAML text; `source` names it in messages (see `load_spec`).

    Raises:
        ConfigError: as `load_spec`.
    """
    data, lines = parse_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a spec is a mapping with name, dataset, model, compile, fit")
    locations = {path: f"{source}, line {line}" for path, line in lines.items() if path}
    locations[()] = source
    for override in overrides:
        key = apply_override(data, override)
        for path in [p for p in locations if p[: len(key)] == key]:
            del locations[path]
        for end in range(1, len(key) + 1):
            locations.setdefault(key[:end], f"--set {override}")
        locations[key] = f"--set {override}"
    try:
        spec = Spec.model_validate(data)
    except ValidationError as error:
        key_path, message = describe_error(error.errors(include_url=False)[0])
        raise ConfigError(located(key_path, message, locations)) from None
    for key_path, message in keras_problems(spec):
        raise ConfigError(located(key_path, message, locations))
    for key_path, message in column_problems(spec):
        raise ConfigError(located(key_path, message, locations))
    for key_path, message in phase_problems(spec):
        raise ConfigError(located(key_path, message, locations))
    for key_path, message in search_problems(spec, data) if spec.search else []:
        raise ConfigError(located(key_path, message, locations))
    return spec


def json_schema() -> str:
    """JSON Schema of the spec, for editors."""
    return json.dumps(Spec.model_json_schema(), indent=2)
