"""A trained model -> a deployment format, through Keras's own `model.export`, verified in the
format's runtime before the file is put in place.

The exported file runs on a sample of the model's test split (or `--data`) in its runtime
(dlcli.inference.runtimes) and is compared with Keras's outputs: the largest absolute
difference, the top-1 agreement of classifiers, and with quantization the accuracy of both.
OpenVINO runs in float32, and also in the precision it picks by default where that is lower
(bfloat16 on a CPU that has it), held there to the quantized allowance. Only a file within the
tolerance is moved into place; `export.json` beside it records the figures, and the model's
dlcli.json travels with it (inside an ONNX file, as a sidecar file otherwise).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlcli.data.common import Arrays, flat, in_memory, rows, take
from dlcli.errors import ExportError, OutputError, UsageError
from dlcli.inference.choices import FORMATS, QUANTIZATIONS
from dlcli.inference.export_checks import (
    RuntimePrecision,
    beyond_tolerance,
    default_precision_note,
    figures_of,
    shapes_differ,
)
from dlcli.inference.runtimes import (
    METADATA_KEY,
    PRECISION_NAMES,
    SIDECAR_SUFFIX,
    OpenVinoModel,
    native_stderr_silenced,
    open_runtime,
    openvino_default_precision,
)
from dlcli.model.scoring import output_arrays

if TYPE_CHECKING:
    from dlcli.model.artifact import ModelFile, ModelInfo

SAMPLE_EXAMPLES = 512  # compared between Keras and the runtime
REPRESENTATIVE_EXAMPLES = 200  # training examples that calibrate LiteRT's int8 ranges
RECORD = "export.json"


@dataclass(frozen=True)
class ExportResult:
    """What `export` wrote and how the exported file compared with the Keras model."""

    path: Path
    format: str
    quantize: str | None
    data: str  # where the compared examples came from
    examples: int
    max_abs_diff: float
    top1_agreement: float | None  # classifiers: the share of examples with the same top class
    keras_accuracy: float | None  # on the compared examples, when they have labels
    exported_accuracy: float | None
    bytes: int
    keras_bytes: int
    seconds: float
    notes: list[str]
    runtime_precision: RuntimePrecision | None = None  # None: the runtime's default is float32

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


def target_path(model_path: Path, fmt: str, quantize: str | None, output: Path | None) -> Path:
    """Where the export goes: `output`, else beside the model (`model-int8.onnx` quantized).

    Example:
        >>> target_path(Path("runs/a-1/model.keras"), "litert", "float16", None)
        PosixPath('runs/a-1/model-float16.tflite')
    """
    if output is not None:
        return output
    name = FORMATS[fmt].file_name
    if quantize:
        stem, dot, suffix = name.partition(".")
        name = f"{stem}-{quantize}{dot}{suffix}"
    return model_path.parent / name


def check_request(fmt: str, quantize: str | None, path: Path) -> None:
    """Refuse an unknown format or quantization, a missing package or an unusable target,
    before TensorFlow loads."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}. Received: {fmt!r}")
    if quantize is not None and quantize not in QUANTIZATIONS.get(fmt, ()):
        offered = {f: ", ".join(q) for f, q in QUANTIZATIONS.items()}
        listed = "; ".join(f"{f}: {q}" for f, q in offered.items())
        raise UsageError(f"--quantize {quantize} does not apply to {fmt} (offered: {listed})")
    missing = [name for name in FORMATS[fmt].packages if importlib.util.find_spec(name) is None]
    if missing:
        install = "'dlcli[openvino]'" if fmt == "openvino" else " ".join(missing)
        raise UsageError(
            f"exporting to {fmt} needs the package(s) {', '.join(missing)}: pip install {install}"
        )
    suffix = {"onnx": ".onnx", "litert": ".tflite", "openvino": ".xml"}.get(fmt)
    if suffix and path.suffix != suffix:
        raise UsageError(f"--output for {fmt} must end in {suffix}. Received: {path}")
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: no folder {path.parent}")
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"cannot write {path}: permission denied")


