"""The GPU kernel of ChannelSharedPReLU: y = x if x > 0 else slope·x, fp32 and fp16, any size.

Written with CuPy (on the lent GPU machines' image): its RawKernel compiles CUDA C through NVRTC at
first use and launches on any stream TensorRT hands us (`external_stream`), with no build step and no
torch. Each thread handles one 16-byte vector (4 floats or 8 halves) with a scalar tail, so
loads and stores are full-width and coalesced (when the pointers are 16-byte aligned; otherwise
the scalar path does it all); a grid-stride loop covers any size. Imported lazily:
only `enqueue` on a GPU needs it.
"""

from functools import lru_cache

_SOURCE = r"""
#include <cuda_fp16.h>
extern "C" __global__ void prelu_f32(const float4* __restrict__ x, float4* __restrict__ y,
                                     const float* __restrict__ xs, float* __restrict__ ys,
                                     long long n_vec, long long n, float a) {
    long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n_vec; i += stride) {
        float4 v = x[i];
        v.x = v.x > 0.f ? v.x : a * v.x;  v.y = v.y > 0.f ? v.y : a * v.y;
        v.z = v.z > 0.f ? v.z : a * v.z;  v.w = v.w > 0.f ? v.w : a * v.w;
        y[i] = v;
    }
    for (long long i = n_vec * 4 + blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += stride) {
        float v = xs[i];  ys[i] = v > 0.f ? v : a * v;
    }
}
extern "C" __global__ void prelu_f16(const uint4* __restrict__ x, uint4* __restrict__ y,
                                     const __half* __restrict__ xs, __half* __restrict__ ys,
                                     long long n_vec, long long n, float a) {
    long long stride = (long long)blockDim.x * gridDim.x;
    const __half ah = __float2half(a), zero = __float2half(0.f);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n_vec; i += stride) {
        uint4 v = x[i];
        __half* e = reinterpret_cast<__half*>(&v);
        #pragma unroll
        for (int k = 0; k < 8; ++k) e[k] = __hgt(e[k], zero) ? e[k] : __hmul(ah, e[k]);
        y[i] = v;
    }
    for (long long i = n_vec * 8 + blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += stride) {
        __half v = xs[i];  ys[i] = __hgt(v, zero) ? v : __hmul(ah, v);
    }
}
"""

THREADS = 256


@lru_cache(maxsize=None)
def _kernels():
    import cupy

    module = cupy.RawModule(code=_SOURCE, options=("--std=c++17",))
    return module.get_function("prelu_f32"), module.get_function("prelu_f16")


def plan(n: int, half: bool, x_ptr: int, y_ptr: int, sm_count: int = 132) -> tuple[int, int]:
    """(vectors, blocks) for n elements: 16-byte vectors only when both pointers are 16-byte aligned
    (a misaligned vector load faults — cudaErrorMisalignedAddress — and breaks the CUDA context); the
    scalar tail covers the rest."""
    per_vec = 8 if half else 4
    n_vec = n // per_vec if x_ptr % 16 == 0 and y_ptr % 16 == 0 else 0
    work = max(n_vec, n - n_vec * per_vec)
    return n_vec, max(1, min(-(-work // THREADS), sm_count * 8))


class StreamRef:
    """A raw `cudaStream_t` address as an object of the CUDA stream protocol (`__cuda_stream__` returns
    (version 0, address)): what CuPy 14's `Stream.from_external` takes; it refuses a bare int."""

    def __init__(self, ptr: int):
        self.ptr = ptr

    def __cuda_stream__(self) -> tuple[int, int]:
        return 0, self.ptr


def external_stream(cupy, stream_ptr: int):
    """A CuPy stream on someone else's `cudaStream_t`: `Stream.from_external(StreamRef)` on CuPy 14
    (where `ExternalStream` is deprecated), `ExternalStream(ptr)` on CuPy 13, which has no from_external."""
    from_external = getattr(cupy.cuda.Stream, "from_external", None)
    return from_external(StreamRef(stream_ptr)) if from_external else cupy.cuda.ExternalStream(stream_ptr)


def launch(x_ptr: int, y_ptr: int, n: int, half: bool, slope: float, stream_ptr: int, sm_count: int = 132) -> None:
    """y = prelu(x) on device pointers (n elements), on the CUDA stream `stream_ptr`."""
    import cupy
    import numpy as np

    f32, f16 = _kernels()
    n_vec, blocks = plan(n, half, x_ptr, y_ptr, sm_count)
    with external_stream(cupy, stream_ptr):
        args = (x_ptr, y_ptr, x_ptr, y_ptr, np.int64(n_vec), np.int64(n), np.float32(slope))
        (f16 if half else f32)((blocks,), (THREADS,), args)
