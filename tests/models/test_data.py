import numpy as np
import pytest
from PIL import Image

from prelu_deploy.errors import DatasetError
from prelu_deploy.models.data import load_dataset, load_digits
from prelu_deploy.models.preprocess import Preprocess, read_image


def test_digits_split_is_fixed_and_complete():
    d = load_digits()
    assert (len(d.train), len(d.test)) == (1437, 360)
    assert d.train.images.shape[1:] == (8, 8, 1) and d.train.images.dtype == np.uint8
    assert d.train.images.max() == 255 and d.train.images.min() == 0
    assert set(d.test.labels) == set(d.train.labels) == set(range(10))
    again = load_digits()
    assert np.array_equal(d.test.images, again.test.images) and np.array_equal(d.test.labels, again.test.labels)


def test_digits_are_scikit_learns_read_without_importing_it():
    import subprocess
    import sys

    from sklearn.datasets import load_digits as sk_load_digits

    d, sk = load_digits(), sk_load_digits()
    test = np.arange(len(sk.target)) % 5 == 0
    expected = np.round(sk.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    np.testing.assert_array_equal(d.train.images, expected[~test])
    np.testing.assert_array_equal(d.test.images, expected[test])
    np.testing.assert_array_equal(
        np.concatenate([d.train.labels, d.test.labels]), np.concatenate([sk.target[~test], sk.target[test]])
    )
    code = "import sys; from prelu_deploy.models.data import load_digits; load_digits(); print('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["False"]


def test_digits_resized_for_an_rgb_architecture():
    d = load_dataset("digits", (32, 32), 3)
    assert d.train.images.shape[1:] == (32, 32, 3)
    assert np.array_equal(d.train.images[..., 0], d.train.images[..., 2])  # grey copied to RGB


def _write_folder(root, labels=("cat", "dog"), per_label=6, size=(12, 10)):
    rng = np.random.default_rng(0)
    for label in labels:
        (root / label).mkdir(parents=True)
        for i in range(per_label):
            pixels = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i:02d}.{'png' if i % 2 else 'jpg'}")


def test_image_folder_holds_out_every_fifth_file(tmp_path):
    _write_folder(tmp_path)
    d = load_dataset(str(tmp_path), (8, 8), 1)
    assert d.labels == ["cat", "dog"]
    assert (len(d.train), len(d.test)) == (8, 4)  # files 00 and 05 of each label are held out
    assert d.train.images.shape == (8, 8, 8, 1)
    assert list(d.test.labels) == [0, 0, 1, 1]


def test_image_folder_with_train_and_test(tmp_path):
    _write_folder(tmp_path / "train", per_label=3)
    _write_folder(tmp_path / "test", labels=("dog",), per_label=2)
    d = load_dataset(str(tmp_path), (8, 8), 3)
    assert (len(d.train), len(d.test)) == (6, 2) and list(d.test.labels) == [1, 1]


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda root: None, "no such folder"),
        (lambda root: root.mkdir(), "no label folders"),
        (lambda root: (root / "a").mkdir(parents=True), "no images"),
        (
            lambda root: ((root / "a").mkdir(parents=True), (root / "a" / "x.png").write_bytes(b"not a png")),
            "x.png: not a readable image",
        ),
        (lambda root: _write_folder(root, per_label=1), "the test split is empty"),
    ],
)
def test_image_folder_errors(tmp_path, make, message):
    root = tmp_path / "data"
    make(root)
    with pytest.raises(DatasetError, match=message):
        load_dataset(str(root), (8, 8), 1)


def test_read_image_from_bytes_and_modes(tmp_path):
    img = Image.new("RGBA", (20, 10), (255, 0, 0, 255))
    img.save(tmp_path / "red.png")
    data = (tmp_path / "red.png").read_bytes()
    assert read_image(data, (5, 4), 3).shape == (5, 4, 3)
    grey = read_image(tmp_path / "red.png", (5, 4), 1)
    assert grey.shape == (5, 4, 1) and int(grey[0, 0, 0]) == 76  # ITU-R 601 luma of pure red


def test_preprocess_normalises_as_recorded():
    pre = Preprocess(size=(2, 2), channels=1, mean=(0.5,), std=(0.25,))
    x = pre.to_tensor(np.array([[[[0], [255]], [[51], [102]]]], np.uint8))
    assert x.shape == (1, 1, 2, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], [[-2.0, 2.0], [-1.2, -0.4]], rtol=1e-6)
    assert Preprocess.from_dict(pre.to_dict()) == pre


def test_preprocess_fitted_and_value_range():
    images = np.zeros((4, 2, 2, 3), np.uint8)
    images[:2] = 255
    pre = Preprocess.fitted(images, value_range=(-1.0, 1.0))
    assert pre.mean == (0.0, 0.0, 0.0) and pre.std == (1.0, 1.0, 1.0) and pre.size == (2, 2)
    np.testing.assert_allclose(pre.to_tensor(images[:1]), 1.0)


@pytest.mark.parametrize(
    "record,message",
    [
        ({"size": [8, 8], "channels": 2, "mean": [0, 0], "std": [1, 1]}, "channels must be 1 or 3"),
        ({"size": [8, 8], "channels": 1, "mean": [0.5], "std": [0.0]}, "std must be positive"),
        ({"size": [8, 8], "channels": 1, "mean": [0.5, 0.5], "std": [1]}, "mean and std need 1"),
        ({"size": [8, 8], "channels": 1}, "preprocessing record lacks 'mean'"),
        (
            {"size": [8, 8], "channels": 1, "mean": [0.5], "std": [1], "fit": "squash"},
            "fit must be one of stretch, center_crop, ink_box",
        ),
        ({"size": [8, 8], "channels": 3, "mean": [0.5] * 3, "std": [1] * 3, "fit": "ink_box"}, "ink_box is for grey"),
        ({"size": [8, 8], "channels": 1, "mean": [0.5], "std": [1], "crop_pct": 0}, r"crop_pct must be in \(0, 1\]"),
    ],
)
def test_preprocess_record_validation(record, message):
    with pytest.raises(ValueError, match=message):
        Preprocess.from_dict(record)


def test_fits_bring_any_picture_to_the_model_size():
    """center_crop keeps the centre at the aspect ratio; ink_box finds dark-on-light and light-on-dark
    ink alike, crops it and centres it."""
    from PIL import Image

    from prelu_deploy.models.preprocess import read_image

    wide = np.zeros((100, 200), np.uint8)
    wide[:, 90:110] = 255  # a bar in the centre of a wide picture
    crop = read_image(Image.fromarray(wide), (10, 10), 1, fit="center_crop", crop_pct=1.0)[..., 0]
    assert crop.shape == (10, 10) and crop[:, 4:6].min() > 200 and crop[:, :3].max() < 30  # not squashed
    page = np.full((300, 300), 240, np.uint8)
    page[40:120, 200:220] = 10  # dark ink, off-centre, on light paper
    for img in (page, 255 - page):
        box = read_image(Image.fromarray(img), (8, 8), 1, fit="ink_box")[..., 0]
        assert box.max() == 255 and box[:, 3:5].min() > 200 and box[:, :2].max() == 0 and box[:, 6:].max() == 0
    assert read_image(Image.new("L", (50, 50), 255), (8, 8), 1, fit="ink_box").max() == 0  # a blank page stays blank
