"""The one path from an image file to model input, shared by training and `dlcli predict`.

Training from image folders and predicting both decode with `open_image` and convert with
`to_array`, so the two cannot drift apart. `open_image` refuses, before decoding, what is not a
PNG, JPEG, BMP, GIF or WebP picture of at most `MAX_PIXELS` pixels, and turns truncated or
corrupt data into one line naming the file. `to_array` makes an image look like the training
images: their size and channels, their polarity (light ink on a dark background or dark on
light) and, for models trained on MNIST, the MNIST framing of the digit, with its strokes made
as wide as MNIST's.

`open_image` takes a file, or the bytes of one held in memory (an upload), named by its path.
PIL's decompression-bomb warning is not needed (the pixel limit is checked from the header), and
its notes on odd metadata are silenced: by filters installed once, when this module is imported,
and again inside `open_image` through `warnings.catch_warnings` (whatever filters the caller
set). `catch_warnings` is not thread-safe, so `open_image` holds a lock around it (any thread
may call it, one at a time); `read_image`, the same without it, may be called from several
threads at once (training decodes a batch's files in parallel).
"""

from __future__ import annotations

import io
import struct
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dlcli.data.common import ImageInfo, Polarity
from dlcli.errors import InputError, InputTooLargeError

MAX_PIXELS = 40_000_000
FORMATS = ("PNG", "JPEG", "MPO", "BMP", "GIF", "WEBP")  # MPO: the multi-picture JPEG of cameras
MODES = {1: "L", 3: "RGB", 4: "RGBA"}
WORKING_SIDE = 512  # MNIST framing works on a copy whose longer side is at most this
MIN_CONTRAST = 32  # grey levels between ink and background for the ink to count as ink
MNIST_BOX = 20 / 28  # MNIST digits fit a 20x20 box inside the 28x28 field
SPECK_FRACTION = 0.05  # a run of ink lines holding less of the ink than this is a stray speck
# The 10th and 90th percentiles of `stroke_width` over MNIST's 60,000 training images (median
# 2.51 px; tests/test_stroke_width.py measures them again): framed strokes outside this range
# are thinned or thickened to its nearer end.
MNIST_STROKE_WIDTHS = (1.95, 3.40)
FINE = 4  # strokes are thinned or thickened on a copy this many times MNIST's box
MAX_RADIUS = 8  # the widest disc they are eroded or dilated by, in pixels of that copy

# PIL checks the size in the header when it opens a file: it warns above this and raises above
# twice this. `open_image` checks the size itself too, so the limit is exactly this. Filters set
# once, rather than `warnings.catch_warnings` per call, which is not thread-safe.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL(\..*)?")  # odd metadata

# What PIL's decoders raise on truncated or corrupt data.
_CORRUPT = (OSError, SyntaxError, ValueError, EOFError, struct.error)
_SIXTEEN_BIT = ("I", "I;16", "I;16L", "I;16B", "I;16N")
_WARNINGS_LOCK = threading.Lock()  # warnings.catch_warnings changes process-wide state


def open_image(path: Path | str, data: bytes | None = None) -> Image.Image:
    """Decode an image file safely into mode L, LA, RGB or RGBA, turned upright as its EXIF says.

    The format and the size are checked from the header, before any pixel is decoded. Of an
    animation (GIF, WebP, APNG) the first frame is read. 16-bit grey is scaled to 8 bits, and
    palette or colour-key transparency becomes an alpha channel.

    Args:
        path: The image file; with `data`, only the name used in messages.
        data: The bytes of an encoded image held in memory (e.g. an upload), decoded without
            touching the file system.

    Raises:
        InputError: one line naming the path and the problem: no such file, not an image, an
            unsupported format, over `MAX_PIXELS` pixels, or truncated or corrupt data.
    """
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # PIL's notes on odd metadata, e.g. EXIF
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked by size below
        return _normalized(_decoded(path, data))


def read_image(path: Path) -> Image.Image:
    """`open_image` for several threads at once: PIL's warnings are left to the filters this
    module installs when imported.

    Raises:
        InputError: as `open_image`.
    """
    return _normalized(_decoded(path))


