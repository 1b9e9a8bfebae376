"""Tests of dlcli.data.decode: safe decoding, every input mode, polarity and the MNIST framing.

All images are generated here, a few pixels to 200x150; the decompression bomb is a PNG header
that claims 30000x30000 pixels, which must be refused from the header alone.
"""

from __future__ import annotations

import io
import resource
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from dlcli.data.common import ImageInfo
from dlcli.data.decode import MAX_PIXELS, estimate_polarity, open_image, to_array
from dlcli.errors import InputError

MNIST = ImageInfo(28, 28, 1, "light_on_dark", "mnist")


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG file whose header claims `width` x `height` 8-bit grey pixels but holds no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )
    return path


def noise(mode: str, size: tuple[int, int] = (64, 64)) -> Image.Image:
    """Random pixels, which compress badly: half of such a file holds half of the image."""
    channels = len(Image.new(mode, (1, 1)).getbands())
    values = np.random.default_rng(0).integers(0, 256, (size[1], size[0], channels), np.uint8)
    return Image.fromarray(values.squeeze(axis=2) if channels == 1 else values).convert(mode)


def truncated(path: Path, image: Image.Image, format: str) -> Path:
    """`image` saved in `format`, of which only the first half of the bytes is kept."""
    buffer = io.BytesIO()
    image.save(buffer, format)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def seven(background: int = 255, ink: int = 0) -> Image.Image:
    """A digit 7 drawn with two strokes, off centre on a 200x150 canvas."""
    image = Image.new("L", (200, 150), background)
    ImageDraw.Draw(image).line([(115, 25), (185, 25), (140, 135)], fill=ink, width=9)
    return image


def centre_of_mass(pixels: np.ndarray) -> tuple[float, float]:
    """(row, column) of the centre of mass of a 2-D array, in pixel indices."""
    values = pixels.astype(np.float64)
    mass = values.sum()
    return (
        float(values.sum(axis=1) @ np.arange(values.shape[0]) / mass),
        float(values.sum(axis=0) @ np.arange(values.shape[1]) / mass),
    )


def ink_box(pixels: np.ndarray) -> tuple[int, int]:
    """Height and width of the bounding box of the non-zero pixels."""
    rows = np.flatnonzero(pixels.any(axis=1))
    columns = np.flatnonzero(pixels.any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(columns[-1] - columns[0] + 1)


# ---------------------------------------------------------------------------------------------
# open_image: what is refused, and how


def write_text(path: Path) -> Path:
    path.write_text("this is not a picture\n")
    return path


def write_empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def write_tiff(path: Path) -> Path:
    Image.new("L", (4, 4)).save(path, "TIFF")
    return path


@pytest.mark.parametrize(
    ("name", "make", "problem"),
    [
        ("missing.png", lambda path: path, "no such file"),
        ("photo.png", write_text, "not an image (cannot identify image file)"),
        ("empty.jpg", write_empty, "an empty file (0 bytes), not an image"),
        ("scan.tiff", write_tiff, "TIFF images are not supported; use PNG, JPEG, BMP, GIF or WebP"),
        (
            "big.png",
            lambda path: png_header(path, 30000, 30000),
            "the image is over the 40,000,000-pixel limit (decompression bomb?)",
        ),
        (
            "long.png",
            lambda path: png_header(path, MAX_PIXELS + 1, 1),
            "the image is over the 40,000,000-pixel limit (decompression bomb?)",
        ),
        (
            "cut.png",
            lambda path: truncated(path, noise("RGB"), "PNG"),
            "truncated or corrupt image data",
        ),
        (
            "cut.jpg",
            lambda path: truncated(path, noise("RGB"), "JPEG"),
            "truncated or corrupt image data",
        ),
        (
            "cut.gif",
            lambda path: truncated(path, noise("L"), "GIF"),
            "truncated or corrupt image data",
        ),
    ],
)
def test_open_image_refuses_with_one_line(
    tmp_path: Path, name: str, make: object, problem: str
) -> None:
    path = make(tmp_path / name)  # type: ignore[operator]
    with pytest.raises(InputError) as raised:
        open_image(path)
    assert str(raised.value) == f"{path}: {problem}"


def test_open_image_refuses_a_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError) as raised:
        open_image(tmp_path)
    assert str(raised.value) == f"{tmp_path}: cannot read the file (Is a directory)"


def test_a_decompression_bomb_is_refused_from_its_header_fast_and_small(tmp_path: Path) -> None:
    path = png_header(tmp_path / "bomb.png", 30000, 30000)
    memory_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(InputError, match="decompression bomb"):
        open_image(path)
    assert time.perf_counter() - start < 1.0
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - memory_before
    assert grown_kib < 64 * 1024  # the 900 MB of pixels were never allocated


