"""Uploaded images → model input, preprocessed exactly as the manifest says (Pillow + NumPy), with
every way an upload can be bad turned into a 4xx that says what is wrong. In two steps: `open_image`
reads only the header (cheap: the route decides from the pixel count where to decode), `to_array`
decodes."""

import warnings
from io import BytesIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from prelu_deploy.models.preprocess import Preprocess
from prelu_deploy.serve.errors import ApiError


def open_image(data: bytes, what: str, max_pixels: int) -> Image.Image:
    """One encoded image (PNG, JPEG, BMP, WebP, GIF, TIFF…), its header read and its size checked."""
    if not data:
        raise ApiError(400, f"{what} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ApiError(413, f"{what}: refused as a decompression bomb ({err})") from None
    except UnidentifiedImageError:
        raise ApiError(415, f"{what} is not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ApiError(400, f"{what} is a broken image ({err})") from None
    if img.width * img.height > max_pixels:
        raise ApiError(413, f"{what} is {img.width}×{img.height} pixels; the limit is {max_pixels}")
    return img


def to_array(img: Image.Image, what: str, pre: Preprocess) -> np.ndarray:
    """An opened image decoded → uint8 (h, w, c) at the model's size; truncated or corrupt data fails here."""
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as err:
        raise ApiError(400, f"{what} is a broken image ({err})") from None
    return pre.load_image(img)
