"""What `dlcli export` and `dlcli predict` say when an export cannot be used as it is: a
quantized export that loses too much names what else to try, and an exported file without
its dlcli.json says where that file is."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from dlcli.inference import export_checks

from .helpers import TinyModels, copied, invoke


def test_a_refused_int8_export_names_what_else_to_try(
    tiny_models: TinyModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = copied(tiny_models.bars, tmp_path)
    monkeypatch.setattr(export_checks, "QUANTIZED_AGREEMENT", 1.01)  # no export agrees that well
    result = invoke(["export", str(model), "--format", "litert", "--quantize", "int8"])
    assert result.exit_code == 12, result.output
    assert re.fullmatch(
        rf"Error: {re.escape(str(model.parent))}/model-int8\.tflite: not written: quantized to "
        r"int8, it agrees with the Keras model on [\d.]+% of the examples \(at least 101% "
        r"needed\); try --quantize float16, --format onnx --quantize int8, or no --quantize",
        result.stderr.strip().splitlines()[-1],
    ), result.stderr


def test_a_copied_tflite_without_its_dlcli_json_says_where_that_file_is(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    model = copied(tiny_models.bars, tmp_path)
    exported = invoke(["export", str(model), "--format", "litert"])
    assert exported.exit_code == 0, exported.output
    alone = tmp_path / "elsewhere" / "model.tflite"
    alone.parent.mkdir()
    shutil.copy(model.parent / "model.tflite", alone)
    image = next((tiny_models.folder / "bars").rglob("*.png"))
    result = invoke(["predict", str(image), "--model", str(alone)])
    assert result.exit_code == 6, result.output  # ModelFileError
    assert result.stderr.strip() == (
        f"Error: {alone}: no model.tflite.dlcli.json beside it, so what it takes is unknown; "
        "`dlcli export` wrote it there: copy it along with model.tflite (an .onnx export "
        "carries it inside)"
    )
