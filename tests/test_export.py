"""`dlcli export` through the CLI: each format verified in its own runtime, quantization, the
metadata that travels with the file, and predict with an exported model without TensorFlow."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dlcli.inference import export as export_module
from dlcli.inference import export_checks

from .helpers import QuietView, Ran, TinyModels, copied, invoke, run_cli

HEAVY = re.compile(r"\| (tensorflow|keras)$", re.MULTILINE)


def dlcli(*arguments: str, cwd: Path, importtime: bool = False) -> Ran:
    """The installed CLI in a subprocess (with `-X importtime` to list what it imports)."""
    return run_cli(arguments, None, cwd, importtime=importtime)


def export_step(model: Path, fmt: str) -> None:
    """`dlcli export MODEL --format FMT` in this process (a step before what a test checks)."""
    result = invoke(["export", str(model), "--format", fmt])
    assert result.exit_code == 0, result.output[-3000:]


@pytest.mark.parametrize(
    ("fmt", "quantize", "written"),
    [
        ("onnx", None, "model.onnx"),
        ("litert", None, "model.tflite"),
        ("savedmodel", None, "model_savedmodel"),
        ("openvino", None, "model.xml"),
        ("onnx", "int8", "model-int8.onnx"),
        ("litert", "float16", "model-float16.tflite"),
        ("litert", "int8", "model-int8.tflite"),
    ],
)
def test_each_format_is_verified_in_its_runtime(
    tiny_models: TinyModels, tmp_path: Path, fmt: str, quantize: str | None, written: str
) -> None:
    """In-process (TensorFlow is loaded once for all formats); the end-to-end tier exports the
    MNIST model in a subprocess."""
    model = copied(tiny_models.bars, tmp_path)
    arguments = ["export", str(model), "--format", fmt]
    result = invoke([*arguments, *(["--quantize", quantize] if quantize else [])])
    assert result.exit_code == 0, result.output[-3000:]
    path = model.parent / written
    assert f"Exported {path} ({fmt}{f', {quantize}' if quantize else ''}, " in result.stdout
    verified = r"Verified on 13 examples of bars/test: max abs difference [\d.e-]+, top-1 agreement"
    assert re.search(verified + r" 100\.00%, accuracy 0\.\d+ \(Keras 0\.\d+\)", result.stdout)
    record = json.loads((model.parent / "export.json").read_text())[written]
    tolerance = export_checks.TOLERANCE if quantize is None else 0.25
    assert record["max_abs_diff"] <= tolerance and record["top1_agreement"] == 1.0
    assert record["quantize"] == quantize and record["bytes"] > 0
    assert record["model_sha256"] == export_module.file_digest(model)
    if fmt == "onnx":  # dlcli.json inside the file
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert json.loads(props["dlcli.json"])["class_names"] == ["bottom", "middle", "top"]
    else:  # beside it
        assert json.loads(Path(f"{path}.dlcli.json").read_text())["task"] == "multiclass"
    assert not list(model.parent.glob(".*partial*")), "no half-written export left"
    if fmt == "openvino":  # its weights file, moved into place with it
        assert (model.parent / "model.bin").is_file()


def test_exported_files_predict_as_keras_does_without_tensorflow(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    model = copied(tiny_models.bars, tmp_path)
    for fmt in ("onnx", "litert"):
        export_step(model, fmt)
    images = str(tiny_models.folder / "bars" / "test")
    keras = dlcli(
        "predict", images, "--model", str(model), "--runtime", "keras", "--csv", cwd=tmp_path
    )
    assert keras.returncode == 0, keras.stderr[-2000:]
    for exported in (model, model.parent / "model.onnx", model.parent / "model.tflite"):
        result = dlcli(
            "predict", images, "--model", str(exported), "--csv", cwd=tmp_path, importtime=True
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert HEAVY.findall(result.stderr) == [], f"{exported.name} imported TensorFlow"
        assert "INFO: Created TensorFlow Lite XNNPACK delegate" not in result.stderr
        assert labels(result.stdout) == labels(keras.stdout)
        assert probabilities(result.stdout) == pytest.approx(probabilities(keras.stdout), abs=1e-5)
    auto = dlcli("predict", images, "--model", str(model), cwd=tmp_path)
    onnx_path = model.parent / "model.onnx"
    assert f"Runtime: onnxruntime, {onnx_path} (verified against model.keras)" in auto.stderr


def labels(csv_text: str) -> list[str]:
    return [line.split(",")[2] for line in csv_text.strip().splitlines()[1:]]


def probabilities(csv_text: str) -> list[float]:
    return [float(line.split(",")[3]) for line in csv_text.strip().splitlines()[1:]]


def test_a_keras_file_changed_since_its_export_is_not_run_through_it(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    model = copied(tiny_models.answer, tmp_path)
    export_step(model, "onnx")
    rows = tiny_models.folder / "answers" / "test.csv"
    assert (
        "Runtime: onnxruntime"
        in dlcli("predict", str(rows), "--model", str(model), cwd=tmp_path).stderr
    )
    shutil.copy(tiny_models.line, model)  # another model in its place: the export is stale
    result = dlcli("predict", "--model", str(model), "--runtime", "onnx", str(rows), cwd=tmp_path)
    assert result.returncode == 6
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {model}: no model.onnx verified against it beside it; write one with "
        f"`dlcli export {model} --format onnx`"
    )


def test_training_writes_a_verified_model_onnx(tiny_models: TinyModels) -> None:
    for model in (tiny_models.bars, tiny_models.answer, tiny_models.line):
        record = json.loads((model.parent / "export.json").read_text())["model.onnx"]
        assert record["max_abs_diff"] <= export_checks.TOLERANCE
        assert record["model_sha256"] == export_module.file_digest(model)
        assert export_module.verified_sibling(model) == model.parent / "model.onnx"


@pytest.mark.parametrize(
    ("arguments", "code", "message"),
    [
        (
            ["--format", "savedmodel", "--quantize", "int8"],
            2,
            "--quantize int8 does not apply to savedmodel (offered: onnx: int8; litert: float16, "
            "int8)",
        ),
        (
            ["--format", "onnx", "--output", "model.tflite"],
            2,
            "--output for onnx must end in .onnx. Received: model.tflite",
        ),
        (
            ["--format", "onnx", "--output", "nowhere/model.onnx"],
            11,
            "cannot write nowhere/model.onnx: no folder nowhere",
        ),
    ],
)
def test_export_mistakes_are_one_line_before_tensorflow(
    tiny_models: TinyModels, tmp_path: Path, arguments: list[str], code: int, message: str
) -> None:
    model = copied(tiny_models.bars, tmp_path)
    result = dlcli("export", str(model), *arguments, cwd=tmp_path, importtime=True)
    assert result.returncode == code, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == f"Error: {message}"
    assert HEAVY.findall(result.stderr) == []


def test_an_export_beyond_the_tolerance_is_refused_and_not_left(
    tiny_models: TinyModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = copied(tiny_models.bars, tmp_path)
    monkeypatch.setattr(export_checks, "TOLERANCE", -1.0)  # no export can be that close
    result = invoke(["export", str(model), "--format", "litert"])
    assert result.exit_code == 12, result.output
    assert re.fullmatch(
        rf"Error: {re.escape(str(model.parent))}/model\.tflite: not written: its outputs differ "
        r"from the Keras model's by up to [\d.e-]+ \(tolerance -1\.0\)",
        result.stderr.strip().splitlines()[-1],
    ), result.stderr
    assert sorted(path.name for path in model.parent.glob("*model*")) == ["model.keras"]


def test_evaluate_runs_an_exported_file_without_tensorflow(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    model = copied(tiny_models.bars, tmp_path)
    export_step(model, "litert")
    export_step(model, "onnx")
    keras = dlcli("evaluate", str(model), "--json", cwd=tiny_models.folder)
    assert keras.returncode == 0, keras.stderr[-2000:]
    accuracy = json.loads(keras.stdout)["metrics"]["accuracy"]
    for name, suffix in (("model.onnx", "onnx"), ("model.tflite", "tflite")):
        result = dlcli(
            "evaluate", str(model.parent / name), "--json", cwd=tiny_models.folder, importtime=True
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert HEAVY.findall(result.stderr) == [], f"{name} imported TensorFlow"
        assert f"{name} runs in its own runtime: the loss and compiled metrics need Keras" in (
            result.stderr
        )
        evaluation = json.loads((model.parent / f"evaluation-{suffix}.json").read_text())
        assert evaluation["metrics"] == {"accuracy": pytest.approx(accuracy)}
        assert evaluation["confusion_matrix"]["labels"] == ["bottom", "middle", "top"]


# The MNIST model's shape (784-512-10): its outputs move by more than the tolerance in bfloat16.
MNIST_SHAPED_SPEC = """
name: digits
seed: 1
dataset:
  npz: digits.npz
