"""Image preprocessing as data: what a model expects is stored in its checkpoint (and later in its
manifest) and applied by this one module, in training, evaluation and serving alike.

Torch-free (Pillow + NumPy) so the server can import it without torch. An image becomes uint8 HWC at
the model's size and channel count (`read_image`/`fit_images`), then float32 NCHW with
x = pixel/255 · (hi − lo) + lo, then (x − mean)/std per channel (`to_tensor`).
"""

from dataclasses import asdict, dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
MODES = {1: "L", 3: "RGB"}


FITS = ("stretch", "center_crop", "ink_box")
WORK_SIDE = 1024  # px: an image whose longer side is larger is first reduced by an integer factor (read_image)


def reduction(width: int, height: int, size: tuple[int, int], fit: str) -> int:
    """The integer factor read_image reduces a `width`×`height` image by before fitting it: 1 up to
    WORK_SIDE px on its longer side, else enough to bring that side to WORK_SIDE or below — but for
    stretch and center_crop never below twice the model's size, which their resampling filter needs."""
    if max(width, height) <= WORK_SIDE:
        return 1
    factor = -(-max(width, height) // WORK_SIDE)
    if fit != "ink_box":
        h, w = size
        factor = min(factor, max(1, min(width // (2 * w), height // (2 * h))))
    return factor


def read_image(
    src: "str | Path | bytes | Image.Image",
    size: tuple[int, int],
    channels: int,
    interpolation: str = "bilinear",
    fit: str = "stretch",
    crop_pct: float = 0.875,
) -> np.ndarray:
    """Decode (file path, encoded bytes or a PIL image), convert to grey or RGB, bring to (h, w) as
    `fit` says: uint8 array of shape (h, w, channels).

    - stretch: resize to (h, w), whatever the aspect ratio;
    - center_crop: resize the shorter side to size / crop_pct, then crop the centre (timm's recipe for
      224-px classifiers);
    - ink_box: for digit-style models trained on light ink on a dark square — invert when the
      background is lighter than the ink, crop to the ink's bounding box, pad it to a centred square,
      resize with area averaging and stretch the ink to the full range (the steps MNIST-style
      pipelines use), so a photo or a drawing of any size looks like the training images.

    A large image is first reduced by an integer factor (`reduction`: its longer side to at most
    WORK_SIDE, 1024 px), before anything becomes float: a JPEG while it is decoded (libjpeg's DCT
    scaling by 1/2, 1/4 or 1/8: Pillow's `draft`), every format right after (`Image.reduce`, box
    averages over factor × factor pixels). A 4096² upload then costs its decoded pixels once, and the
    fit works on at most 1024² — not on several float copies of 16 M pixels. Up to 1024 px the result
    is exactly what it was without this step; beyond, resizing the reduced picture may differ from
    resizing the full one by a few levels of 255 (and ink_box finds the ink at the reduced scale)."""
    img = src if isinstance(src, Image.Image) else Image.open(BytesIO(src) if isinstance(src, bytes) else src)
    h, w = size
    mode = MODES[channels]
    factor = reduction(*img.size, size, fit)
    if factor > 1:  # a JPEG not yet decoded is decoded at the largest DCT scale ≤ factor; other images: no-op
        img.draft(None, (-(-img.width // factor), -(-img.height // factor)))
    img = img if img.mode == mode else img.convert(mode)  # the same mode: no copy
    factor = reduction(*img.size, size, fit)
    if factor > 1:
        img = img.reduce(factor)
    if fit == "ink_box":
        return ink_box(np.asarray(img, dtype=np.float32), (h, w))[..., None]
    if fit == "center_crop":
        scale = max(h, w) / crop_pct / min(img.size)
        img = img.resize((max(w, round(img.width * scale)), max(h, round(img.height * scale))), INTERPOLATIONS[interpolation])
        left, top = (img.width - w) // 2, (img.height - h) // 2
        img = img.crop((left, top, left + w, top + h))
    if img.size != (w, h):
        img = img.resize((w, h), INTERPOLATIONS[interpolation])
    return np.asarray(img, dtype=np.uint8).reshape(h, w, channels)


def ink_box(grey: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A grey image (any size, float) → uint8 (h, w): light ink on black, cropped to the ink, centred."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > 127:  # dark ink on a light background: the training images are the reverse
        grey, border = 255 - grey, 255 - border
    ink = np.clip(grey - np.median(border), 0, None)
    if ink.max() <= 0:
        return np.zeros(size, np.uint8)
    mask = ink > 0.25 * ink.max()
    ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))  # the box, with no index per pixel
    ink = ink[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1]
    ih, iw = ink.shape
    side = max(ih, iw)
    square = np.zeros((side, side), np.float32)
    square[(side - ih) // 2 : (side - ih) // 2 + ih, (side - iw) // 2 : (side - iw) // 2 + iw] = ink
    small = np.asarray(Image.fromarray(square).resize(size[::-1], Image.Resampling.BOX), np.float32)
    return np.clip(small * (255.0 / max(float(small.max()), 1e-6)), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Preprocess:
    size: tuple[int, int]  # (height, width) the model takes
    channels: int  # 1: grey, 3: RGB
    mean: tuple[float, ...]  # per channel, in the value range below
    std: tuple[float, ...]
    value_range: tuple[float, float] = (0.0, 1.0)  # pixel 0 → lo, 255 → hi
    interpolation: str = "bilinear"
    fit: str = "stretch"  # how an image of any size becomes (h, w): stretch | center_crop | ink_box (read_image)
    crop_pct: float = 0.875  # center_crop: the fraction of the resized shorter side kept

    def __post_init__(self):
        if self.channels not in MODES:
            raise ValueError(f"channels must be 1 or 3, not {self.channels}")
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"size must be (height, width) of positive integers, not {self.size}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"mean and std need {self.channels} values each")
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, not {self.std}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}")
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {', '.join(FITS)}, not {self.fit!r}")
        if self.fit == "ink_box" and self.channels != 1:
            raise ValueError("fit ink_box is for grey (1-channel) digit-style models")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], not {self.crop_pct}")

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        """Rebuild from stored JSON; raises ValueError naming what is wrong."""
        try:
            return cls(
                size=tuple(int(v) for v in d["size"]),
                channels=int(d["channels"]),
                mean=tuple(float(v) for v in d["mean"]),
                std=tuple(float(v) for v in d["std"]),
                value_range=tuple(float(v) for v in d.get("value_range", (0.0, 1.0))),
                interpolation=str(d.get("interpolation", "bilinear")),
                fit=str(d.get("fit", "stretch")),
                crop_pct=float(d.get("crop_pct", 0.875)),
            )
        except KeyError as err:
            raise ValueError(f"preprocessing record lacks {err.args[0]!r}") from None
        except (TypeError, ValueError) as err:
            raise ValueError(f"preprocessing record is malformed: {err}") from None

    @classmethod
    def fitted(cls, images: np.ndarray, value_range=(0.0, 1.0), interpolation="bilinear", fit="stretch") -> "Preprocess":
        """Mean and std per channel measured on `images` (uint8 NHWC, already brought to the model's
        size by `fit`), e.g. a training split."""
        lo, hi = value_range
        x = images.astype(np.float64) / 255.0 * (hi - lo) + lo
        mean, std = x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))
        return cls(
            size=images.shape[1:3],
            channels=images.shape[3],
            mean=tuple(mean.round(6).tolist()),
            std=tuple(np.maximum(std, 1e-6).round(6).tolist()),
            value_range=tuple(value_range),
            interpolation=interpolation,
            fit=fit,
        )

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.size)

    def load_image(self, src) -> np.ndarray:
        """One image (path, bytes or PIL image) → uint8 (h, w, channels)."""
        return read_image(src, self.size, self.channels, self.interpolation, self.fit, self.crop_pct)

    def to_tensor(self, images: np.ndarray) -> np.ndarray:
        """uint8 NHWC at this size → normalised float32 NCHW, ready for the model."""
        lo, hi = self.value_range
        x = images.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
