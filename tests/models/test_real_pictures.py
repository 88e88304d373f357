"""Digits as people draw or photograph them — dark on light or light on dark, any size, several fonts
and stroke widths, upright and slanted — through the server's own decoding and preprocessing path,
classified by the bundled model. Goal (README): ≥ 90 % right. The fonts are the DejaVu family where
installed (none of them is used in training, which draws its extra digits in Pillow's Aileron)."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from prelu_deploy.manifest import read_entry
from prelu_deploy.models.preprocess import Preprocess
from prelu_deploy.runners.registry import get_runner
from prelu_deploy.runners.runner import run_batched
from prelu_deploy.serve.repository.bundled import packaged_repository

FONTS = sorted(
    p
    for p in Path("/usr/share/fonts/truetype/dejavu").glob("DejaVu*.ttf")
    if "MathTeX" not in p.name and "ExtraLight" not in p.name
)


def _drawn(digit: int, font: Path, size: int, stroke: int, light_on_dark: bool) -> bytes:
    """A PNG as a drawing app saves it: one digit, centred, 70 % of the height."""
    img = Image.new("L", (size, size), 255)
    ImageDraw.Draw(img).text(
        (size / 2, size / 2),
        str(digit),
        font=ImageFont.truetype(str(font), int(size * 0.7)),
        fill=0,
        anchor="mm",
        stroke_width=stroke,
        stroke_fill=0,
    )
    if light_on_dark:
        img = Image.eval(img, lambda v: 255 - v)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.skipif(len(FONTS) < 6, reason="needs the DejaVu fonts (Debian's fonts-dejavu-core)")
def test_drawn_digits_are_recognised(tmp_path):
    entry = read_entry(packaged_repository() / "digits")
    pre = Preprocess.from_dict(entry.preprocess)
    assert pre.fit == "ink_box"
    runner = get_runner(None, entry)
    cases = [
        (d, f, size, stroke, inv)
        for f in FONTS
        for size in (64, 200)
        for stroke in (0, size // 40)
        for inv in (False, True)
        for d in range(10)
    ]
    x = pre.to_tensor(np.stack([pre.load_image(_drawn(*c)) for c in cases]))
    right = run_batched(runner, x).argmax(1) == np.array([c[0] for c in cases])
    dark_on_light = np.array([not c[4] for c in cases])
    assert right.mean() >= 0.90, f"{right.mean():.1%} of {len(cases)}"
    assert right[dark_on_light].mean() >= 0.85 and right[~dark_on_light].mean() >= 0.85