model:
  input: [28, 28]
  layers:
    - Rescaling: {scale: 0.00392156862745098}
    - Flatten
    - Dense: {units: 512, activation: relu}
    - Dense: {units: 10, activation: softmax}
compile:
  optimizer: rmsprop
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  jit_compile: false
fit: {epochs: 1, batch_size: 16}
"""


@pytest.fixture(scope="module")
def mnist_shaped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MNIST MLP trained for an epoch on 64 noisy 28x28 images, each with two bright rows
    where its label (0-9) says."""
    from dlcli.spec.load import spec_from_text
    from dlcli.train.pipeline import train

    folder = tmp_path_factory.mktemp("mnist-shaped")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, size=64).astype("uint8")
    x = rng.integers(0, 256, size=(64, 28, 28)).astype("uint8")
    x[np.arange(64), 2 * y] = x[np.arange(64), 2 * y + 1] = 255
    np.savez(folder / "digits.npz", x_train=x[:48], y_train=y[:48], x_test=x[48:], y_test=y[48:])
    output = f"output: {{dir: {folder / 'runs'}, onnx: false}}\n"
    spec = spec_from_text(MNIST_SHAPED_SPEC + output, "digits.yaml")
    return train(spec, folder, QuietView()).model_path


@pytest.fixture
def bfloat16_by_default(monkeypatch: pytest.MonkeyPatch) -> bool:
    """OpenVINO's CPU plugin as on a CPU with BF16: it reports bfloat16 as its default precision
    and compiles in it unless told otherwise. Returns whether this CPU really computes in
    bfloat16 (elsewhere OpenVINO takes the hint and runs float32)."""
    import openvino

    compile_model, get_property = openvino.Core.compile_model, openvino.Core.get_property

    def compiled(self: Any, model: Any, device_name: Any = None, config: Any = None) -> Any:
        hinted = {"INFERENCE_PRECISION_HINT": "bf16", **(config or {})}
        return compile_model(self, model, device_name, hinted)

    def reported(self: Any, *arguments: Any) -> Any:
        if arguments[-1] == "INFERENCE_PRECISION_HINT":
            return openvino.Type.bf16
        return get_property(self, *arguments)

    capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    monkeypatch.setattr(openvino.Core, "compile_model", compiled)
    monkeypatch.setattr(openvino.Core, "get_property", reported)
    return "BF16" in capabilities


