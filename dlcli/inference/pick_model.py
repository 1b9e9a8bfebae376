"""Which trained model takes `dlcli predict`'s inputs when no --model is given: the newest run
whose dlcli.json says it takes them, decided from the files' headers alone (no TensorFlow)."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path

from dlcli.errors import ModelFileError
from dlcli.inference.inputs import InputFile, peek
from dlcli.model import artifact
from dlcli.model.artifact import ModelInfo

SAMPLED_INPUTS = 16  # input files looked at (headers only) to tell which models can take them


def _fit(info: ModelInfo, found: InputFile) -> int:
    """How well a model takes an input: 4 exactly; an image model 3 at the same size, 2 in the
    same colours, 1 otherwise (images are converted and resized to what it takes); 0 not at
    all (3 for a model of rows that takes the file's columns)."""
    text = info.columns is not None and list(info.columns.kinds.values()) == ["text"]
    if found.text:  # a .txt file: a model of one text column
        return 4 if text else 0
    if info.inputs is not None:  # several inputs: .csv files whose header names their columns
        needed = [name for record in info.inputs.values() for name in record.feature_names or []]
        takes_columns = bool(needed and found.columns and set(needed) <= set(found.columns))
        return 3 if takes_columns else 0
    assert info.input is not None
    image, shape = info.input.image, info.input.shape
    if found.image is not None:
        if image is None:
            return 0
        height, width, grey = found.image
        same_size = (height, width) == (image.height, image.width)
        same_colours = grey == (image.channels == 1)
        return 4 if same_size and same_colours else 3 if same_size else 2 if same_colours else 1
    if image is not None or found.shape is None:
        return 0
    if found.columns is not None and info.input.feature_names:
        return 3 * all(name in found.columns for name in info.input.feature_names)
    rows = found.shape if found.columns is not None else found.shape[-len(shape) :]
    return 3 * (len(found.shape) >= len(shape) and list(rows) == shape)


def choose_model(files: list[Path], runs_dir: Path) -> tuple[artifact.ModelFile, str]:
    """The newest `runs_dir/*/model.keras` that takes `files`, decided from dlcli.json alone.

    A model that takes the images at their size and in their colours comes before one that
    takes their size only, which comes before one that takes their colours only; models that
    take rows must have the features of the .csv header (or as many columns) or the .npy shape.

    Returns:
        The chosen model file and what it takes, e.g. "28x28 grayscale images".

    Raises:
        ModelFileError: no model under `runs_dir`, or none takes the inputs (naming what the
            newest take).
    """
    paths = sorted(
        (path for path in runs_dir.glob("*/model.keras") if path.is_file()),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    if not paths:
        raise ModelFileError(
            f"no --model given and no {runs_dir}/*/model.keras found; "
            "train one with `dlcli train SPEC` or pass --model PATH"
        )
    found = [peeked for path in files[:SAMPLED_INPUTS] if (peeked := peek(path)) is not None]
    candidates: list[artifact.ModelFile] = []
    for path in paths:
        with suppress(ModelFileError):
            checked = artifact.inspect(path)
            candidates.append(checked)
    best, best_fit = None, 0
    for checked in candidates:
        assert checked.info is not None
        fit = min((_fit(checked.info, item) for item in found), default=3)
        if fit > best_fit:
            best, best_fit = checked, fit
    if best is not None and best.info is not None:
        return best, best.info.describe()
    if not candidates:
        artifact.inspect(paths[0])  # raises: why the newest model cannot be used
    newest = "; ".join(
        f"{checked.path} takes {checked.info.describe()}"
        for checked in candidates[:3]
        if checked.info is not None
    )
    wanted = found[0].describe() if found else "these inputs"
    raise ModelFileError(f"no model in {runs_dir}/ takes {wanted}: {newest}; pass --model PATH")