def test_the_pixel_limit_itself_is_allowed(tmp_path: Path) -> None:
    """Exactly MAX_PIXELS passes the size check; this header-only file then fails as truncated."""
    path = png_header(tmp_path / "limit.png", 8000, MAX_PIXELS // 8000)
    with pytest.raises(InputError) as raised:
        open_image(path)
    assert str(raised.value) == f"{path}: truncated or corrupt image data"


# ---------------------------------------------------------------------------------------------
# open_image: formats and modes


@pytest.mark.parametrize(("format", "suffix"), [("PNG", "png"), ("BMP", "bmp"), ("WEBP", "webp")])
def test_lossless_formats_round_trip(tmp_path: Path, format: str, suffix: str) -> None:
    image = noise("RGB", (7, 5))
    path = tmp_path / f"image.{suffix}"
    image.save(path, format, **({"lossless": True} if format == "WEBP" else {}))
    opened = open_image(path)
    assert opened.mode == "RGB"
    assert np.array_equal(np.asarray(opened), np.asarray(image))


def test_jpeg_opens_as_rgb(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (30, 20), (200, 40, 40)).save(path, quality=95)
    opened = open_image(path)
    assert (opened.mode, opened.size) == ("RGB", (30, 20))
    assert np.abs(np.asarray(opened).astype(int) - [200, 40, 40]).max() <= 3


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """Orientation 6 means: turn 90 degrees clockwise to show; the left half goes on top."""
    image = Image.new("L", (40, 20), 255)
    image.paste(0, (0, 0, 20, 20))  # left half black
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif, quality=95)
    pixels = np.asarray(open_image(path))
    assert pixels.shape == (40, 20)
    assert pixels[:18].max() < 30 and pixels[22:].min() > 225


def test_sixteen_bit_grey_is_scaled_to_eight_bits(tmp_path: Path) -> None:
    values = np.array([[0, 257, 128 * 257, 65535, 65534]], dtype=np.uint16)
    path = tmp_path / "depth.png"
    Image.fromarray(values).save(path)
    opened = open_image(path)
    assert opened.mode == "L"
    assert np.asarray(opened).tolist() == [[0, 1, 128, 255, 255]]


def test_bilevel_cmyk_and_grey_alpha_modes(tmp_path: Path) -> None:
    Image.new("1", (3, 2), 1).save(tmp_path / "bilevel.png")
    Image.new("CMYK", (3, 2), (0, 0, 0, 0)).save(tmp_path / "print.jpg")
    Image.new("LA", (3, 2), (10, 128)).save(tmp_path / "grey.png")
    assert np.asarray(open_image(tmp_path / "bilevel.png")).tolist() == [[255] * 3] * 2
    cmyk = open_image(tmp_path / "print.jpg")
    assert cmyk.mode == "RGB" and np.asarray(cmyk).min() > 250  # no ink is white
    assert open_image(tmp_path / "grey.png").mode == "LA"


def test_palette_with_transparency_becomes_alpha_and_lies_on_white(tmp_path: Path) -> None:
    """A dark stroke on a transparent canvas whose hidden colour is black too."""
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 20, 20, 20] + [0] * 762)
    ImageDraw.Draw(image).line([(4, 1), (4, 6)], fill=1)
    path = tmp_path / "icon.png"
    image.save(path, transparency=0)
    opened = open_image(path)
    assert opened.mode == "RGBA"
    pixels = to_array(opened, ImageInfo(8, 8, 1), raw=True)[..., 0]
    assert pixels[0, 0] == 255 and pixels[3, 4] == 20


def test_light_content_on_transparency_lies_on_black() -> None:
    image = Image.new("RGBA", (8, 8), (255, 255, 255, 0))
    ImageDraw.Draw(image).line([(4, 1), (4, 6)], fill=(250, 250, 250, 255))
    pixels = to_array(image, ImageInfo(8, 8, 3), raw=True)
    assert pixels[0, 0].tolist() == [0, 0, 0] and pixels[3, 4].tolist() == [250, 250, 250]


def test_rgba_models_keep_the_alpha_channel() -> None:
    image = Image.new("RGBA", (8, 8), (10, 20, 30, 0))
    pixels = to_array(image, ImageInfo(8, 8, 4), raw=True)
    assert pixels.shape == (8, 8, 4) and pixels[0, 0].tolist() == [10, 20, 30, 0]


def test_gif_gives_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (6, 6), colour) for colour in ("red", "blue")]
    path = tmp_path / "blink.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    assert np.asarray(open_image(path))[0, 0].tolist() == [255, 0, 0]


