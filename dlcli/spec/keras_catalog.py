"""Keras's public names and constructor arguments, asked of Keras itself, cached per installation.

`dlcli validate` checks every Keras name in a spec and `dlcli.model.build` builds the objects;
both go through `resolve`, so a name that validates is the name that is built. The answers come from
Keras's public API: the members of `keras.layers`, `keras.optimizers`, ... (`NAMESPACES`),
whether each is a class or a function, each class's keyword arguments (`inspect.signature` of
`__init__`, followed up the base classes while an `__init__` passes `**kwargs` on), and the
strings each namespace's `get` accepts, found by calling `get` on candidate strings: the public
names, their lower and snake_case spellings, and the keys of the namespace's ALL_OBJECTS_DICT
(the one private detail read, as candidates only: a candidate counts when the public `get`
returns a public member of the namespace for it).

Why a subprocess: importing Keras imports TensorFlow, which takes seconds, and `dlcli validate`
must answer without it. So `python -m dlcli.spec.keras_catalog` computes the catalog in a child
process and prints it as JSON; the process that validates never imports Keras.

Why a cache: the child pays for the import of Keras on every run. Its answer is kept in the
dlcli cache folder, one file per Keras installation (its version, folder and the stamps of its
files), so only the first validate after installing or upgrading Keras waits for it. Where the
cache folder cannot be written, the child's answer serves the run that asked for it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

from dlcli.errors import DlcliError, OutputError
from dlcli.utils.atomic import atomic_write
from dlcli.utils.cache import cache_dir

NAMESPACES = (
    "layers",
    "optimizers",
    "optimizers.schedules",
    "losses",
    "metrics",
    "callbacks",
    "initializers",
    "regularizers",
    "constraints",
    "activations",
    "applications",
)
# Strings `model.compile` resolves itself, by the loss and output shape (keras.src.trainers.
# compile_utils); no public API lists them.
COMPILE_SHORTCUTS = {
    "metrics": ("accuracy", "acc", "crossentropy", "ce"),
    "losses": ("crossentropy", "ce"),
}
FEATURE_SPACE = "feature_space"  # keras.utils.FeatureSpace's feature types, as a namespace
STORE_PREFIX = "keras-names-"
_FORMAT = 4  # 3: the FeatureSpace types (`feature_space`); 4: keras.applications
_NOT_MEMBERS = frozenset({"get", "serialize", "deserialize"})


class CatalogError(DlcliError):
    """Keras's names could not be read (Keras missing or broken); not a mistake in the spec."""


# ---------------------------------------------------------------------------------------------
# Reading the catalog (no Keras import)


def resolve(namespace: str, identifier: str) -> str | None:
    """The public name `identifier` stands for in `keras.<namespace>`, or None.

    A public class resolves to itself (a public function too, where the namespace has a `get`);
    a string that the namespace's `get` accepts resolves to the member `get` returns; the
    strings `model.compile` reads itself resolve to themselves.

    Example:
        >>> resolve("optimizers", "adam"), resolve("losses", "mse"), resolve("layers", "dense")
        ('Adam', 'mean_squared_error', None)
    """
    entry = _namespace(namespace)
    if identifier in COMPILE_SHORTCUTS.get(namespace, ()):
        return identifier
    if identifier in entry["classes"] or identifier in entry["functions"]:
        return identifier
    return entry["strings"].get(identifier)


def takes_string(namespace: str, identifier: str) -> bool:
    """Whether Keras reads `identifier` as written: the namespace's `get` returned an object for
    it, or `model.compile` resolves it itself. The builder hands such strings to Keras."""
    return identifier in _namespace(namespace)["strings"] or identifier in COMPILE_SHORTCUTS.get(
        namespace, ()
    )


def is_class(namespace: str, name: str) -> bool:
    """Whether the public name `name` is a class (it takes arguments) rather than a function."""
    return name in _namespace(namespace)["classes"]


def arguments(namespace: str, name: str) -> tuple[frozenset[str], frozenset[str]] | None:
    """(every keyword argument, the required ones) of the public class `name`; None if unknown."""
    entry = _namespace(namespace)["classes"][name]
    if entry is None:
        return None
    return frozenset(entry["arguments"]), frozenset(entry["required"])


