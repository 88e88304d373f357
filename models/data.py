"""Datasets: scikit-learn's handwritten digits (real scans, shipped inside scikit-learn) and image
folders (`root/<label>/*.png|jpg|…`) for users' own data. Both give uint8 NHWC images at the size and
channel count the model takes, with integer labels and the label names.

Digits split (fixed and documented): of the 1,797 images in `sklearn.datasets.load_digits()` order,
every fifth (index % 5 == 0) is held out for testing — 360 test, 1,437 train, all ten classes in both.
Image folders: `root/train/<label>/` and `root/test/<label>/` when both exist; otherwise every fifth
file of each label (sorted by name) is held out.
"""

import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from prelu_deploy.errors import DatasetError
from prelu_deploy.models.preprocess import Preprocess, read_image

HOLDOUT_EVERY = 5
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


@dataclass
class Split:
    images: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    name: str  # "digits" or the folder's path
    labels: list[str]  # class index → name
    train: Split
    test: Split

    def split(self, which: str) -> Split:
        check_split(which)
        if which == "all":
            return Split(
                np.concatenate([self.train.images, self.test.images]), np.concatenate([self.train.labels, self.test.labels])
            )
        return getattr(self, which)


def check_split(which: str) -> None:
    if which not in ("train", "test", "all"):
        raise DatasetError(f"unknown split {which!r}; choose train, test or all")


def _holdout(n: int) -> np.ndarray:
    return np.arange(n) % HOLDOUT_EVERY == 0


def _digits_csv() -> Path:
    """scikit-learn's digits file, found without importing scikit-learn: its import (scipy's included)
    costs every process that loads the digits about as much CPU as torch's, for one bundled CSV."""
    try:
        spec = importlib.util.find_spec("sklearn")
    except ImportError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("the digits dataset needs scikit-learn: pip install 'prelu-deploy[export]'")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


def load_digits() -> Dataset:
    """The 8×8 digits as grey images: 0..16 ink values scaled to 0..255 (white ink on black); read as
    `sklearn.datasets.load_digits()` reads them (64 pixel columns, then the label)."""
    with gzip.open(_digits_csv(), "rt", encoding="utf-8") as f:
        data = np.loadtxt(f, delimiter=",")
    images = np.round(data[:, :-1].reshape(-1, 8, 8) * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = data[:, -1].astype(np.int64)
    test = _holdout(len(labels))
    return Dataset("digits", [str(i) for i in range(10)], Split(images[~test], labels[~test]), Split(images[test], labels[test]))


def _label_dirs(root: Path) -> list[Path]:
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise DatasetError(f"{root}: no label folders; expected {root}/<label>/*.png")
    return dirs


def _image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"{folder}: no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def _read_split(files: list[tuple[Path, int]], size, channels, root: Path, which: str, fit: str) -> Split:
    if not files:
        raise DatasetError(f"{root}: the {which} split is empty (a label needs at least 2 images to be split)")
    images = []
    for path, _ in files:
        try:
            images.append(read_image(path, size, channels, fit=fit))
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
            raise DatasetError(f"{path}: not a readable image ({err})") from None
    return Split(np.stack(images), np.asarray([label for _, label in files], np.int64))


def load_image_folder(root: str | Path, size: tuple[int, int], channels: int, fit: str = "stretch") -> Dataset:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder (a dataset is 'digits' or a folder root/<label>/*.png)")
    if (root / "train").is_dir() and (root / "test").is_dir():
        labels = [d.name for d in _label_dirs(root / "train")]
        test_labels = [d.name for d in _label_dirs(root / "test")]
        if unknown := sorted(set(test_labels) - set(labels)):
            raise DatasetError(f"{root}/test has labels that train lacks: {', '.join(unknown)}")
        train = [(f, i) for i, name in enumerate(labels) for f in _image_files(root / "train" / name)]
        test = [(f, labels.index(name)) for name in test_labels for f in _image_files(root / "test" / name)]
    else:
        labels = [d.name for d in _label_dirs(root)]
        train, test = [], []
        for i, name in enumerate(labels):
            files = _image_files(root / name)
            held = _holdout(len(files)) if len(files) > 1 else np.zeros(1, bool)
            test += [(f, i) for f, h in zip(files, held) if h]
            train += [(f, i) for f, h in zip(files, held) if not h]
    return Dataset(
        str(root),
        labels,
        _read_split(train, size, channels, root, "train", fit),
        _read_split(test, size, channels, root, "test", fit),
    )


def load_dataset(spec: str, size: tuple[int, int] | None = None, channels: int | None = None, fit: str = "stretch") -> Dataset:
    """'digits' or an image folder, with images brought to (size, channels) as `fit` says (the
    preprocessing record's; see models.preprocess.read_image) — the dataset's own size for digits
    when not given."""
    if spec == "digits":
        data = load_digits()
        _fit_digits([data.train, data.test], size, channels, fit)
        return data
    if size is None or channels is None:
        raise DatasetError("an image folder needs the model's input size and channels")
    return load_image_folder(spec, tuple(size), channels, fit)


def held_out(dataset: str, pre: Preprocess, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n held-out images of `dataset`, preprocessed as `pre` says (float32 NCHW), and their
    labels: the inputs export's golden set and parity's comparison both start from."""
    if dataset == "digits":  # only the n images asked for are brought to the model's input
        test = load_digits().test
        split = Split(test.images[:n], test.labels[:n])
        _fit_digits([split], pre.size, pre.channels, pre.fit)
    else:
        split = load_dataset(dataset, pre.size, pre.channels, pre.fit).test
    return pre.to_tensor(split.images[:n]), split.labels[:n]


def _fit_digits(splits: list[Split], size, channels, fit: str) -> None:
    """Digits (8×8, grey) brought to (size, channels) as `fit` says, in place; each image on its own."""
    own = splits[0].images.shape[1:3]
    if fit != "stretch" or (size is not None and (tuple(size), channels) != (own, 1)):
        size, channels = tuple(size or own), channels or 1
        for split in splits:
            split.images = _refit(split.images, size, channels, fit)


def _refit(images: np.ndarray, size, channels, fit: str) -> np.ndarray:
    fitted = [read_image(Image.fromarray(im[..., 0]), tuple(size), channels, fit=fit) for im in images]
    return np.stack(fitted) if fitted else np.zeros((0, *size, channels), np.uint8)
