"""Uploaded images → model input, preprocessed exactly as the manifest says (Pillow + NumPy), with
every way an upload can be bad turned into a 4xx that says what is wrong. In two steps: `header`
reads only what an image says of itself, its size (cheap, nothing decoded: the route decides from it
whether the request fits its pixel budget and where to decode), `decode` decodes one image, reduced
to the model's size (models.preprocess.read_image), and drops its pixels before it returns."""

import ctypes
import warnings
from dataclasses import dataclass
from io import BytesIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from prelu_deploy.models.preprocess import Preprocess
from prelu_deploy.serve.errors import ApiError

TRIM_PIXELS = 1 << 20  # after decoding a larger image, free heap pages go back to the system (_trim)
DECODE_BYTES_PER_PIXEL = 16  # the most one image holds while decoded: a WebP's (libwebp's two RGBA canvases, the frame
# copied out of them, the image); a PNG holds ~5, a JPEG reduced while decoding far less (measured: docs/reliability.md)


def default_decodes(cores: int, workers: int, max_pixels: int) -> int:
    """--max-decodes' default: each worker's share of the cores (a server then decodes one image per
    core, all they can run), but never more than half the memory available now would hold at
    DECODE_BYTES_PER_PIXEL × --max-pixels each — and at least one."""
    share = max(1, cores // workers)
    try:
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) << 10 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return share
    return max(1, min(share, available // 2 // (workers * max_pixels * DECODE_BYTES_PER_PIXEL)))


@dataclass(frozen=True)
class Header:
    what: str  # "image 'name.png'", for messages
    data: bytes
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def header(data: bytes, what: str, max_pixels: int) -> Header:
    """One encoded image (PNG, JPEG, BMP, WebP, GIF, TIFF…): its size read from its header and checked
    against --max-pixels. A WebP's size is read here from its first chunk: Pillow's WebP decoder
    allocates the whole canvas, twice, as soon as the file is opened."""
    if not data:
        raise ApiError(400, f"{what} is empty")
    size = _webp_size(data, what)
    if size is None:
        with _open(data, what) as img:
            size = img.size
    _check(size, what, max_pixels)
    return Header(what, data, *size)


def decode(head: Header, pre: Preprocess, max_pixels: int) -> np.ndarray:
    """One image decoded → uint8 (h, w, c) at the model's size; truncated or corrupt data fails here.
    Its decoded pixels are dropped before this returns, and after a large one the freed memory is
    given back to the system."""
    img = _open(head.data, head.what)
    try:
        _check(img.size, head.what, max_pixels)
        return pre.load_image(img)
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ApiError(400, f"{head.what} is a broken image ({err})") from None
    finally:
        img.close()
        del img
        if head.pixels > TRIM_PIXELS:
            _trim()


def _open(data: bytes, what: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ApiError(413, f"{what}: refused as a decompression bomb ({err})") from None
    except UnidentifiedImageError:
        raise ApiError(415, f"{what} is not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ApiError(400, f"{what} is a broken image ({err})") from None


def _check(size: tuple[int, int], what: str, max_pixels: int) -> None:
    if size[0] * size[1] > max_pixels:
        raise ApiError(413, f"{what} is {size[0]}×{size[1]} pixels; the limit is {max_pixels} pixels an image (--max-pixels)")


def _webp_size(data: bytes, what: str) -> tuple[int, int] | None:
    """A WebP's canvas size from its first chunk (VP8, VP8L or VP8X), as libwebp reads it; None when
    `data` is not a WebP (Pillow then says what it is)."""
    chunk, le = data[12:16], lambda a, b: int.from_bytes(data[a:b], "little")
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP" or chunk not in (b"VP8 ", b"VP8L", b"VP8X"):
        return None
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return le(26, 28) & 0x3FFF, le(28, 30) & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        return (le(21, 25) & 0x3FFF) + 1, ((le(21, 25) >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return le(24, 27) + 1, le(27, 30) + 1
    raise ApiError(400, f"{what} is a broken image (a WebP whose first chunk gives no size)")


try:
    _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc: its allocator keeps its own counsel
    _malloc_trim = None


def _trim() -> None:
    """glibc keeps freed heap pages (in each thread's arena, and beyond its mmap threshold, which rises
    after the first large free) for reuse: without this, a worker stayed at 540 MB after one burst."""
    if _malloc_trim is not None:
        _malloc_trim(0)
