"""`predict` on inputs held in memory gives what it gives on the same files: image bytes, a
decoded image, arrays, CSV bytes and rows as mappings, with no temporary file written."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlcli.errors import InputError, InputTooLargeError
from dlcli.inference.inputs import MemoryInput
from dlcli.inference.predict import open_predictor, predict

from .helpers import TinyModels, bar_image


def top(result: object) -> list[tuple[str | None, list[str], list[float]]]:
    return [(p.input, p.labels, p.probabilities) for p in result.predictions]  # type: ignore[attr-defined]


def test_images_in_memory_predict_as_files(tiny_models: TinyModels, isolated: Path) -> None:
    """PNG bytes and a PIL image give the file's labels and probabilities; an array of the
    framed pixels gives them too."""
    image = bar_image(1, np.random.default_rng(3))
    image.save("bar.png")
    from_file = predict(["bar.png"], model_path=tiny_models.bars)
    before = set(Path().iterdir())
    predictor = open_predictor(tiny_models.bars)
    given = [
        MemoryInput("bar.png", Path("bar.png").read_bytes()),
        MemoryInput("bar.png", Image.open("bar.png")),
        MemoryInput("bar.png", np.asarray(image)[..., None]),
    ]
    result = predictor.predict(given)
    assert set(Path().iterdir()) == before, "nothing is written"
    (name, labels, probabilities), *_ = top(from_file)
    assert [p.labels for p in result.predictions] == [labels] * 3
    for prediction in result.predictions:
        assert prediction.probabilities == pytest.approx(probabilities, abs=1e-6)
    assert [p.row for p in result.predictions] == [None, None, 0]


def test_rows_in_memory_predict_as_a_csv_file(tiny_models: TinyModels, isolated: Path) -> None:
    """CSV bytes and rows as mappings give the CSV file's predictions, row by row."""
    text = "a,b\n0.5,0.25\n-1.0,0.5\n"
    Path("rows.csv").write_text(text)
    from_file = top(predict(["rows.csv"], model_path=tiny_models.answer))
    predictor = open_predictor(tiny_models.answer)
    from_bytes = top(predictor.predict([MemoryInput("rows.csv", text.encode())]))
    rows = [{"a": 0.5, "b": 0.25}, {"b": 0.5, "a": -1.0}]
    from_rows = top(predictor.predict([MemoryInput("rows.csv", rows)]))
    for got in (from_bytes, from_rows):
        assert [labels for _, labels, _ in got] == [labels for _, labels, _ in from_file]
        for (_, _, mine), (_, _, theirs) in zip(got, from_file, strict=True):
            assert mine == pytest.approx(theirs, abs=1e-6)
    with pytest.raises(InputError, match=r"row 0: has no column b \(the model takes a, b\)"):
        predictor.predict([MemoryInput("form", {"a": 1.0})])


def test_an_oversized_image_in_memory_is_refused_as_too_large(tiny_models: TinyModels) -> None:
    buffer = io.BytesIO()
    Image.new("1", (8000, 6000)).save(buffer, format="PNG")
    with pytest.raises(InputTooLargeError, match="bomb.png: the image is over the 40,000,000"):
        open_predictor(tiny_models.bars).predict([MemoryInput("bomb.png", buffer.getvalue())])