def export(
    model_path: Path | str,
    fmt: str,
    *,
    output: Path | None = None,
    quantize: str | None = None,
    data: Path | None = None,
    split: str = "test",
) -> ExportResult:
    """Export a dlcli model to `fmt` and verify it in the format's runtime.

    Args:
        model_path: A `.keras` file saved by `dlcli train`.
        fmt: onnx, litert, savedmodel or openvino.
        output: The file (or folder, for savedmodel) to write; beside the model by default.
        quantize: int8 (onnx: dynamic ranges; litert: calibrated on training examples),
            float16 (litert).
        data: Compare on this file or folder instead of the model's `split`.
        split: The split of the model's dataset compared on.

    Returns:
        An `ExportResult` with the comparison's figures, also merged into export.json.

    Raises:
        UsageError: an unknown format or quantization, or a missing package.
        ModelFileError, DataError: as `dlcli evaluate` raises them.
        ExportError: Keras cannot export the model, or the exported file's outputs differ
            beyond the tolerance; nothing is left at the target path.
        OutputError: the target cannot be written.

    Example:
        export("runs/mnist-1/model.keras", "onnx").max_abs_diff  # 2.4e-07
    """
    from dlcli.inference.evaluate import load_examples
    from dlcli.model import artifact
    from dlcli.model.checks import check_examples

    checked = artifact.inspect(model_path)
    assert checked.info is not None
    columns = checked.info.columns
    if columns is not None and columns.encoded:  # raw columns in: string preprocessing
        from dlcli.model.feature_space import string_preprocessing

        raw = "text" if "text" in columns.kinds.values() else "columns"
        raise ExportError(
            f"{checked.path}: not exported: dlcli export takes models of numeric inputs, and "
            f"this one takes the raw {raw} ({string_preprocessing(columns.kinds.values())}, "
            "which tf2onnx has no form for); dlcli predict runs it in Keras"
        )
    path = target_path(checked.path, fmt, quantize, output)
    check_request(fmt, quantize, path)
    examples = load_examples(checked.info, checked.path, split, data)
    model = artifact.load(checked).model
    x = check_examples(examples.source, examples.x, examples.y, model, checked.info.spec.compile)
    return export_loaded(
        model, checked, path, fmt, x, examples.y, examples.source, quantize=quantize
    )


def export_loaded(
    model: Any,
    checked: ModelFile,
    path: Path,
    fmt: str,
    x: Arrays,
    y: Arrays,
    source: str,
    *,
    quantize: str | None = None,
) -> ExportResult:
    """`export` of a model already loaded (or just trained), compared on a sample of (x, y)
    that the model takes as it is; `checked` is its saved file with dlcli.json."""
    from dlcli.model import artifact

    assert checked.info is not None
    chosen = np.random.default_rng(0).permutation(rows(x))[:SAMPLE_EXAMPLES]
    x, y = in_memory(x, chosen), take(y, chosen)
    reference = output_arrays(model.predict(x, batch_size=256, verbose=0))  # calls the model once
    started = time.perf_counter()
    notes: list[str] = []
    partial = path.parent / f".{path.name}.partial{path.suffix}"
    _remove(partial, fmt)
    at_default: RuntimePrecision | None = None
    try:
        _write(model, fmt, quantize, partial, checked, notes)
        exported = _run(partial, fmt, x)
        result = shapes_differ(reference, exported)
        if not result:  # the outputs can be compared
            figures = figures_of(checked.info, reference, exported, y)
            result = beyond_tolerance(*figures, quantize and f"quantized to {quantize}")
            if result is None and fmt == "openvino":
                at_default = _at_default_precision(partial, checked.info, reference, x, y)
            if at_default is not None:
                notes.append(default_precision_note(at_default, keras_accuracy=figures[2]))
                result = at_default.beyond_allowance(keras_accuracy=figures[2])
    except BaseException:
        _remove(partial, fmt)
        raise
    seconds = time.perf_counter() - started
    if result is not None:
        _remove(partial, fmt)
        way_forward = f"; {quantized_alternatives(fmt, quantize)}" if quantize else ""
        raise ExportError(f"{path}: not written: {result}{way_forward}")
    _remove(path, fmt)
    for written, final in zip(_files(partial, fmt), _files(path, fmt), strict=True):
        os.replace(written, final)
    if fmt != "onnx":  # the format holds no metadata of its own: a file beside it
        artifact.write_json(Path(f"{path}{SIDECAR_SUFFIX}"), json.loads(checked.info.to_json()))
    difference, agreement, keras_accuracy, accuracy = figures
    export_result = ExportResult(
        path=path,
        format=fmt,
        quantize=quantize,
        data=source,
        examples=rows(x),
        max_abs_diff=difference,
        top1_agreement=agreement,
        keras_accuracy=keras_accuracy,
        exported_accuracy=accuracy,
        bytes=_size(path, fmt),
        keras_bytes=checked.path.stat().st_size,
        seconds=round(seconds, 3),
        notes=notes,
        runtime_precision=at_default,
    )
    _record(export_result, checked.path)
    return export_result