# ---------------------------------------------------------------------------------------------
# to_array


@pytest.mark.parametrize(("channels", "shape"), [(1, (5, 9, 1)), (3, (5, 9, 3)), (4, (5, 9, 4))])
def test_to_array_gives_uint8_of_the_model_shape(channels: int, shape: tuple[int, ...]) -> None:
    pixels = to_array(noise("RGB", (30, 20)), ImageInfo(5, 9, channels))
    assert pixels.shape == shape and pixels.dtype == np.uint8


def test_to_array_refuses_other_channel_counts() -> None:
    with pytest.raises(InputError) as raised:
        to_array(Image.new("L", (4, 4)), ImageInfo(4, 4, 2))
    assert str(raised.value) == (
        "the model takes images with 2 channels; dlcli reads images with "
        "1 (grayscale), 3 (RGB) or 4 (RGBA) channels"
    )


def test_estimate_polarity() -> None:
    assert estimate_polarity(np.asarray(seven())) == "dark_on_light"
    assert estimate_polarity(np.asarray(seven(background=0, ink=255))) == "light_on_dark"
    assert estimate_polarity(np.full((20, 20), 128, np.uint8)) is None
    faint = np.asarray(seven(background=128, ink=120))
    assert estimate_polarity(faint) is None


def test_dark_on_light_input_is_inverted_for_a_light_on_dark_model() -> None:
    info = ImageInfo(28, 28, 1, "light_on_dark")
    pixels = to_array(seven(), info)[..., 0]
    assert pixels[0, 0] == 0 and pixels.max() > 200
    assert to_array(seven(), ImageInfo(28, 28, 1, "dark_on_light"))[0, 0, 0] == 255
    assert to_array(seven(background=0, ink=255), info)[0, 0, 0] == 0


def test_mnist_framing_of_a_drawn_seven() -> None:
    pixels = to_array(seven(), MNIST)[..., 0]
    assert pixels.shape == (28, 28)
    assert pixels[0].max() == 0 and pixels[-1].max() == 0  # light on dark, empty margins
    assert pixels.max() == 255  # strokes stretched to white
    assert max(ink_box(pixels)) == 20
    row, column = centre_of_mass(pixels)
    assert abs(row - 14) <= 0.5 and abs(column - 14) <= 0.5


def test_mnist_framing_of_a_photographed_seven() -> None:
    """Grey paper lit unevenly, sensor noise, a speck of dust and JPEG artefacts."""
    paper = seven().convert("F")
    values = np.asarray(paper) * 0.6 + 70  # ink at 70, paper at 223
    rows, columns = np.indices(values.shape)
    values = values - 0.25 * columns + np.random.default_rng(1).normal(0, 4, values.shape)
    values[10:13, 10:13] = 60  # dust, far from the digit
    buffer = io.BytesIO()
    Image.fromarray(np.clip(values, 0, 255).astype(np.uint8)).convert("RGB").save(
        buffer, "JPEG", quality=60
    )
    pixels = to_array(Image.open(buffer), MNIST)[..., 0]
    clean = to_array(seven(), MNIST)[..., 0]
    assert max(ink_box(pixels)) == 20
    row, column = centre_of_mass(pixels)
    assert abs(row - 14) <= 0.5 and abs(column - 14) <= 0.5
    assert np.corrcoef(pixels.ravel(), clean.ravel())[0, 1] > 0.9


def test_mnist_framing_of_a_blank_page_is_an_empty_field() -> None:
    assert not to_array(Image.new("L", (50, 40), 230), MNIST).any()


def test_raw_only_converts_and_resizes() -> None:
    pixels = to_array(seven(), MNIST, raw=True)
    resized = seven().resize((28, 28), Image.Resampling.LANCZOS, reducing_gap=3.0)
    assert np.array_equal(pixels[..., 0], np.asarray(resized))
    assert pixels[0, 0, 0] == 255  # still dark on light


def test_mnist_framing_fills_other_channel_counts() -> None:
    info = ImageInfo(28, 28, 3, "light_on_dark", "mnist")
    pixels = to_array(seven(), info)
    assert pixels.shape == (28, 28, 3)
    assert np.array_equal(pixels[..., 0], pixels[..., 2])


def test_corrupt_exif_metadata_is_ignored_quietly(tmp_path: Path) -> None:
    """PIL warns about it; predict must not print that, and the pixels are fine."""
    path = tmp_path / "odd.jpg"
    broken_exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x0f\0\x02\0\0\xff\xff\0\0\0\0"
    Image.new("RGB", (8, 6)).save(path, exif=broken_exif)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert open_image(path).size == (8, 6)
