"""Batch-size buckets: the sizes, the padding and slicing (what the graph-capturing GPU runners rely on)."""

import numpy as np
import pytest

from prelu_deploy.runners.buckets import Buckets


@pytest.mark.parametrize(
    "max_batch, min_batch, sizes",
    [
        (1, 1, [1]),
        (2, 1, [1, 2]),
        (32, 1, [1, 2, 4, 8, 16, 32]),
        (100, 1, [1, 2, 4, 8, 16, 32, 64, 100]),
        (256, 1, [1, 2, 4, 8, 16, 32, 64, 128, 256]),
        (7, 3, [3, 4, 7]),
        (8, 8, [8]),
    ],
)
def test_sizes_are_powers_of_two_up_to_the_max(max_batch, min_batch, sizes):
    b = Buckets(max_batch, min_batch)
    assert b.sizes == sizes and b.max == max_batch and len(b) == len(sizes)
    for rows in range(1, max_batch + 1):  # every size a batcher forms has a bucket: the smallest that holds it
        size = b.size_for(rows)
        assert size >= rows and size in sizes and not any(rows <= s < size for s in sizes)


def test_sizes_outside_the_buckets_are_refused():
    b = Buckets(32)
    for rows in (0, 33):
        with pytest.raises(ValueError, match="outside 1..32"):
            b.size_for(rows)
    with pytest.raises(ValueError, match="1 ≤ min ≤ max"):
        Buckets(4, 8)


def test_pad_with_zero_rows_and_slice_back():
    b = Buckets(16)
    x = np.arange(5 * 3, dtype=np.float32).reshape(5, 3) + 1
    padded = b.pad(x)
    assert padded.shape == (8, 3) and np.array_equal(padded[:5], x) and not padded[5:].any()
    assert b.pad(x[:4]) is not None and b.pad(x[:4]).shape == (4, 3)  # a bucket size is passed through
    staging = np.full((8, 3), np.nan, np.float32)  # a reused staging buffer: stale rows are cleared
    assert b.pad(x, out=staging) is staging and np.array_equal(staging[:5], x) and not staging[5:].any()
    assert np.array_equal(Buckets.unpad(padded, 5), x)
    with pytest.raises(ValueError, match="cannot hold"):
        b.pad(x, out=np.zeros((4, 3), np.float32))


def test_explicit_sizes_always_end_at_the_max():
    """A benchmark of batches 1, 32, 256 captures three graphs, not nine; any batch still has a bucket."""
    assert Buckets(256, 1, (1, 32, 256)).sizes == [1, 32, 256]
    assert Buckets(256, 1, (1, 32)).sizes == [1, 32, 256] and Buckets(64, 2, (1, 8, 500)).sizes == [8, 64]
    assert Buckets(256, 1, (1, 32)).size_for(33) == 256