def _run(path: Path, fmt: str, x: Arrays, precision: str | None = None) -> list[np.ndarray]:
    """The exported file's outputs in its runtime (OpenVINO: in float32, or in `precision`);
    ExportError when it cannot run them."""
    try:
        runtime = open_runtime(path, fmt) if precision is None else OpenVinoModel(path, precision)
        return runtime.run(x)
    except Exception as error:  # each runtime raises its own types
        reason = " ".join(str(error).split())[:300]
        raise ExportError(
            f"the exported {fmt} file cannot be run in its runtime: {reason}"
        ) from error


def _at_default_precision(
    path: Path, info: ModelInfo, reference: list[np.ndarray], x: Arrays, y: Arrays
) -> RuntimePrecision | None:
    """The OpenVINO file compared with Keras in the precision OpenVINO picks on this CPU by
    default, or None where that is float32 (the comparison already made)."""
    precision = openvino_default_precision()
    if precision == "f32":
        return None
    exported = _run(path, "openvino", x, precision)
    difference, agreement, _, accuracy = figures_of(info, reference, exported, y)
    return RuntimePrecision(
        precision=PRECISION_NAMES.get(precision, precision),
        max_abs_diff=difference,
        top1_agreement=agreement,
        exported_accuracy=accuracy,
    )


def _write(
    model: Any, fmt: str, quantize: str | None, path: Path, checked: Any, notes: list[str]
) -> None:
    """Keras's export to `path`, then what the format needs: captured constants and metadata
    inside an ONNX file, quantization."""
    options: dict[str, Any] = {}
    if fmt == "litert" and quantize:
        options = _litert_quantization(quantize, checked, notes)
    try:
        # Keras's tf2onnx patch warns about np.object; the converters log to the native stderr
        # (LiteRT's quantizer: "fully_quantize: 0, inference_type: 6, ..."); errors are raised
        with warnings.catch_warnings(), native_stderr_silenced():
            warnings.simplefilter("ignore", FutureWarning)
            model.export(str(path), format=FORMATS[fmt].keras_format, verbose=False, **options)
    except Exception as error:  # converters raise many types
        reason = " ".join(str(error).split())[:300]
        raise ExportError(f"Keras cannot export {checked.path} to {fmt}: {reason}") from error
    if fmt == "onnx":
        _finish_onnx(model, path, checked.info.to_json(), quantize, notes)


def _litert_quantization(quantize: str, checked: Any, notes: list[str]) -> dict[str, Any]:
    """The converter settings of float16, or int8 calibrated on training examples."""
    import tensorflow as tf

    options: dict[str, Any] = {"optimizations": [tf.lite.Optimize.DEFAULT]}
    if quantize == "float16":
        return options | {"target_spec": {"supported_types": [tf.float16]}}
    from dlcli.inference.evaluate import load_examples
    from dlcli.model.checks import with_channel_axes

    try:
        train = load_examples(checked.info, checked.path, "train", None).x
    except Exception as error:  # no training data here: dynamic-range int8 (weights only)
        notes.append(f"int8 with dynamic ranges: the training data cannot be read ({error})")
        return options
    chosen = np.random.default_rng(1).permutation(rows(train))[:REPRESENTATIVE_EXAMPLES]
    sample = with_channel_axes(in_memory(train, chosen), checked.info.input_shapes())

    def representative() -> Any:
        for index in range(rows(sample)):
            yield [array[index : index + 1].astype(np.float32) for array in flat(sample)]

    notes.append(f"int8 ranges calibrated on {rows(sample)} training examples")
    return options | {"representative_dataset": representative}


