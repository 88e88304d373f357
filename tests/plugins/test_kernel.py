"""The ChannelSharedPReLU CUDA kernel (CuPy): its launch plan anywhere, its results on a GPU (marked gpu:
skipped here, run on the lent machine). Needs no TensorRT: the kernel is tested on its own."""

import numpy as np
import pytest

from prelu_deploy.plugins import channel_shared_prelu as csp


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("n", [1, 3, 7, 8, 1023, 4097, 1 << 20, (256 << 20) // 4 + 5])
def test_kernel_matches_the_numpy_reference(dtype, n):
    import cupy

    from prelu_deploy.plugins.kernel import launch

    x = cupy.asarray(np.random.default_rng(n).standard_normal(n).astype(dtype))
    y = cupy.empty_like(x)
    stream = cupy.cuda.Stream()
    launch(x.data.ptr, y.data.ptr, n, dtype == np.float16, -0.3, stream.ptr)
    stream.synchronize()
    np.testing.assert_array_equal(cupy.asnumpy(y), csp.reference(cupy.asnumpy(x), -0.3))


def test_the_launch_plan_uses_vectors_only_on_aligned_pointers():
    """Runs anywhere: the kernel's grid. A 4-byte offset (a view into a buffer) must take the scalar path."""
    from prelu_deploy.plugins.kernel import THREADS, plan

    assert plan(1000, False, 0, 256) == (250, -(-250 // THREADS))
    assert plan(1003, True, 4096, 4096) == (125, 1)
    assert plan(1000, False, 4, 256)[0] == 0 and plan(1000, False, 0, 260)[0] == 0  # misaligned: no vectors
    assert plan(1000, False, 4, 256)[1] == -(-1000 // THREADS)  # the scalar tail covers every element
    assert plan(10**9, False, 0, 0, sm_count=132)[1] == 132 * 8  # grid-stride beyond that
