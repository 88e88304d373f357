"""Batch-size buckets: a runner that captures one CUDA graph (or compiles one program) per input
shape cannot afford one per batch size, so batches are padded up to the next bucket — the powers of
two up to the largest batch, and that largest batch itself — and the padding rows are dropped from
the answer. Rows are independent in inference (no batch statistics), so padding changes no real row.
One place for it: the graph-capturing runners use it."""

import numpy as np

__all__ = ["Buckets"]


class Buckets:
    """The bucket sizes for batches of `min_batch`..`max_batch` rows."""

    def __init__(self, max_batch: int, min_batch: int = 1, sizes: tuple[int, ...] | None = None):
        """`sizes` replaces the powers of two (a benchmark that runs three batch sizes need not
        capture nine graphs); the largest batch is always a bucket, so every batch fits one."""
        if not 1 <= min_batch <= max_batch:
            raise ValueError(f"batch buckets need 1 ≤ min ≤ max, not {min_batch}..{max_batch}")
        if sizes is None:
            sizes = tuple(1 << k for k in range(max_batch.bit_length()) if min_batch < 1 << k < max_batch) + (min_batch,)
        self.sizes: list[int] = sorted({s for s in sizes if min_batch <= s <= max_batch} | {max_batch})

    def __iter__(self):
        return iter(self.sizes)

    def __len__(self) -> int:
        return len(self.sizes)

    @property
    def max(self) -> int:
        return self.sizes[-1]

    def size_for(self, rows: int) -> int:
        """The smallest bucket that holds `rows`."""
        if not 1 <= rows <= self.max:
            raise ValueError(f"a batch of {rows} rows is outside 1..{self.max}, what these buckets cover")
        return next(s for s in self.sizes if s >= rows)

    def pad(self, batch: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """`batch` padded with zero rows to its bucket; or written into `out` (a staging buffer, as
        many rows as `batch` or more) and padded to its length."""
        if out is None:
            size = self.size_for(len(batch))
            if len(batch) == size:
                return batch
            out = np.empty((size, *batch.shape[1:]), batch.dtype)
        if len(out) < len(batch) or out.shape[1:] != batch.shape[1:]:
            raise ValueError(f"staging buffer of shape {list(out.shape)} cannot hold a batch of shape {list(batch.shape)}")
        out[: len(batch)] = batch
        out[len(batch) :] = 0
        return out

    @staticmethod
    def unpad(result: np.ndarray, rows: int) -> np.ndarray:
        """The real rows of a bucket's answer."""
        return result[:rows]