def _finish_onnx(model: Any, path: Path, info: str, quantize: str | None, notes: list[str]) -> None:
    """Constants the converter left as inputs become initializers; dlcli.json is embedded;
    int8 is onnxruntime's dynamic quantization."""
    import onnx

    proto = onnx.load(str(path))
    fixed = _captured_constants(model, proto)
    if fixed:
        notes.append(f"{fixed} constant(s) that tf2onnx left as inputs were put back in the graph")
    if quantize == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        onnx.save(proto, str(path))
        quantize_dynamic(str(path), str(path), weight_type=QuantType.QInt8)
        proto = onnx.load(str(path))
    entry = next((p for p in proto.metadata_props if p.key == METADATA_KEY), None)
    entry = entry or proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, info
    onnx.save(proto, str(path))


def quantized_alternatives(fmt: str, quantize: str) -> str:
    """What else to try when a quantized export loses too much: the format's other
    quantizations, the same quantization in another format, and no quantization.

    Example:
        >>> quantized_alternatives("litert", "int8")
        'try --quantize float16, --format onnx --quantize int8, or no --quantize'
    """
    others = [f"--quantize {q}" for q in QUANTIZATIONS.get(fmt, ()) if q != quantize]
    others += [
        f"--format {other} --quantize {quantize}"
        for other, offered in QUANTIZATIONS.items()
        if other != fmt and quantize in offered
    ]
    return f"try {', '.join([*others, 'or no --quantize'])}"


def _captured_constants(model: Any, proto: Any) -> int:
    """Put tensors that the exported function captures (e.g. Normalization's adapted mean and
    variance) back into an ONNX graph as initializers; tf2onnx 1.17 leaves them as graph inputs
    that a caller would have to feed. Returns how many there were."""
    import tensorflow as tf
    from onnx import numpy_helper

    model_inputs = {tensor.name for tensor in model.inputs}
    extra = [item for item in proto.graph.input if item.name not in model_inputs]
    if not extra:
        return 0
    import keras

    specs = {t.name: tf.TensorSpec(t.shape, t.dtype, name=t.name) for t in model.inputs}
    signature = [next(iter(specs.values())) if len(specs) == 1 else specs]  # as Keras's own
    function = keras.export.ExportArchive().track_and_add_endpoint("serve", model, signature)
    concrete = function.get_concrete_function(*signature)
    values = {
        inner.name: outer for outer, inner in concrete.graph.captures if outer.dtype != tf.resource
    }
    for item in extra:
        if item.name not in values:
            raise ExportError(
                f"the exported ONNX graph has an input `{item.name}` of unknown value"
            )
        proto.graph.initializer.append(
            numpy_helper.from_array(values[item.name].numpy(), item.name)
        )
        proto.graph.input.remove(item)
    return len(extra)


def _size(path: Path, fmt: str) -> int:
    """Bytes of the export: its files, or all the files of its folder."""
    items = [i for p in _files(path, fmt) for i in ([*p.rglob("*")] if p.is_dir() else [p])]
    return sum(item.stat().st_size for item in items if item.is_file())


def _files(path: Path, fmt: str) -> list[Path]:
    """The file (or folder) of an export, and the weights file OpenVINO writes beside it."""
    return [path, path.with_suffix(".bin")] if fmt == "openvino" else [path]


def _remove(path: Path, fmt: str) -> None:
    for item in _files(path, fmt):
        if item.is_dir():
            shutil.rmtree(item)
        elif item.exists():
            item.unlink()


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def _recorded(folder: Path) -> dict[str, Any]:
    """export.json of a folder: exported file name -> its record ({} when there is none)."""
    try:
        recorded = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def _record(result: ExportResult, model_path: Path) -> None:
    """Merge the result into export.json beside the export, keyed by the exported file's name,
    with the digest of the model it came from (so predict can tell a current export)."""
    from dlcli.model import artifact

    recorded = _recorded(result.path.parent)
    recorded[result.path.name] = result.to_dict() | {
        "model": str(model_path),
        "model_sha256": file_digest(model_path),
    }
    artifact.write_json(result.path.parent / RECORD, recorded)


def verified_sibling(model_path: Path) -> Path | None:
    """The unquantized model.onnx beside a .keras file, when export.json records it verified
    against this very file (by its digest); None otherwise."""
    onnx_path = model_path.parent / FORMATS["onnx"].file_name
    entry = _recorded(model_path.parent).get(onnx_path.name)
    if not onnx_path.is_file() or not isinstance(entry, dict) or entry.get("quantize"):
        return None
    return onnx_path if entry.get("model_sha256") == file_digest(model_path) else None