def identifiers(namespace: str) -> set[str]:
    """Every string `resolve` accepts in a namespace, for suggesting the nearest one."""
    entry = _namespace(namespace)
    names = {*entry["classes"], *entry["functions"], *entry["strings"]}
    return names | set(COMPILE_SHORTCUTS.get(namespace, ()))


def _namespace(namespace: str) -> dict[str, Any]:
    return load()[namespace]


@cache
def load() -> dict[str, Any]:
    """The catalog of the installed Keras: from the cache, else computed in a child process.

    Raises:
        CatalogError: Keras is not installed, or the child process failed.
    """
    stamp = installation_stamp()
    path = store_path(stamp)
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored["stamp"] == stamp:
            return stored["namespaces"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    # A process that imported Keras anyway (`dlcli train`, see `cached`) asks it directly.
    namespaces = compute() if "keras" in sys.modules else _compute_in_child()
    _save(path, json.dumps({"stamp": stamp, "namespaces": namespaces}))
    return namespaces


def cached() -> bool:
    """Whether the catalog of the installed Keras is in the cache (False without Keras).

    A command that will import Keras anyway imports it before the first `load` when this is
    False: the catalog is then read in-process instead of paying a second Keras import in a
    child process.
    """
    try:
        stamp = installation_stamp()
        return json.loads(store_path(stamp).read_text(encoding="utf-8"))["stamp"] == stamp
    except (CatalogError, OSError, ValueError, KeyError, TypeError):
        return False


def installation_stamp() -> str:
    """The Keras installation the catalog describes: its version, folder and files' stamps.

    Raises:
        CatalogError: Keras is not installed.
    """
    spec = importlib.util.find_spec("keras")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise CatalogError("cannot read Keras's names: Keras is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    stamps = [str(_FORMAT), _keras_version(root), str(root)]
    for name in ("__init__.py", "src/version.py"):
        try:
            stat = (root / name).stat()
        except OSError:
            stamps.append(f"{name}:missing")
        else:
            stamps.append(f"{name}:{stat.st_mtime_ns}:{stat.st_size}")
    return "|".join(stamps)


def _keras_version(root: Path) -> str:
    try:
        text = (root / "src" / "version.py").read_text(encoding="utf-8")
    except OSError:
        return "unknown"
    found = re.search(r"""__version__\s*=\s*["']([^"']+)["']""", text)
    return found.group(1) if found else "unknown"


def store_path(stamp: str) -> Path:
    """The cache file of the Keras installation `stamp` describes."""
    version = stamp.split("|")[1]
    digest = hashlib.sha256(stamp.encode("utf-8")).hexdigest()[:12]
    return cache_dir() / f"{STORE_PREFIX}{version}-{digest}.json"


def _save(path: Path, document: str) -> None:
    """Write through `dlcli.utils.atomic`; an unwritable cache is skipped (the answer serves this
    run)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, document.encode("utf-8"))
    except (OSError, OutputError):
        pass


def _compute_in_child() -> dict[str, Any]:
    import subprocess

    package_root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    try:
        child = subprocess.run(
            [sys.executable, "-m", "dlcli.spec.keras_catalog"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=600,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise CatalogError(f"cannot read Keras's names: {error}") from None
    if child.returncode == 0:
        try:
            return json.loads(child.stdout)
        except ValueError:
            pass
    lines = [line for line in child.stderr.splitlines() if line.strip()]
    reason = lines[-1].strip() if lines else f"the child process ended with {child.returncode}"
    raise CatalogError(
        f"cannot read Keras's names: {reason} ({sys.executable} -m dlcli.spec.keras_catalog)"
    )


# ---------------------------------------------------------------------------------------------
# Computing the catalog (in the child process, which imports Keras)


def compute() -> dict[str, Any]:
    """Ask the imported Keras for every namespace's members, arguments and `get` strings."""
    from dlcli.distribute.device import import_keras

    keras = import_keras()
    catalog = {}
    for namespace in NAMESPACES:
        module = keras
        for part in namespace.split("."):
            module = getattr(module, part)
        catalog[namespace] = _describe(namespace, module)
    catalog[FEATURE_SPACE] = _feature_types(keras.utils.FeatureSpace)
    return catalog


def _feature_types(feature_space: type) -> dict[str, Any]:
    """FeatureSpace's feature types (`float_normalized`, `string_categorical`, ...) with their
    arguments: its public class methods that return a feature, as a namespace of classes.

    `feature` (a custom preprocessor object) and `cross` (`dataset.csv.crosses`) are left out.
    """
    import inspect

    types = {}
    for name, member in vars(feature_space).items():
        if name.startswith("_") or name in ("feature", "cross", "from_config"):
            continue
        if isinstance(member, classmethod | staticmethod):
            parameters = [
                p
                for p in inspect.signature(getattr(feature_space, name)).parameters.values()
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            ]
            types[name] = {
                "arguments": sorted(p.name for p in parameters),
                "required": sorted(p.name for p in parameters if p.default is p.empty),
            }
    return {"classes": types, "functions": [], "strings": {}}


def _describe(namespace: str, module: Any) -> dict[str, Any]:
    import inspect

    members = {
        name: member
        for name, member in vars(module).items()
        if not name.startswith("_") and name not in _NOT_MEMBERS and callable(member)
    }
    if namespace == "applications":  # model constructors, functions: listed with their arguments
        return {
            "classes": {name: _class_arguments(m) for name, m in members.items()},
            "functions": [],
            "strings": {},
        }
    classes = {name: _class_arguments(m) for name, m in members.items() if inspect.isclass(m)}
    get = getattr(module, "get", None)
    if get is None:  # layers, callbacks, schedules: built from their classes only
        return {"classes": classes, "functions": [], "strings": {}}
    functions = sorted(name for name, m in members.items() if not inspect.isclass(m))
    return {
        "classes": classes,
        "functions": functions,
        "strings": _get_strings(namespace, get, members),
    }


def _class_arguments(cls: Any) -> dict[str, list[str]] | None:
    """Keyword arguments of `cls`, following `**kwargs` up the base classes' `__init__`s (of a
    function that builds a model, such as `keras.applications.MobileNet`, its own).

    A base `__init__` without `**kwargs` (or `object`) closes the list; Layer's `__init__`
    refuses what it does not name itself. Required: no default in the class's own `__init__`
    (a base's required arguments, such as Conv's `rank`, are the subclass's to give).
    """
    import inspect

    named: list[str] = []
    required: list[str] = []
    if not inspect.isclass(cls):
        parameters = list(inspect.signature(cls).parameters.values())
        return {
            "arguments": sorted(p.name for p in parameters),
            "required": sorted(p.name for p in parameters if p.default is p.empty),
        }
    for klass in cls.__mro__:
        if klass is object:
            break
        init = vars(klass).get("__init__")
        if init is None:
            continue
        try:
            parameters = list(inspect.signature(init).parameters.values())[1:]  # self
        except (TypeError, ValueError):
            return None
        if not named:
            required = [
                p.name
                for p in parameters
                if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            ]
        named += [
            p.name
            for p in parameters
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in named
        ]
        if all(p.kind is not p.VAR_KEYWORD for p in parameters):
            break
    return {"arguments": sorted(named), "required": sorted(required)}


def _snake_case(name: str) -> str:
    """keras.src.utils.naming.to_snake_case: "EarlyStopping" -> "early_stopping"."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _get_strings(namespace: str, get: Any, members: dict[str, Any]) -> dict[str, str]:
    """Each candidate string `get` returns a public member (or an instance of one) for."""
    import importlib
    import warnings

    import keras

    candidates = {*members, *(n.lower() for n in members), *map(_snake_case, members)}
    if keras.version().startswith("3."):  # Keras 3 keeps each namespace's aliases here
        private = importlib.import_module(f"keras.src.{namespace}")
        candidates |= {k for k in getattr(private, "ALL_OBJECTS_DICT", {}) if isinstance(k, str)}
    strings = {}
    for candidate in sorted(candidates):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = get(candidate)
        except Exception:  # any failure means `get` does not take the string
            continue
        name = next((n for n, m in members.items() if found is m or type(found) is m), None)
        if name is not None:
            strings[candidate] = name
    return strings


def main() -> None:
    """Print the catalog as JSON on stdout; whatever Keras prints goes to stderr."""
    stdout = os.dup(1)
    os.dup2(2, 1)
    document = json.dumps(compute())
    with os.fdopen(stdout, "w", encoding="utf-8") as output:
        output.write(document)


if __name__ == "__main__":
    main()
