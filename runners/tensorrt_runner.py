"""TensorRT runner on a plan built by `prelu-deploy build` (a `<name>_trt` entry). It checks the
entry against the installed TensorRT and the GPU before deserialising, registers the plugin when the
plan uses it, allocates device I/O once per batch size, and runs on its own CUDA stream (CuPy).
No torch. The checks run anywhere; deserialising and running need an NVIDIA GPU. One runner holds
one execution context and stream: the server makes one runner per instance, never shares one."""

import numpy as np

from prelu_deploy.errors import ModelDirError, PreluDeployError
from prelu_deploy.manifest import ModelEntry
from prelu_deploy.plugins.tensorrt_lib import load_tensorrt, unsupported_cc
from prelu_deploy.runners.runner import BaseRunner


class TensorRTRunner(BaseRunner):
    name = "tensorrt"

    def __init__(self, entry: ModelEntry, device: str = "cuda", precision: str | None = None):
        super().__init__(entry.verified(), device, precision)  # a plan runs as built
        device = self.device_index
        t = entry.tensorrt
        trt, flavour = load_tensorrt()
        if (flavour, trt.__version__) != (t.flavour, t.version):
            raise ModelDirError(
                f"{entry.path}: plan built by {t.flavour} {t.version}, but this is {flavour} "
                f"{trt.__version__}; rebuild it with `prelu-deploy build`"
            )
        try:
            import cupy

            cc = cupy.cuda.Device(device).compute_capability  # e.g. "90"
        except Exception as err:  # no CuPy, no driver, no GPU
            raise PreluDeployError(f"the TensorRT runner needs CuPy and an NVIDIA GPU ({err})") from None
        cc = f"{cc[:-1]}.{cc[-1]}"
        if why := unsupported_cc(flavour, cc):  # said before the library is asked, and truthfully
            raise ModelDirError(f"{entry.path}: {why}")
        targets = t.target_compute_capabilities
        if targets != ["library default"] and cc not in targets:
            raise ModelDirError(
                f"{entry.path}: plan targets compute capability {', '.join(targets)}; this GPU is "
                f"{cc}: rebuild with --target-cc {cc}"
            )
        if t.uses_registered_plugin:
            from prelu_deploy.plugins.trt_plugin import register_plugins

            register_plugins()
        self._cupy, self._device = cupy, cupy.cuda.Device(device)
        self._device.use()  # the engine, context, stream and buffers live on this device
        self._engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(entry.artifact_bytes())
        if self._engine is None:  # its own log above says why; no guess of ours here
            raise ModelDirError(
                f"{entry.path}: {flavour} {trt.__version__} refused the plan on this GPU (compute "
                f"capability {cc}); its log above says why"
            )
        self._context = self._engine.create_execution_context()
        self._stream = cupy.cuda.Stream(non_blocking=True)
        self._events = [cupy.cuda.Event() for _ in range(4)]  # around copy in, inference, copy out
        self._buffers: dict[int, tuple] = {}

    def _io(self, n: int):
        """Device input and output buffers for batch size n, allocated once."""
        if n not in self._buffers:
            cp = self._cupy
            self._buffers[n] = (
                cp.empty((n, *self.entry.input.dims), cp.float32),
                cp.empty((n, *self.entry.output.dims), cp.float32),
            )
        return self._buffers[n]

    def _run(self, batch: np.ndarray) -> np.ndarray:
        with self._device:  # current on whichever thread runs us (one server instance = one thread)
            return self._run_on_device(batch)

    def _run_on_device(self, batch: np.ndarray) -> np.ndarray:
        d_in, d_out = self._io(len(batch))
        start, copied_in, inferred, copied_out = self._events
        name_in, name_out = self.entry.input.name, self.entry.output.name
        with self._stream:
            start.record(self._stream)
            d_in.set(batch, stream=self._stream)
            copied_in.record(self._stream)
            self._context.set_input_shape(name_in, tuple(batch.shape))
            self._context.set_tensor_address(name_in, d_in.data.ptr)
            self._context.set_tensor_address(name_out, d_out.data.ptr)
            if not self._context.execute_async_v3(self._stream.ptr):
                raise RuntimeError("TensorRT failed to enqueue the inference")
            inferred.record(self._stream)
            out = d_out.get(stream=self._stream)
            copied_out.record(self._stream)
        self._stream.synchronize()
        elapsed = self._cupy.cuda.get_elapsed_time
        self.last_timings = {
            "h2d_ms": elapsed(start, copied_in),
            "compute_ms": elapsed(copied_in, inferred),
            "d2h_ms": elapsed(inferred, copied_out),
        }
        return out

    def close(self) -> None:
        self._stream.synchronize()
        self._buffers.clear()
        self._context = self._engine = None
