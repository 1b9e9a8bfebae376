"""A seeded set of varied digit images on which `dlcli predict`'s MNIST framing is measured.

The set has two parts, rendered from different seeds, in partly different fonts and hand-drawn
forms: `tuning`, the only part a change to the framing may be tuned on, and `held-out`, on
which it is reported and never tuned. Every image has one of six styles:

- `font`: a digit typed in a regular face; `bold`: in a bold face, or in a regular face
  emboldened with an outline;
- `marker`: drawn with a thick felt-tip stroke; `pen`: with a thin ballpoint stroke;
- `slashed-zero` and `dotted-zero`: a zero, typed or drawn, crossed by a slash or with a dot.

On top of its style, an image may be `noisy` (photographed: uneven light, blur, grain and a
coarse JPEG) and `inverted` (light ink on a dark ground). Canvases are 48 to 640 px a side,
with the digit anywhere on them at 30% to 85% of their height.

The fonts are those that ship inside matplotlib (a dependency of dlcli), so every machine
renders the same set; none is among the system fonts `tests/test_rendered_digits.py` uses
apart from DejaVu. Each image is rendered from its own seed, so the first n images of a part
do not depend on how many are asked for.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

Part = Literal["tuning", "held-out"]
STYLES = ("font", "bold", "marker", "pen", "slashed-zero", "dotted-zero")
FONT_FOLDER = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
GLYPH_HEIGHT = 200  # digits are drawn this high, then scaled onto their canvas

# (regular faces, bold faces) of each part; no face is in both.
FONTS: dict[Part, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "tuning": (
        ("DejaVuSans.ttf", "DejaVuSerif.ttf", "STIXGeneral.ttf", "cmr10.ttf", "cmtt10.ttf"),
        ("DejaVuSans-Bold.ttf", "DejaVuSansMono-Bold.ttf", "STIXGeneralBol.ttf"),
    ),
    "held-out": (
        (
            "DejaVuSans-Oblique.ttf",
            "DejaVuSansMono.ttf",
            "DejaVuSansMono-Oblique.ttf",
            "DejaVuSerif-Italic.ttf",
            "STIXGeneralItalic.ttf",
            "cmss10.ttf",
            "cmti10.ttf",
        ),
        (
            "DejaVuSans-BoldOblique.ttf",
            "DejaVuSansMono-BoldOblique.ttf",
            "DejaVuSerif-Bold.ttf",
            "DejaVuSerif-BoldItalic.ttf",
            "STIXGeneralBolIta.ttf",
            "cmb10.ttf",
        ),
    ),
}
SEEDS: dict[Part, int] = {"tuning": 1515, "held-out": 8080}
FONT_VARIANTS = 3  # renderings of each digit in each face
EMBOLDENED_PER_DIGIT = 6  # regular faces emboldened with an outline
DRAWN_PER_DIGIT = 18  # of each of marker and pen
ZEROS = 40  # of each of slashed and dotted zeros, half typed and half drawn
MARKER_WIDTH = (0.15, 0.28)  # stroke width as a share of the digit's height
PEN_WIDTH = (0.025, 0.06)

# ---------------------------------------------------------------------------------------------
# Hand-drawn forms: strokes in a unit box (x right, y down); arcs are (cx, cy, rx, ry, from,
# to) in degrees, 0 to the right and 90 down. The tuning part draws the first form of each
# digit only; the held-out part draws every form.

Stroke = list[tuple[float, float]]


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float) -> Stroke:
    steps = max(8, int(abs(end - start) / 8))
    angles = np.radians(np.linspace(start, end, steps))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


FORMS: dict[int, list[list[Stroke]]] = {
    0: [[_arc(0.5, 0.5, 0.3, 0.46, -90, 275)], [_arc(0.5, 0.5, 0.34, 0.45, -100, 265)]],
    1: [[[(0.36, 0.2), (0.56, 0.04), (0.52, 0.96)]], [[(0.5, 0.04), (0.5, 0.96)]]],
    2: [
        [_arc(0.5, 0.3, 0.28, 0.25, 190, 380) + [(0.18, 0.95), (0.85, 0.95)]],
        [_arc(0.5, 0.28, 0.3, 0.24, 180, 400) + [(0.2, 0.95)], [(0.2, 0.95), (0.86, 0.93)]],
    ],
    3: [
        [_arc(0.5, 0.27, 0.24, 0.22, 200, 450), _arc(0.5, 0.72, 0.28, 0.23, 270, 520)],
        [[(0.2, 0.05), (0.8, 0.05), (0.45, 0.42)] + _arc(0.5, 0.7, 0.3, 0.27, -90, 160)],
    ],
    4: [
        [[(0.68, 0.96), (0.68, 0.04), (0.14, 0.66), (0.88, 0.66)]],
        [[(0.25, 0.04), (0.18, 0.6), (0.86, 0.6)], [(0.68, 0.2), (0.66, 0.96)]],
    ],
    5: [
        [[(0.8, 0.05), (0.32, 0.05), (0.28, 0.45)] + _arc(0.5, 0.67, 0.28, 0.27, -125, 150)],
        [
            [(0.3, 0.06), (0.26, 0.46)] + _arc(0.48, 0.68, 0.3, 0.27, -130, 160),
            [(0.3, 0.06), (0.82, 0.04)],
        ],
    ],
    6: [
        [[(0.72, 0.04), (0.48, 0.2), (0.32, 0.42)] + _arc(0.5, 0.7, 0.24, 0.25, 200, 560)],
        [_arc(0.8, 0.6, 0.55, 0.56, 250, 180) + _arc(0.5, 0.72, 0.25, 0.23, 180, 540)],
    ],
    7: [
        [[(0.14, 0.05), (0.86, 0.05), (0.42, 0.96)]],
        [[(0.14, 0.1), (0.14, 0.05), (0.86, 0.05), (0.4, 0.96)], [(0.36, 0.5), (0.78, 0.5)]],
    ],
    8: [
        [_arc(0.5, 0.27, 0.21, 0.22, 90, 450), _arc(0.5, 0.72, 0.26, 0.24, -90, 270)],
        [_arc(0.5, 0.26, 0.24, 0.21, 120, 400) + _arc(0.5, 0.73, 0.25, 0.23, -60, 300)],
    ],
    9: [
        [_arc(0.5, 0.3, 0.25, 0.25, 0, 360), [(0.75, 0.3), (0.7, 0.96)]],
        [_arc(0.48, 0.3, 0.26, 0.26, -10, 360) + _arc(0.2, 0.3, 0.54, 0.66, 0, 80)],
    ],
}


@dataclass(frozen=True)
class Sample:
    """One image of the set, with its digit and how it was made."""

    image: Image.Image  # RGB
    digit: int
    style: str  # one of STYLES
    noisy: bool
    inverted: bool
    source: str  # the font file, or `form N` of a hand-drawn digit


@dataclass(frozen=True)
class _Recipe:
    style: str
    digit: int
    font: str | None  # None: hand-drawn


def _recipes(part: Part) -> list[_Recipe]:
    """What each image of a part is: its style, digit and font, in a fixed order."""
    regular, bold = FONTS[part]
    recipes = [_Recipe("font", d, f) for f in regular for d in range(10)] * FONT_VARIANTS
    recipes += [_Recipe("bold", d, f) for f in bold for d in range(10)] * FONT_VARIANTS
    recipes += [
        _Recipe("bold", d, regular[(d + i) % len(regular)])
        for i in range(EMBOLDENED_PER_DIGIT)
        for d in range(10)
    ]
    for style in ("marker", "pen"):
        recipes += [_Recipe(style, d, None) for d in range(10)] * DRAWN_PER_DIGIT
    for style in ("slashed-zero", "dotted-zero"):
        recipes += [
            _Recipe(style, 0, regular[i % len(regular)] if i % 2 else None) for i in range(ZEROS)
        ]
    return recipes


def digit_set(part: Part, limit: int | None = None) -> list[Sample]:
    """The images of `part` (the first `limit` of them), rendered the same on every call."""
    recipes = _recipes(part)[:limit]
    return [
        _render(recipe, np.random.default_rng([SEEDS[part], index]), part)
        for index, recipe in enumerate(recipes)
    ]


def _render(recipe: _Recipe, rng: np.random.Generator, part: Part) -> Sample:
    """One image: the glyph as a mask, then laid on a canvas, maybe photographed."""
    if recipe.font is None:
        forms = FORMS[recipe.digit] if part == "held-out" else FORMS[recipe.digit][:1]
        form = int(rng.integers(len(forms)))
        widths = {"marker": MARKER_WIDTH, "pen": PEN_WIDTH}.get(recipe.style)
        if widths is None:  # a zero, drawn with either
            widths = MARKER_WIDTH if rng.random() < 0.5 else PEN_WIDTH
        mask, width = _drawn(forms[form], rng.uniform(*widths), rng)
        source = f"form {form}"
    else:
        emboldened = recipe.style == "bold" and recipe.font in FONTS[part][0]
        mask = _typed(recipe.digit, recipe.font, rng, emboldened=emboldened)
        width = _zero_stroke(mask) if recipe.digit == 0 else 0
        source = recipe.font
    if recipe.style == "slashed-zero":
        mask = _slashed(mask, width, rng)
    elif recipe.style == "dotted-zero":
        mask = _dotted(mask, width, rng)
    inverted, noisy = bool(rng.random() < 0.25), bool(rng.random() < 0.35)
    image = _on_canvas(mask, rng, inverted=inverted, noisy=noisy)
    return Sample(image, recipe.digit, recipe.style, noisy, inverted, source)


def _typed(
    digit: int, font_file: str, rng: np.random.Generator, *, emboldened: bool
) -> Image.Image:
    """A digit in a font, white on black, slightly turned, in a tight box."""
    font = ImageFont.truetype(str(FONT_FOLDER / font_file), GLYPH_HEIGHT)
    outline = round(GLYPH_HEIGHT * rng.uniform(0.025, 0.06)) if emboldened else 0
    left, top, right, bottom = font.getbbox(str(digit), stroke_width=outline)
    image = Image.new("L", (right - left + 8, bottom - top + 8), 0)
    ImageDraw.Draw(image).text(
        (4 - left, 4 - top), str(digit), font=font, fill=255, stroke_width=outline, stroke_fill=255
    )
    image = image.rotate(rng.uniform(-6, 6), Image.Resampling.BICUBIC, expand=True)
    return image.crop(image.getbbox())


def _drawn(
    strokes: list[Stroke], share: float, rng: np.random.Generator
) -> tuple[Image.Image, int]:
    """A hand-like digit (slanted, stretched, wobbly strokes of `share` of its height) and the
    stroke width in pixels; white on black, in a tight box."""
    height = GLYPH_HEIGHT
    slant, squeeze = rng.uniform(-0.25, 0.3), rng.uniform(0.6, 1.0)
    angle = math.radians(rng.uniform(-8, 8))
    pen = max(2, round(height * share))
    pad = pen + height // 2
    image = Image.new("L", (height + 2 * pad, height + 2 * pad), 0)
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        points = np.array(stroke) + rng.normal(0, 0.012, size=(len(stroke), 2))
        x, y = (points[:, 0] - 0.5) * squeeze, points[:, 1] - 0.5
        x = x - slant * y
        x, y = x * math.cos(angle) - y * math.sin(angle), x * math.sin(angle) + y * math.cos(angle)
        xy = [
            (pad + height / 2 + px * height, pad + height / 2 + py * height)
            for px, py in zip(x, y, strict=True)
        ]
        draw.line(xy, fill=255, width=pen, joint="curve")
        for px, py in (xy[0], xy[-1]):
            draw.ellipse((px - pen / 2, py - pen / 2, px + pen / 2, py + pen / 2), fill=255)
    return image.crop(image.getbbox()), pen


def _zero_stroke(mask: Image.Image) -> int:
    """The width of a zero's left side along its middle row, in pixels."""
    row = np.asarray(mask)[mask.height // 2] > 127
    start = int(np.argmax(row))
    return max(2, int(np.argmin(row[start:])))


def _slashed(mask: Image.Image, width: int, rng: np.random.Generator) -> Image.Image:
    """The zero crossed by a slash from lower left to upper right, reaching to or past it."""
    w, h = mask.size
    reach = rng.uniform(-0.05, 0.12)
    start = (w * (0.2 - reach), h * (0.85 + reach))
    end = (w * (0.8 + reach), h * (0.15 - reach))
    pad = int(0.15 * max(w, h)) + width
    image = Image.new("L", (w + 2 * pad, h + 2 * pad), 0)
    image.paste(mask, (pad, pad))
    ImageDraw.Draw(image).line([(pad + x, pad + y) for x, y in (start, end)], fill=255, width=width)
    return image.crop(image.getbbox())


def _dotted(mask: Image.Image, width: int, rng: np.random.Generator) -> Image.Image:
    """The zero with a round or oval dot in its middle, about as wide as its stroke and clear
    of it."""
    image = mask.copy()
    x, y = image.width / 2, image.height / 2
    hole = (image.width - 2 * width) / 2  # half the width of the hole, along the middle row
    rx = min(width * rng.uniform(0.6, 1.0), 0.6 * hole)
    ry = rx * rng.uniform(0.8, 1.5)
    ImageDraw.Draw(image).ellipse((x - rx, y - ry, x + rx, y + ry), fill=255)
    return image


def _on_canvas(
    mask: Image.Image, rng: np.random.Generator, *, inverted: bool, noisy: bool
) -> Image.Image:
    """The glyph as ink somewhere on a canvas of 48 to 640 px a side; photographed if noisy."""
    height = int(np.exp(rng.uniform(math.log(48), math.log(640))))
    width = int(np.clip(height * np.exp(rng.uniform(-0.7, 0.7)), 48, 640))
    scale = rng.uniform(0.3, 0.85) * height / mask.height
    scale = min(scale, 0.85 * width / mask.width)
    size = (max(1, round(mask.width * scale)), max(1, round(mask.height * scale)))
    margin = round(0.04 * min(width, height))
    left = int(rng.integers(margin, max(margin, width - size[0] - margin) + 1))
    top = int(rng.integers(margin, max(margin, height - size[1] - margin) + 1))
    alpha = np.zeros((height, width))
    glyph = np.asarray(mask.resize(size, Image.Resampling.LANCZOS), dtype=np.float64) / 255
    alpha[top : top + size[1], left : left + size[0]] = glyph[: height - top, : width - left]
    light = rng.uniform(175, 250, size=3)
    dark = rng.uniform(0, 80, size=3)
    paper, ink = (dark, light) if inverted else (light, dark)
    if noisy:
        direction = rng.uniform(0, 2 * math.pi)
        rows, columns = np.ogrid[:height, :width]
        ramp = (rows * math.sin(direction) + columns * math.cos(direction)) / max(height, width)
        light_falls = 1 - rng.uniform(0.15, 0.4) * (ramp - ramp.min()) / (np.ptp(ramp) + 1e-9)
        paper = paper * light_falls[..., None]
        ink = ink * light_falls[..., None]
    pixels = paper * (1 - alpha[..., None]) + ink * alpha[..., None]
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if noisy:
        return _photographed(image, rng)
    if rng.random() < 0.2:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0)))
    return image


def _photographed(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Blur in proportion to the canvas, sensor grain, and a coarse JPEG round trip."""
    radius = rng.uniform(0.2, 0.6) * min(image.size) / 100
    image = image.filter(ImageFilter.GaussianBlur(radius))
    grain = rng.normal(0, rng.uniform(3, 12), size=(image.height, image.width, 1))
    pixels = np.asarray(image, dtype=np.float64) + grain
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(30, 80)))
    return Image.open(buffer).convert("RGB")
