"""Keras's public names and constructor arguments, read from its source without importing it.

Importing Keras imports TensorFlow (seconds). `dlcli validate` must answer instantly, so it
reads Keras's generated public API modules (`keras/layers/__init__.py` is a list of
`from keras.src... import Dense as Dense`) and the `__init__` signatures they point to with
`ast`. The names therefore always match the installed Keras; nothing here is a hand-kept table.
When a signature cannot be followed statically, `arguments` returns None and the check is
left to Keras itself when the model is built.

Parsing those files takes longer than the rest of `dlcli validate` together, so the answers are
kept in `keras-catalog.json` in the dlcli cache folder for the next run, stamped with the Keras
installation they were read from; another installation, or the same one reinstalled, reads
its own source again.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import os
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

# Strings that `model.compile` resolves itself (keras.src.trainers.compile_utils).
_COMPILE_SHORTCUTS = {
    "metrics": ("accuracy", "acc", "crossentropy", "ce"),
    "losses": ("crossentropy", "ce"),
}
# Keyword arguments that keras.layers.Layer accepts through **kwargs.
_LAYER_BASE_KWARGS = frozenset({"input_shape", "input_dim", "batch_input_shape", "batch_size"})


@cache
def _keras_root() -> Path | None:
    spec = importlib.util.find_spec("keras")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _module_file(module: str) -> Path | None:
    root = _keras_root()
    if root is None or not (module == "keras" or module.startswith("keras.")):
        return None
    relative = Path(*module.split(".")[1:])
    for candidate in (root / relative / "__init__.py", (root / relative).with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


STORE_NAME = "keras-catalog.json"
_STORE_FORMAT = 1


@cache
def _store() -> dict[str, Any]:
    """Answers remembered from earlier runs with this Keras installation (empty if none)."""
    root = _keras_root()
    if root is None:
        return {}
    path = _store_path()
    stamps = [str(root)]
    for name in ("__init__.py", "src/version.py"):
        try:
            stamp = (root / name).stat()
        except OSError:
            return {}
        stamps.append(f"{name}:{stamp.st_mtime_ns}:{stamp.st_size}")
    stamp = f"{_STORE_FORMAT}|{'|'.join(stamps)}"
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored["stamp"] == stamp and isinstance(stored["answers"], dict):
            return {"stamp": stamp, "answers": stored["answers"], "new": False}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return {"stamp": stamp, "answers": {}, "new": False}


def _store_path() -> Path:
    # The folder of dlcli.data.cache_dir, which is not imported here: it would import numpy.
    if os.environ.get("DLCLI_CACHE"):
        return Path(os.environ["DLCLI_CACHE"]) / STORE_NAME
    home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(home) / "dlcli" / STORE_NAME


def save() -> None:
    """Keep the answers found in this run for the next one (atomically; an unwritable cache is
    skipped)."""
    store = _store()
    if not store.get("new"):
        return
    path = _store_path()
    import tempfile

    document = json.dumps({"stamp": store["stamp"], "answers": store["answers"]})
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=".keras-catalog-", delete=False, encoding="utf-8"
        ) as temporary:
            temporary.write(document)
        os.replace(temporary.name, path)
        store["new"] = False
    except OSError:
        if temporary is not None:
            Path(temporary.name).unlink(missing_ok=True)


def _remembered(decode: Callable[[Any], Any]) -> Callable[[Callable[..., Any]], Any]:
    """functools.cache whose answers also go to the store for the next run."""

    def decorator(function: Callable[..., Any]) -> Any:
        @cache
        @functools.wraps(function)
        def remembered(*args: str) -> Any:
            store = _store()
            if not store:
                return function(*args)
            key = " ".join((function.__name__, *args))
            answers = store["answers"]
            if key in answers:
                return decode(answers[key])
            value = function(*args)
            if isinstance(value, frozenset):
                answers[key] = sorted(value)
            else:
                answers[key] = value
            store["new"] = True
            return value

        return remembered

    return decorator


def _optional(decode: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda stored: None if stored is None else decode(stored)


@cache
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _imports(module: str) -> dict[str, tuple[str, str]]:
    """Map each name a module imports with `from X import Y as Z` to (X, Y)."""
    path = _module_file(module)
    if path is None:
        return {}
    found: dict[str, tuple[str, str]] = {}
    for node in _parse(path).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                found[alias.asname or alias.name] = (node.module, alias.name)
    return found


@_remembered(_optional(lambda names: {name: tuple(origin) for name, origin in names.items()}))
def public_names(namespace: str) -> dict[str, tuple[str, str]] | None:
    """Public names of `keras.<namespace>` (e.g. "layers", "optimizers.schedules").

    Returns name -> (defining module, name there), or None when Keras is not installed.
    """
    if _module_file(f"keras.{namespace}") is None:
        return None
    return {
        name: origin
        for name, origin in _imports(f"keras.{namespace}").items()
        if not name.startswith("_") and origin[0].startswith("keras.src")
    }


def _class_def(module: str, name: str) -> ast.ClassDef | None:
    path = _module_file(module)
    if path is None:
        return None
    for node in _parse(path).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    return None


def _resolve_base(module: str, base: ast.expr) -> tuple[str, str] | None:
    if isinstance(base, ast.Name):
        return _imports(module).get(base.id, (module, base.id))
    if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name):
        imported = _imports(module).get(base.value.id)
        if imported:
            return f"{imported[0]}.{imported[1]}", base.attr
    return None


@_remembered(_optional(frozenset))
def arguments(module: str, class_name: str) -> frozenset[str] | None:
    """Keyword arguments `class_name.__init__` accepts, following **kwargs into base classes.

    None means "unknown": the class could not be followed statically.
    """
    class_def = _class_def(module, class_name)
    if class_def is None:
        return None
    init = next(
        (n for n in class_def.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"),
        None,
    )
    if init is not None:
        args = init.args
        names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]} - {"self"}
        if args.kwarg is None:
            return frozenset(names)
    else:
        names = set()
    if class_name == "Layer" and module.endswith("layers.layer"):
        return frozenset(names | _LAYER_BASE_KWARGS)
    # A base chosen at import time (e.g. the backend's optimizer mixin) cannot be read
    # statically; it only forwards **kwargs, so the bases that can be read decide.
    if not class_def.bases:
        return frozenset(names)
    inherited = [arguments(*r) for b in class_def.bases if (r := _resolve_base(module, b))]
    known = [names_ for names_ in inherited if names_ is not None]
    if not known:
        return None
    return frozenset(names.union(*known))


def _snake_case(name: str) -> str:
    """keras.src.utils.naming.to_snake_case, which `get` also accepts for some namespaces."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


