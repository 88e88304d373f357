"""Training-set augmentation for digit-style models served on real pictures (fit ink_box): warped
copies of the training images (shear, rotation, scale, blur: slanted, italic, thin or soft strokes) and
digits drawn in Pillow's built-in Aileron font at random sizes, stroke widths and slants — every one
brought to the model's size by the same ink_box steps the server applies to an upload."""

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from prelu_deploy.models.preprocess import ink_box


def _warp(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random affine (shear ±0.35, rotation ±12°, scale 0.75–1.3 × 0.85–1.15) about the centre, then
    sometimes a blur."""
    w, h = img.size
    a, shear = np.deg2rad(rng.uniform(-12, 12)), rng.uniform(-0.35, 0.35)
    sx, sy = rng.uniform(0.75, 1.3), rng.uniform(0.85, 1.15)
    m = np.array([[np.cos(a) / sx, (np.sin(a) + shear) / sx], [-np.sin(a) / sy, np.cos(a) / sy]])  # output → input
    centre = np.array([w / 2, h / 2])
    off = centre - m @ centre
    img = img.transform(
        img.size, Image.Transform.AFFINE, (m[0, 0], m[0, 1], off[0], m[1, 0], m[1, 1], off[1]), Image.Resampling.BILINEAR
    )
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0))) if rng.random() < 0.3 else img


def warped(images: np.ndarray, copies: int, rng: np.random.Generator) -> np.ndarray:
    """`copies` warped versions of each grey uint8 (N, h, w, 1) image, at the same size."""
    h, w = images.shape[1:3]
    out = []
    for _ in range(copies):
        for im in images:
            big = Image.fromarray(im[..., 0]).resize((4 * w, 4 * h), Image.Resampling.BILINEAR)
            big = big.crop((-2 * w, -2 * h, 6 * w, 6 * h))  # room to move: the ink stays whole
            out.append(ink_box(np.asarray(_warp(big, rng), np.float32), (h, w))[..., None])
    return np.stack(out)


def glyph_digits(n: int, size: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n digits 0–9 drawn in Aileron (Pillow's built-in font: no font file needed), light on dark, at
    random sizes and stroke widths, warped; images (n, h, w, 1) uint8 and labels (n,)."""
    images, labels = [], rng.integers(0, 10, n)
    for digit in labels:
        px = int(rng.integers(40, 120))
        img = Image.new("L", (2 * px, 2 * px), 0)
        ImageDraw.Draw(img).text(
            (px, px),
            str(digit),
            font=ImageFont.load_default(size=px),
            fill=255,
            anchor="mm",
            stroke_width=int(rng.integers(0, max(1, px // 12))),
            stroke_fill=255,
        )
        images.append(ink_box(np.asarray(_warp(img, rng), np.float32), size)[..., None])
    return np.stack(images), labels.astype(np.int64)