def test_openvino_is_verified_in_float32_and_its_bfloat16_default_reported(
    mnist_shaped: Path, tmp_path: Path, bfloat16_by_default: bool
) -> None:
    """Fails before the fix on a CPU with BF16: the file was compared as OpenVINO ran it by
    default, in bfloat16, against the float32 tolerance, and refused (exit 12)."""
    model = copied(mnist_shaped, tmp_path)
    result = invoke(["export", str(model), "--format", "openvino"])
    assert result.exit_code == 0, result.output[-3000:]
    record = json.loads((model.parent / "export.json").read_text())["model.xml"]
    assert record["max_abs_diff"] <= export_checks.TOLERANCE
    at_default = record["runtime_precision"]
    assert at_default["precision"] == "bfloat16"
    assert at_default["top1_agreement"] >= export_checks.QUANTIZED_AGREEMENT
    if bfloat16_by_default:  # the model is large enough for bfloat16 to show
        assert at_default["max_abs_diff"] > export_checks.TOLERANCE
    line = (
        f"On this CPU OpenVINO runs in bfloat16 by default: max abs difference "
        f"{at_default['max_abs_diff']:.2g}, {at_default['top1_agreement']:.1%} top-1 agreement, "
        f"accuracy {at_default['exported_accuracy']:.4f} (Keras {record['keras_accuracy']:.4f}); "
        '`ov.Core().compile_model(..., {"INFERENCE_PRECISION_HINT": "f32"})` for exact results'
    )
    assert line in result.stdout.splitlines(), result.stdout
    assert record["notes"] == [line]


def test_openvino_losing_too_much_at_its_default_precision_is_refused(
    tiny_models: TinyModels,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    bfloat16_by_default: bool,
) -> None:
    model = copied(tiny_models.bars, tmp_path)
    monkeypatch.setattr(export_checks, "QUANTIZED_AGREEMENT", 1.01)  # no export agrees that well
    result = invoke(["export", str(model), "--format", "openvino"])
    assert result.exit_code == 12, result.output
    assert re.fullmatch(
        rf"Error: {re.escape(str(model.parent))}/model\.xml: not written: in bfloat16, OpenVINO's "
        r"default on this CPU, it agrees with the Keras model on [\d.]+% of the examples \(at "
        r"least 101% needed\)",
        result.stderr.strip().splitlines()[-1],
    ), result.stderr
    assert sorted(path.name for path in model.parent.glob("*model*")) == ["model.keras"]