def normalized(image: Image.Image) -> Image.Image:
    """An image decoded elsewhere (a PIL image given to predict) in mode L, LA, RGB or RGBA,
    with the size limit of `open_image`.

    Raises:
        InputTooLargeError: the image is over `MAX_PIXELS` pixels.
    """
    if image.width * image.height > MAX_PIXELS:
        raise InputTooLargeError(
            f"the image is over the {MAX_PIXELS:,}-pixel limit ({image.width}x{image.height})"
        )
    return _normalized(image)


def check_header(path: Path, data: bytes) -> None:
    """Refuse, as `open_image` would, a file whose header (in `data`, the file's bytes) is not
    that of a supported image of at most `MAX_PIXELS` pixels; no pixel is decoded.

    Raises:
        InputError: one line naming the path and the problem.

    Example:

    >>> check_header(Path("photos/cat/empty.jpg"), b"")
    Traceback (most recent call last):
    ...
    dlcli.errors.InputError: photos/cat/empty.jpg: an empty file (0 bytes), not an image
    """
    with _opened(path, io.BytesIO(data), empty=not data):
        pass


def _opened(
    path: Path | str, source: Path | str | io.BytesIO, *, empty: bool = False
) -> Image.Image:
    """The image file opened (its header read) and checked: format and size."""
    try:
        image = Image.open(source)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (IsADirectoryError, PermissionError) as error:
        raise InputError(f"{path}: cannot read the file ({error.strerror})") from None
    except UnidentifiedImageError:
        if empty or (not isinstance(source, io.BytesIO) and _empty(Path(source))):
            raise InputError(f"{path}: an empty file (0 bytes), not an image") from None
        raise InputError(f"{path}: not an image (cannot identify image file)") from None
    except Image.DecompressionBombError:
        raise InputTooLargeError(_too_large(path)) from None
    except _CORRUPT:
        raise InputError(f"{path}: truncated or corrupt image data") from None
    if image.width * image.height > MAX_PIXELS:
        image.close()
        raise InputTooLargeError(_too_large(path))
    if image.format not in FORMATS:
        image.close()
        raise InputError(
            f"{path}: {image.format} images are not supported; use PNG, JPEG, BMP, GIF or WebP"
        )
    return image


def _empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def _decoded(path: Path | str, data: bytes | None = None) -> Image.Image:
    """Open, check and decode an image file (first frame), or its bytes held in memory, raising
    InputError for any problem."""
    source = path if data is None else io.BytesIO(data)
    image = _opened(path, source, empty=data is not None and not data)
    with image:
        try:
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
        except _CORRUPT:
            raise InputError(f"{path}: truncated or corrupt image data") from None
    return image


def _too_large(path: Path | str) -> str:
    return f"{path}: the image is over the {MAX_PIXELS:,}-pixel limit (decompression bomb?)"


def _normalized(image: Image.Image) -> Image.Image:
    """The image in mode L, LA, RGB or RGBA."""
    if image.mode in _SIXTEEN_BIT:
        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8))
    if image.mode in ("L", "LA", "RGB", "RGBA") and "transparency" not in image.info:
        return image
    if image.has_transparency_data:
        return image.convert("RGBA")
    return image.convert("L" if image.mode == "1" else "RGB")


