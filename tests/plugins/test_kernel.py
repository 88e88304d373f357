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


class _FakeStream:
    """CuPy's Stream as `launch` uses it: a context manager that makes itself current."""

    current = None

    def __init__(self, ptr: int):
        self.ptr = ptr

    def __enter__(self):
        _FakeStream.current = self
        return self

    def __exit__(self, *exc):
        _FakeStream.current = None


def _fake_cupy(major: int, launches: list):
    """A stand-in for the parts of CuPy 13 or 14 that `launch` touches, with their real signatures and
    refusals (checked against the cupy-cuda12x 13.6.0 and cupy-cuda13x 14.2.0 wheels, imported without a
    GPU: 13 has no Stream.from_external; 14's refuses an int with this TypeError and warns on ExternalStream)."""
    import types
    import warnings

    class Stream(_FakeStream):
        pass

    def external(ptr, device_id=-1):
        if major >= 14:
            warnings.warn("ExternalStream is deprecated. Use Stream.from_external() instead", DeprecationWarning)
        return Stream(int(ptr))

    if major >= 14:

        def from_external(cls, obj):
            proto = getattr(type(obj), "__cuda_stream__", None)
            if proto is None:
                raise TypeError(
                    f"Object of type {type(obj).__name__} does not implement the CUDA stream protocol (__cuda_stream__ method)"
                )
            version, ptr = obj.__cuda_stream__()
            assert version == 0
            return cls(ptr)

        Stream.from_external = classmethod(from_external)

    class RawModule:
        def __init__(self, code, options=()):
            assert "prelu_f32" in code

        def get_function(self, name):
            return lambda grid, block, args: launches.append((name, grid, block, _FakeStream.current.ptr, args))

    return types.SimpleNamespace(
        __version__=f"{major}.0.0", RawModule=RawModule, cuda=types.SimpleNamespace(Stream=Stream, ExternalStream=external)
    )


@pytest.mark.parametrize("major", [13, 14])
def test_launch_runs_on_the_given_stream_with_cupy_13_and_14(monkeypatch, major):
    """Runs anywhere: `launch` against CuPy's stream API as 13 and 14 define it (a call the real CuPy would
    refuse fails here: CuPy 14.2's from_external(int) broke 16/16 kernel tests on an H200)."""
    import sys
    import warnings

    from prelu_deploy.plugins import kernel

    launches = []
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(major, launches))
    kernel._kernels.cache_clear()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # no deprecated call on 14
            kernel.launch(4096, 8192, 1000, False, -0.3, stream_ptr=0xBEEF)
            kernel.launch(4096, 8192, 1000, True, 0.5, stream_ptr=0xCAFE)
    finally:
        kernel._kernels.cache_clear()
    assert [(name, stream) for name, _, _, stream, _ in launches] == [("prelu_f32", 0xBEEF), ("prelu_f16", 0xCAFE)]
    assert launches[0][1:3] == ((1,), (kernel.THREADS,)) and int(launches[0][4][4]) == 250  # 250 float4 vectors
