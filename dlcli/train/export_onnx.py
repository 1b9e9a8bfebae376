"""model.onnx beside model.keras at the end of training, verified like `dlcli export`, so that
`dlcli predict` runs the model without TensorFlow (`output.onnx: false` turns it off)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlcli.data.common import Split
from dlcli.errors import ExportError, UsageError


def write_onnx(model: Any, model_path: Path, test: Split, source: str) -> str:
    """Export the trained model to model.onnx, compared with Keras on a sample of `test`.

    Returns:
        The line that says what was written, or why it was not: a model ONNX cannot hold (a
        plugin's layer, an op the converter lacks) still finishes its run, without model.onnx.
    """
    from dlcli.inference.choices import FORMATS
    from dlcli.inference.export import check_request, export_loaded
    from dlcli.model import artifact

    path = model_path.parent / FORMATS["onnx"].file_name
    try:
        check_request("onnx", None, path)
        result = export_loaded(
            model, artifact.inspect(model_path), path, "onnx", test.x, test.y, source
        )
    except (ExportError, UsageError) as error:
        return f"{path.name} not written: {error}"
    return (
        f"ONNX: {path.name} beside it (verified on {result.examples} examples, max abs difference "
        f"{result.max_abs_diff:.2g}; {result.seconds:.1f}s)"
    )