def to_array(image: Image.Image, info: ImageInfo, *, raw: bool = False) -> np.ndarray:
    """The image as uint8 pixels (0..255) of shape (height, width, channels) of `info`.

    Transparent pixels are laid on white when the visible content is dark and on black when it
    is light, so that the content stays visible: a dark digit on a transparent canvas becomes
    dark on white, a white one becomes white on black. Unless `raw`:

    - when `info.polarity` is known and the image's own polarity (`estimate_polarity`) is the
      opposite, the image is inverted (the alpha channel, if any, is kept);
    - with `info.framing == "mnist"` the image is framed as the MNIST digits were: background
      removed, contrast stretched, cropped to the ink, fitted into a 20x20 box (aspect ratio
      kept, anti-aliased) and placed in the 28x28 field with its centre of mass at (14, 14).
      MNIST framing implies light ink on a dark background;
    - with `info.framing == "mnist-stroke"`, which training on MNIST records (models that
      record "mnist" keep that framing exactly), the image is framed so too, and the digit
      made more like MNIST's: ink alone inside a loop (the dot of a dotted zero) is cleared,
      and strokes thinner or thicker than those of 80% of MNIST's digits are thickened or
      thinned to their range (`stroke_width`, `MNIST_STROKE_WIDTHS`).

    With `raw` the image is only converted to the channels and resized; training from image
    folders decodes that way.
    """
    mode = MODES.get(info.channels)
    if mode is None:
        raise InputError(
            f"the model takes images with {info.channels} channels; dlcli reads images with "
            "1 (grayscale), 3 (RGB) or 4 (RGBA) channels"
        )
    if info.framing in ("mnist", "mnist-stroke") and not raw:
        gray = _with_channels(image, "L")
        factor = -(-max(gray.size) // WORKING_SIDE)
        working = np.asarray(gray.reduce(factor) if factor > 1 else gray)
        framed = _frame_mnist(
            working, info.height, info.width, normalise_strokes=info.framing == "mnist-stroke"
        )
        return np.array(Image.fromarray(framed).convert(mode)).reshape(framed.shape + (-1,))
    image = _with_channels(image, mode)
    if image.size != (info.width, info.height):
        image = image.resize((info.width, info.height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    pixels = np.array(image).reshape(info.height, info.width, info.channels)
    if not raw and info.polarity is not None:
        levels = pixels[..., 0] if info.channels == 1 else np.asarray(image.convert("L"))
        found = estimate_polarity(levels)
        if found is not None and found != info.polarity:
            pixels[..., :3] = 255 - pixels[..., :3]
    return pixels


def _with_channels(image: Image.Image, mode: str) -> Image.Image:
    """The image in `mode`; for L and RGB, transparency is laid on a background that contrasts."""
    if mode != "RGBA" and image.mode in ("LA", "RGBA") and _lowest(image.getchannel("A")) < 255:
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64)
        luminance = np.asarray(rgba.convert("L"), dtype=np.float64)
        dark_content = (luminance * alpha).sum() < 128 * alpha.sum() or not alpha.any()
        level = 255 if dark_content else 0
        image = Image.alpha_composite(
            Image.new("RGBA", rgba.size, (level, level, level, 255)), rgba
        )
    return image if image.mode == mode else image.convert(mode)


def _lowest(band: Image.Image) -> float:
    """The lowest value of a one-band image."""
    lowest, _ = band.getextrema()
    assert isinstance(lowest, int | float)  # one band: (lowest, highest), not one pair per band
    return lowest


def _border_mask(shape: tuple[int, ...]) -> np.ndarray:
    """A frame around the image, 1/32 of its shorter side wide (at least one pixel)."""
    width = max(1, min(shape[:2]) // 32)
    mask = np.ones(shape[:2], dtype=bool)
    mask[width:-width, width:-width] = False
    return mask


def estimate_polarity(gray: np.ndarray) -> Polarity | None:
    """Whether the content of a grayscale image is lighter or darker than its background.

    The background is the median of a frame around the image; the content is whichever of the
    darkest and the lightest pixels (0.5th and 99.5th percentiles) lies further from it, by at
    least `MIN_CONTRAST` grey levels and 1.5 times as far as the other. None when neither does:
    a blank image, or a photograph with no clear ink.
    """
    background = float(np.median(gray[_border_mask(gray.shape)]))
    darkest, lightest = np.percentile(gray, [0.5, 99.5])
    below, above = background - darkest, lightest - background
    if above >= MIN_CONTRAST and above >= 1.5 * below:
        return "light_on_dark"
    if below >= MIN_CONTRAST and below >= 1.5 * above:
        return "dark_on_light"
    return None


def _frame_mnist(
    gray: np.ndarray, height: int, width: int, *, normalise_strokes: bool = False
) -> np.ndarray:
    """Frame the ink of a grayscale image as in MNIST: light on dark, 20x20, centred by mass.

    With `normalise_strokes` the strokes are also made like MNIST's (`_normalised_strokes`).
    """
    if estimate_polarity(gray) == "dark_on_light":
        gray = 255 - gray
    values = gray.astype(np.float64)
    mask = _border_mask(values.shape)
    grid = np.indices(values.shape)  # indexed, not unpacked: numpy's stubs iterate to scalars
    rows, columns = grid[0], grid[1]
    border = values[mask]
    spread = 1.4826 * np.median(np.abs(border - np.median(border))) + 1.0
    background = np.abs(border - np.median(border)) <= 3 * spread  # ink on the border left out
    # A plane fitted to the background follows light falling off across a photographed page.
    design = np.column_stack([np.ones(mask.sum()), rows[mask], columns[mask]])[background]
    plane = np.linalg.lstsq(design, border[background], rcond=None)[0]
    residual = values - (plane[0] + plane[1] * rows + plane[2] * columns)
    noise = 1.4826 * np.median(np.abs(residual[mask][background]))
    ink = np.clip(residual, 0, None)
    peak = float(np.percentile(ink, 99.9))
    canvas = np.zeros((height, width), dtype=np.uint8)
    if peak < MIN_CONTRAST:
        return canvas  # no ink: an empty field
    # Faint noise, JPEG artefacts and paper texture fall under the threshold; the strokes are
    # stretched so that their cores are white, as in MNIST.
    threshold = min(max(0.2 * peak, 4 * noise), 0.4 * peak)
    strokes = np.clip((ink - threshold) / (0.6 * peak - threshold), 0, 1) * 255
    crop = _ink_box(strokes).astype(np.float32)
    if normalise_strokes:
        crop = _normalised_strokes(crop, height, width)
    return _placed(crop, height, width)


def _placed(crop: np.ndarray, height: int, width: int) -> np.ndarray:
    """The cropped strokes fitted into MNIST's box and centred by mass in the field, as uint8."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    scale = round(min(height, width) * MNIST_BOX) / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    digit = np.clip(
        np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS)), 0, 255
    )
    mass = digit.sum()
    centre_row = digit.sum(axis=1) @ np.arange(digit.shape[0]) / mass
    centre_column = digit.sum(axis=0) @ np.arange(digit.shape[1]) / mass
    # Shift by whole pixels, as MNIST did (its centres of mass lie within 0.5 px of (14, 14)),
    # keeping the digit inside the field.
    top = int(np.clip(np.floor(height / 2 - centre_row + 0.5), 0, height - digit.shape[0]))
    left = int(np.clip(np.floor(width / 2 - centre_column + 0.5), 0, width - digit.shape[1]))
    canvas[top : top + digit.shape[0], left : left + digit.shape[1]] = np.round(digit)
    return canvas


def stroke_width(pixels: np.ndarray) -> float:
    """The mean width in pixels of the strokes in a grayscale image of light ink on black.

    Twice the ink over the length of its outline: a stroke of width w and length L covers wL
    and is outlined by 2L (plus its ends, so short thick strokes read a little thin). Summed
    over every grey level (the coarea formula) the outline is the sum of the gradient's
    magnitude, so anti-aliased edges count as they should. The image is enlarged 4x first, for
    the gradient to follow edges within a pixel. 0 for an empty image.

    Example:

    >>> band = np.zeros((28, 28))
    >>> band[12:15] = 255  # a stroke 3 px wide, across the whole image: it has no ends
    >>> round(stroke_width(band), 2)
    3.0
    """
    height, width = pixels.shape
    enlarged = Image.fromarray(np.asarray(pixels, dtype=np.float32)).resize(
        (4 * width, 4 * height), Image.Resampling.BILINEAR
    )
    values = np.clip(np.asarray(enlarged, dtype=np.float64), 0, 255)
    outline = np.hypot(*np.gradient(values)).sum()
    return float(2 * values.sum() / outline / 4) if outline > 0 else 0.0


def _normalised_strokes(crop: np.ndarray, height: int, width: int) -> np.ndarray:
    """The cropped strokes, cleared of islands and made about as wide as MNIST's when framed.

    The strokes are drawn on a copy `FINE` times the size of MNIST's box, and ink alone inside
    a loop is cleared (`_without_islands`). Strokes whose framed width (`stroke_width`) lies
    within `MNIST_STROKE_WIDTHS` are then kept; others are eroded (thinned) or dilated
    (thickened) by discs of growing radius, each result framed and measured, until the width
    reaches the nearer end of that range; the closest is kept.
    """
    side = round(min(height, width) * MNIST_BOX) * FINE
    scale = side / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    resized = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS))
    fine = np.pad(np.clip(resized, 0, 255), MAX_RADIUS)
    fine = _without_islands(fine)
    best = _ink_box(fine)
    found = stroke_width(_placed(best, height, width))
    low, high = MNIST_STROKE_WIDTHS
    if low <= found <= high:
        return best
    target, grow = (low, True) if found < low else (high, False)
    gap = abs(found - target)
    for radius in np.arange(1, MAX_RADIUS + 0.25, 0.5):
        changed = _morphed(fine, float(radius), grow)
        if changed.max() <= 0:
            break
        candidate = _ink_box(changed)
        measured = stroke_width(_placed(candidate, height, width))
        if abs(measured - target) < gap:
            best, gap = candidate, abs(measured - target)
        if (measured >= target) == grow:
            break
    return best


def _without_islands(strokes: np.ndarray) -> np.ndarray:
    """The strokes without ink that lies inside a loop, apart from the loop: the dot of a dotted
    zero, a speck inside an 8. No digit is written that way.

    The loops are found on a copy at half the size, which is plenty to tell them apart.
    """
    half = Image.fromarray(strokes).reduce(2)
    ink = np.asarray(half) >= 128
    outside = _flooded(~ink, _border_mask(ink.shape) & ~ink)
    joined = _flooded(ink, ink & _grown(outside, 1))
    islands = ink & ~joined
    if not islands.any():
        return strokes
    cleared = _grown(islands, 2) & ~_grown(joined, 1)
    full = np.asarray(
        Image.fromarray(cleared).resize(strokes.shape[::-1], Image.Resampling.NEAREST)
    )
    return np.where(full, 0, strokes).astype(strokes.dtype)


def _grown(mask: np.ndarray, steps: int) -> np.ndarray:
    """The mask dilated by `steps` pixels (8-connected)."""
    for _ in range(steps):
        rows = mask.copy()
        rows[1:] |= mask[:-1]
        rows[:-1] |= mask[1:]
        mask = rows.copy()
        mask[:, 1:] |= rows[:, :-1]
        mask[:, :-1] |= rows[:, 1:]
    return mask


def _flooded(region: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The pixels of `region` joined (8-connected, within the region) to one of `seeds`."""
    filled = seeds & region
    while True:
        grown = _grown(filled, 1) & region
        if (grown == filled).all():
            return filled
        filled = grown


def _morphed(pixels: np.ndarray, radius: float, grow: bool) -> np.ndarray:
    """Grey-level dilation (`grow`) or erosion of an image by a disc of `radius` pixels."""
    reach = int(radius)
    padded = np.pad(pixels, reach)
    height, width = pixels.shape
    combine = np.maximum if grow else np.minimum
    result = pixels.copy()
    for row in range(-reach, reach + 1):
        for column in range(-reach, reach + 1):
            if 0 < row * row + column * column <= radius * radius:
                shifted = padded[
                    reach + row : reach + row + height, reach + column : reach + column + width
                ]
                combine(result, shifted, out=result)
    return result


def _ink_box(strokes: np.ndarray) -> np.ndarray:
    """The strokes cropped to their ink, stray specks aside (`_ink_span`)."""
    top, bottom = _ink_span(strokes.sum(axis=1))
    left, right = _ink_span(strokes[top:bottom].sum(axis=0))
    return strokes[top:bottom, left:right]


def _ink_span(profile: np.ndarray) -> tuple[int, int]:
    """Start and end of the ink along one axis, given the ink summed across the other axis.

    The profile splits into runs of lines with ink, separated by empty lines; runs holding
    less than `SPECK_FRACTION` of the ink are stray specks and left out, unless none is larger.
    """
    filled = np.concatenate(([False], profile > 0, [False]))
    edges = np.flatnonzero(filled[1:] != filled[:-1])
    starts, ends = edges[::2], edges[1::2]
    masses = np.add.reduceat(profile, starts)  # the lines between runs hold no ink
    kept = np.flatnonzero(masses >= min(SPECK_FRACTION * masses.sum(), masses.max()))
    return int(starts[kept[0]]), int(ends[kept[-1]])