@_remembered(frozenset)
def _alias_strings(namespace: str) -> frozenset[str]:
    """String keys of the dict literals in `keras.src.<namespace>` (its ALL_OBJECTS_DICT)."""
    path = _module_file(f"keras.src.{namespace}")
    if path is None:
        return frozenset()
    return frozenset(
        key.value
        for node in ast.walk(_parse(path))
        if isinstance(node, ast.Dict)
        for key in node.keys
        if isinstance(key, ast.Constant) and isinstance(key.value, str)
    )


def identifiers(namespace: str) -> set[str]:
    """Every name `resolve` accepts in a namespace, for suggesting the nearest one."""
    names = {
        n for n in public_names(namespace) or {} if n not in ("get", "serialize", "deserialize")
    }
    return names | set(_COMPILE_SHORTCUTS.get(namespace, ())) | _alias_strings(namespace)


def resolve(namespace: str, identifier: str) -> str | None:
    """The public name Keras's `get` resolves `identifier` to, or None if it does not.

    Aliases count: "rmsprop" (optimizers match case-insensitively), "mse", "accuracy",
    snake_case class names.
    """
    names = public_names(namespace) or {}
    if identifier in names or identifier in _COMPILE_SHORTCUTS.get(namespace, ()):
        return identifier
    if identifier in _alias_strings(namespace):
        return identifier
    for name in names:
        if namespace == "optimizers" and name.lower() == identifier.lower():
            return name
        if name[0].isupper() and _snake_case(name) == identifier:
            return name
    return None
