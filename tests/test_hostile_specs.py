"""Hostile or broken specs: refused in one line, quickly, in bounded memory, running nothing."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlcli.errors import ConfigError
from dlcli.spec.load import load_spec, spec_from_text
from dlcli.spec.schema import Spec

from .helpers import CONFIGS, REPO, invoke

XOR = (REPO / "configs" / "xor.yaml").read_text()
WHERE = "xor.yaml"
TAG_REFUSED = "is not allowed (line {line}); a spec holds plain values, lists and mappings"


def replaced(old: str, new: str) -> str:
    assert old in XOR, old
    return XOR.replace(old, new, 1)


def refusal(text: str, overrides: tuple[str, ...] = ()) -> str:
    """The one-line message `text` is refused with; anything but a ConfigError fails the test."""
    with pytest.raises(ConfigError) as caught:
        spec_from_text(text, WHERE, overrides)
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    return message


# ---------------------------------------------------------------------------------------------
# Tags: nothing but plain values, lists and mappings

TAGS = [
    ("!!python/object/apply:os.system ['touch pwned']", "!!python/object/apply:os.system"),
    ("!!python/object/new:subprocess.Popen [[id]]", "!!python/object/new:subprocess.Popen"),
    ("!!python/object:collections.OrderedDict {}", "!!python/object:collections.OrderedDict"),
    ("!!python/name:os.system", "!!python/name:os.system"),
    ("!!python/module:os", "!!python/module:os"),
    ("!!binary aGVsbG8=", "!!binary"),
    ("!!set {a, b}", "!!set"),
    ("!!omap [a: 1]", "!!omap"),
    ("!!timestamp 2001-12-14", "!!timestamp"),
    ("2001-12-14", "!!timestamp"),  # YAML 1.1 reads a bare date as a timestamp
    ("!foo bar", "!foo"),
    ("!<tag:example.com,2000:app/x> 1", "tag:example.com,2000:app/x"),
]


@pytest.mark.parametrize(("value", "tag"), TAGS, ids=[tag for _, tag in TAGS])
def test_yaml_tags_are_refused(value: str, tag: str) -> None:
    message = refusal(replaced("seed: 1", f"seed: {value}"))
    assert message == f"xor.yaml: the YAML tag `{tag}` " + TAG_REFUSED.format(line=4)


def test_merge_keys_are_refused() -> None:
    message = refusal(replaced("seed: 1", "seed: 1\n<<: {fit: {epochs: 1}}"))
    assert message == "xor.yaml: the YAML tag `!!merge` " + TAG_REFUSED.format(line=5)


def test_python_payloads_run_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payloads = [
        f"!!python/object/apply:os.system ['touch {marker}']",
        f"!!python/object/apply:subprocess.call [[touch, {marker}]]",
        f"!!python/object/new:subprocess.Popen [[touch, {marker}]]",
        f"!!python/object/apply:builtins.exec [\"open('{marker}', 'w')\"]",
        f"!!python/object/apply:pathlib.Path.touch [!!python/object/new:pathlib.Path [{marker}]]",
    ]
    for payload in payloads:
        assert "is not allowed" in refusal(replaced("epochs: 100", f"epochs: {payload}"))
    spec = tmp_path / "evil.yaml"
    spec.write_text(replaced("epochs: 100", f"epochs: {payloads[0]}"))
    result = invoke(["validate", str(spec)])
    assert result.exit_code == 3
    assert result.stderr == (
        f"Error: {spec}: the YAML tag `!!python/object/apply:os.system` "
        + TAG_REFUSED.format(line=19)
        + "\n"
    )
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# Bombs: refused in under a second, in bounded memory, without RecursionError

LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
)
ANCHORS = "anchors and aliases (&name, *name) are not allowed in a spec (line {line}); " + (
    "write the value out in full"
)
DEEPER = "xor.yaml: the spec nests deeper than 64 levels (line {line})"
OVERSIZE = "xor.yaml: the spec is larger than 1 MiB; a spec holds no data"
DEEP_SET = "fit.epochs=" + "[" * 100
BOMBS = {
    "billion laughs": (LAUGHS, "xor.yaml: " + ANCHORS.format(line=1)),
    "undefined alias": ("a: *nowhere\n", "xor.yaml: " + ANCHORS.format(line=1)),
    "over 1 MiB": ("a: " + "x" * 1024 * 1024, OVERSIZE),
    "over 1 MiB of UTF-8, under 1 Mi characters": ("a: " + "é" * 600_000, OVERSIZE),
    # the keys count as a level: the key k63 on line 64 is the 65th
    "65 block mappings": (
        "".join(f"{'  ' * depth}k{depth}:\n" for depth in range(65)) + "  " * 65 + "1\n",
        DEEPER.format(line=64),
    ),
    "block sequences on one line": ("- " * 300_000 + "x", DEEPER.format(line=1)),
    "complex keys on one line": ("? " * 300_000 + "x", DEEPER.format(line=1)),
    "10,000 nested flow sequences": ("a: " + "[" * 10_000 + "]" * 10_000, DEEPER.format(line=1)),
    "10,000 nested flow mappings": ("a: " + "{a: " * 10_000 + "}" * 10_000, DEEPER.format(line=1)),
    "500,000 unclosed brackets": ("[" * 500_000, DEEPER.format(line=1)),
    "deep --set value": (XOR, f"--set {DEEP_SET}: the spec nests deeper than 64 levels (line 1)"),
}


@pytest.mark.parametrize(("text", "message"), BOMBS.values(), ids=BOMBS.keys())
def test_bombs_are_refused_fast_in_bounded_memory(text: str, message: str) -> None:
    overrides = (DEEP_SET,) if text is XOR else ()
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        spec_from_text(text, WHERE, overrides)
    seconds = time.perf_counter() - started
    assert str(caught.value) == message
    assert seconds < 1.0
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError):
            spec_from_text(text, WHERE, overrides)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024


def test_nesting_up_to_the_limit_is_parsed() -> None:
    """64 levels (the top-level mapping and 63 lists) are fine: the refusal is the unknown key."""
    message = refusal("a: " + "[" * 63 + "]" * 63)
    assert message.startswith("`a`: unknown key `a`; valid keys: name, seed, dataset, model")


def test_a_huge_spec_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    spec = tmp_path / "huge.yaml"
    with spec.open("wb") as handle:
        handle.truncate(256 * 1024 * 1024)  # sparse: costs no disk
    tracemalloc.start()
    try:
        started = time.perf_counter()
        with pytest.raises(ConfigError) as caught:
            load_spec(spec)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(caught.value) == f"{spec}: the spec is larger than 1 MiB; a spec holds no data"
    assert seconds < 1.0 and peak < 8 * 1024 * 1024


def test_a_spec_just_over_1_mib_cut_inside_a_character_is_still_too_large(tmp_path: Path) -> None:
    spec = tmp_path / "big.yaml"
    spec.write_text("a: " + "é" * 600_000, encoding="utf-8")  # byte 1 MiB + 1 splits an é
    with pytest.raises(ConfigError) as caught:
        load_spec(spec)
    assert str(caught.value) == f"{spec}: the spec is larger than 1 MiB; a spec holds no data"


# ---------------------------------------------------------------------------------------------
# Duplicate keys, malformed text, values of the wrong type or out of range

MISTAKES = [
    (
        XOR + "name: other\n",
        "xor.yaml: duplicate key `name` at lines 3 and 21; keep only one of them",
    ),
    (
        replaced("  batch_size: 4", "  batch_size: 4\n  batch_size: 8"),
        "xor.yaml: duplicate key `batch_size` at lines 20 and 21; keep only one of them",
    ),
    (
        replaced(
            "- Dense: {units: 2, activation: tanh}",
            "- Dense:\n        units: 2\n        activation: tanh\n        units: 3",
        ),
        "xor.yaml: duplicate key `units` at lines 13 and 15; keep only one of them",
    ),
    (
        replaced("{units: 2, activation: tanh}", "{units: 2, activation: tanh, units: 3}"),
        "xor.yaml: duplicate key `units` at lines 12 and 12; keep only one of them",
    ),
    (
        replaced(
            "optimizer: {SGD: {learning_rate: 0.5, momentum: 0.9}}",
            "optimizer: {SGD: {learning_rate: 1e-3, momentum: 0.9}}",
        ),
        "`compile.optimizer.SGD.learning_rate` must be a number. Received: '1e-3', which YAML "
        "reads as text; write it with a dot, e.g. 1.0e-3 (xor.yaml, line 15)",
    ),
    (
        replaced("learning_rate: 0.5", "learning_rate: 0"),
        "`compile.optimizer.SGD.learning_rate` must be greater than 0. Received: 0 "
        "(xor.yaml, line 15)",
    ),
    (
        replaced("learning_rate: 0.5", "learning_rate: .nan"),
        "`compile.optimizer.SGD.learning_rate` must be a finite number greater than 0. "
        "Received: nan (xor.yaml, line 15)",
    ),
    (
        replaced("learning_rate: 0.5", "learning_rate: .inf"),
        "`compile.optimizer.SGD.learning_rate` must be a finite number greater than 0. "
        "Received: inf (xor.yaml, line 15)",
    ),
    (
        replaced("batch_size: 4", "batch_size: 0"),
        "`fit.batch_size` must be greater than 0. Received: 0 (xor.yaml, line 20)",
    ),
    (
        replaced("  inline:", "  validation_split: 1.5\n  inline:"),
        "`dataset.validation_split` must be less than 1. Received: 1.5 (xor.yaml, line 6)",
    ),
    (
        replaced("  inline:", "  validation_split: 1e-1\n  inline:"),
        "`dataset.validation_split` must be a valid number. Received: '1e-1' (YAML reads 1e-1 "
        "as text; write it with a dot, e.g. 1.0e-1) (xor.yaml, line 6)",
    ),
    (
        replaced("  inline:", "  test_split: -0.5\n  inline:"),
        "`dataset.test_split` must be greater than or equal to 0. Received: -0.5 "
        "(xor.yaml, line 6)",
    ),
    (
        replaced("epochs: 100", "epochs: -1"),
        "`fit.epochs` must be greater than 0. Received: -1 (xor.yaml, line 19)",
    ),
    (
        replaced("epochs: 100", "epochs: 1.5"),
        "`fit.epochs` must be a valid integer. Received: 1.5 (xor.yaml, line 19)",
    ),
    (
        replaced("epochs: 100", "epochs: '100'"),
        "`fit.epochs` must be a valid integer. Received: '100' (xor.yaml, line 19)",
    ),
    (
        replaced("epochs: 100", "epochs: yes"),
        "`fit.epochs` must be a valid integer. Received: True (xor.yaml, line 19)",
    ),
    (
        replaced("epochs: 100", "epochs: " + "9" * 5000),
        "xor.yaml: invalid YAML: Exceeds the limit (4300 digits) for integer string "
        "conversion: value has 5000 digits",
    ),
    (
        replaced("seed: 1", "seed: -1"),
        "`seed` must be greater than or equal to 0. Received: -1 (xor.yaml, line 4)",
    ),
    (
        replaced("name: xor", "name: ../../etc"),
        "`name`: String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.-]*$'. "
        "Received: '../../etc' (xor.yaml, line 3)",
    ),
    (
        replaced("activation: tanh", "activation: {tanh: 3}"),
        "`model.layers[0].Dense.activation`: the arguments of `tanh` must be a mapping of "
        "argument: value (xor.yaml, line 12)",
    ),
    (
        replaced("{units: 2, activation: tanh}", "{units: 2, activation: tanh, name: [a]}"),
        "`model.layers[0]`: `Dense.name` must be a string. Received: ['a'] (xor.yaml, line 12)",
    ),
    (
        "? [name, seed]\n: xor\n",
        "xor.yaml: a key must be a plain value, not a list or mapping (line 1)",
    ),
    (
        replaced("name: xor", "name: xor\x00"),
        "xor.yaml, line 3: invalid YAML: unacceptable character #x0000: special characters "
        "are not allowed",
    ),
    (
        replaced("name: xor", '"na\\nme": xor'),
        "`na\\nme`: unknown key `na\\nme` (did you mean `name`?); valid keys: name, seed, "
        "dataset, model, compile, fit, output, plugins, search (xor.yaml, line 3)",
    ),
    (
        replaced("seed: 1", "seed: 1\n\tfit: 2"),
        "xor.yaml, line 5: invalid YAML: found character '\\t' that cannot start any token",
    ),
    (
        XOR + "---\nname: second\n",
        "xor.yaml, line 21: invalid YAML: but found another document",
    ),
]


@pytest.mark.parametrize(("text", "message"), MISTAKES, ids=range(len(MISTAKES)))
def test_mistakes_name_field_expectation_and_value(text: str, message: str) -> None:
    assert refusal(text) == message


# ---------------------------------------------------------------------------------------------
# Keras objects that run code, read files named in the spec, or do what dlcli does itself

LAYER = "- Dense: {units: 2, activation: tanh}"
CALLBACKS = "fit:\n  callbacks: [{callback}]\n"
CODE = [
    (
        replaced(LAYER, '- Lambda: {function: \'lambda x: __import__("os").system("id")\'}'),
        "`model.layers[0]`: `Lambda` is refused: it runs Python code from the spec; write a "
        "custom layer in a plugin module (xor.yaml, line 12)",
    ),
    (
        replaced(LAYER, "- Bidirectional: {layer: {Lambda: {function: x}}}"),
        "`model.layers[0].Bidirectional.layer`: `Lambda` is refused: it runs Python code from "
        "the spec; write a custom layer in a plugin module (xor.yaml, line 12)",
    ),
    (
        replaced(LAYER, "- TFSMLayer: {filepath: /tmp/saved_model}"),
        "`model.layers[0]`: `TFSMLayer` is refused: it loads a SavedModel from a path named in "
        "the spec (xor.yaml, line 12)",
    ),
    (
        replaced(LAYER, "- TorchModuleWrapper: {module: os}"),
        "`model.layers[0]`: `TorchModuleWrapper` is refused: it wraps arbitrary Python code "
        "(xor.yaml, line 12)",
    ),
    (
        replaced(LAYER, "- StringLookup: {vocabulary: /etc/passwd}"),
        "`model.layers[0].StringLookup.vocabulary` must be a list of tokens; dlcli does not "
        "read files named in a spec. Received: '/etc/passwd' (xor.yaml, line 12)",
    ),
    (
        replaced(LAYER, "- TextVectorization: {vocabulary: /etc/shadow}"),
        "`model.layers[0].TextVectorization.vocabulary` must be a list of tokens; dlcli does "
        "not read files named in a spec. Received: '/etc/shadow' (xor.yaml, line 12)",
    ),
    (
        replaced("activation: tanh", "activation: {class_name: system, module: os, config: {}}"),
        "`model.layers[0].Dense.activation`: serialized Keras configs are not accepted; write "
        "{ClassName: {arguments}} (xor.yaml, line 12)",
    ),
    (
        replaced("activation: tanh", "activation: os.system"),
        "`model.layers[0].Dense.activation`: unknown activation `os.system`; see "
        "keras.activations for the valid names (xor.yaml, line 12)",
    ),
    (
        replaced("fit:\n", CALLBACKS.format(callback="LambdaCallback: {on_epoch_end: x}")),
        "`fit.callbacks[0]`: `LambdaCallback` is refused: it runs Python code from the spec "
        "(xor.yaml, line 19)",
    ),
    (
        replaced("fit:\n", CALLBACKS.format(callback="LearningRateScheduler: {schedule: x}")),
        "`fit.callbacks[0]`: `LearningRateScheduler` is refused: it runs Python code; use a "
        "learning-rate schedule instead (xor.yaml, line 19)",
    ),
    (
        replaced("fit:\n", CALLBACKS.format(callback="RemoteMonitor: {root: 'http://evil'}")),
        "`fit.callbacks[0]`: `RemoteMonitor` is refused: it sends data over the network "
        "(xor.yaml, line 19)",
    ),
    (
        replaced("fit:\n", CALLBACKS.format(callback="ModelCheckpoint: {filepath: /etc/x}")),
        "`fit.callbacks[0]`: `ModelCheckpoint` is refused: dlcli saves the model itself in the "
        "run directory (xor.yaml, line 19)",
    ),
    (
        replaced("fit:\n", CALLBACKS.format(callback="BackupAndRestore: {backup_dir: /etc}")),
        "`fit.callbacks[0]`: `BackupAndRestore` is refused: dlcli writes backups itself; use "
        "`dlcli train --resume RUN_DIR` (xor.yaml, line 19)",
    ),
    (
        replaced("loss: binary_crossentropy", "loss: {LossFunctionWrapper: {fn: eval}}"),
        "`compile.loss`: `LossFunctionWrapper` is refused: it wraps code (xor.yaml, line 16)",
    ),
    (
        replaced("metrics: [accuracy]", "metrics: [{MeanMetricWrapper: {fn: exec}}]"),
        "`compile.metrics[0]`: `MeanMetricWrapper` is refused: it wraps code (xor.yaml, line 17)",
    ),
]


@pytest.mark.parametrize(("text", "message"), CODE, ids=range(len(CODE)))
def test_objects_that_run_code_or_read_files_are_refused(text: str, message: str) -> None:
    assert refusal(text) == message


# ---------------------------------------------------------------------------------------------
# Property: a random or mutated spec is a Spec or a one-line ConfigError, never a traceback

FUZZ = settings(
    max_examples=70,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SHIPPED = [yaml.safe_load(config.read_text()) for config in CONFIGS]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(),
    st.text(max_size=10),
    st.sampled_from(["1e-3", "relu", "Dense", "Lambda", "mnist", "auto", "/etc/passwd", "-1"]),
)
KEYS = st.text(max_size=8) | st.sampled_from(
    ["units", "from", "name", "epochs", "class_name", "module", "layer", "learning_rate"]
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)
YAML_CHARACTERS = (
    st.sampled_from(list("[]{}:,-?&*!|>'\"#%@` \n\t0123456789abe.\\")) | st.characters()
)


def _key_paths(data: object, prefix: tuple = ()) -> list[tuple]:
    """Every key path in parsed YAML, parents before children."""
    found = [prefix] if prefix else []
    if isinstance(data, dict | list):
        for key, value in data.items() if isinstance(data, dict) else enumerate(data):
            found += _key_paths(value, (*prefix, key))
    return found


@st.composite
def mutated_configs(draw: st.DrawFn) -> str:
    """A shipped config with keys deleted or renamed and values replaced by random ones."""
    data = yaml.safe_load(yaml.safe_dump(draw(st.sampled_from(SHIPPED))))
    for _ in range(draw(st.integers(1, 3))):
        paths = _key_paths(data)
        if not paths:
            break
        *parents, key = draw(st.sampled_from(paths))
        parent = data
        for part in parents:
            parent = parent[part]
        action = draw(st.sampled_from(["delete", "rename", "replace", "wrap"]))
        if action == "delete":
            del parent[key]
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(KEYS)] = parent.pop(key)
        elif action == "wrap":
            parent[key] = [parent[key]]
        else:
            parent[key] = draw(VALUES)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


@st.composite
def damaged_texts(draw: st.DrawFn) -> str:
    """A shipped config's text with characters inserted or deleted and lines repeated."""
    text = draw(st.sampled_from(CONFIGS)).read_text()
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "repeat line"]))
        if action == "insert":
            text = text[:at] + draw(st.text(YAML_CHARACTERS, min_size=1, max_size=6)) + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)) :]
        else:
            lines = text.splitlines(keepends=True)
            line = min(text.count("\n", 0, at), len(lines) - 1)
            text = "".join([*lines[: line + 1], *lines[line:]])
    return text


def assert_spec_or_one_line_error(text: str) -> None:
    try:
        assert isinstance(spec_from_text(text, WHERE), Spec)
    except ConfigError as error:
        assert str(error) and len(str(error).splitlines()) == 1, repr(str(error))


@FUZZ
@given(mutated_configs())
def test_mutated_configs_are_a_spec_or_one_line_error(text: str) -> None:
    assert_spec_or_one_line_error(text)


@FUZZ
@given(damaged_texts() | st.text(YAML_CHARACTERS, max_size=120))
def test_damaged_and_random_text_is_a_spec_or_one_line_error(text: str) -> None:
    assert_spec_or_one_line_error(text)
