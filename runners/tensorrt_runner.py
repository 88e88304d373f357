"""TensorRT runner on a plan built by `prelu-deploy build` (a `<name>_trt` entry). It checks the
manifest against the installed TensorRT and the GPU before deserialising, registers the plugin when
the plan uses it, allocates device I/O once per batch size, and runs on its own CUDA stream (CuPy).
No torch. The checks run anywhere; deserialising and running need an NVIDIA GPU."""

from pathlib import Path

import numpy as np

from prelu_deploy.errors import ModelDirError, PreluDeployError
from prelu_deploy.manifest import read_model_dir
from prelu_deploy.plugins.tensorrt_lib import load_tensorrt
from prelu_deploy.runners.runner import TensorSpec

PLAN = "1/model.plan"


class TensorRTRunner:
    name = "tensorrt"

    def __init__(self, model_dir: str | Path, device: int = 0, threads: int | None = None):
        self.model_dir = md = read_model_dir(model_dir)
        t = md.manifest.get("tensorrt")
        if not t:
            raise ModelDirError(f"{md.path}: holds no TensorRT plan; make one with `prelu-deploy build {md.path}`")
        if problems := md.verify():
            raise ModelDirError(f"{md.path}: " + "; ".join(problems))
        trt, flavour = load_tensorrt()
        if (flavour, trt.__version__) != (t["flavour"], t["version"]):
            raise ModelDirError(f"{md.path}: plan built by {t['flavour']} {t['version']}, but this is {flavour} "
                                f"{trt.__version__}; rebuild it with `prelu-deploy build`")
        try:
            import cupy

            cc = cupy.cuda.Device(device).compute_capability  # e.g. "90"
        except Exception as err:  # no CuPy, no driver, no GPU
            raise PreluDeployError(f"the TensorRT runner needs CuPy and an NVIDIA GPU ({err})") from None
        targets = t["target_compute_capabilities"]
        if targets != ["library default"] and f"{cc[:-1]}.{cc[-1]}" not in targets:
            raise ModelDirError(f"{md.path}: plan targets compute capability {', '.join(targets)}; this GPU is "
                                f"{cc[:-1]}.{cc[-1]}: rebuild with --target-cc {cc[:-1]}.{cc[-1]}")
        if t["plugin"] and t["plugin"]["path"].startswith("registered"):
            from prelu_deploy.plugins.trt_plugin import register_plugins

            register_plugins()
        self._trt, self._cupy, self.precision = trt, cupy, t["precision"]
        self._engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine((md.path / PLAN).read_bytes())
        if self._engine is None:
            raise ModelDirError(f"{md.path}: TensorRT refused the plan (corrupt, or built for another GPU/library)")
        self._context = self._engine.create_execution_context()
        self._stream = cupy.cuda.Stream(non_blocking=True)
        self._events = [cupy.cuda.Event() for _ in range(4)]  # around copy in, inference, copy out
        self.cuda_graphs = False  # enqueued call by call; benchmarks report it
        self.last_timings: dict[str, float] | None = None
        self._profile = t["profile"]
        self._in, self._out = md.manifest["input"], md.manifest["output"]
        self._buffers: dict[int, tuple] = {}

    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec(self._in["name"], tuple(self._in["shape"]), "FP32")]

    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec(self._out["name"], tuple(self._out["shape"]), "FP32")]

    def _io(self, n: int):
        """Device input and output buffers for batch size n, allocated once."""
        if n not in self._buffers:
            cp = self._cupy
            self._buffers[n] = (cp.empty((n, *self._in["shape"][1:]), cp.float32),
                                cp.empty((n, *self._out["shape"][1:]), cp.float32))
        return self._buffers[n]

    def run(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        if not self._profile["min"] <= n <= self._profile["max"]:
            raise ValueError(f"batch {n} is outside the plan's profile {self._profile['min']}..{self._profile['max']}")
        d_in, d_out = self._io(n)
        start, copied_in, inferred, copied_out = self._events
        with self._stream:
            start.record(self._stream)
            d_in.set(np.ascontiguousarray(batch, np.float32), stream=self._stream)
            copied_in.record(self._stream)
            self._context.set_input_shape(self._in["name"], tuple(batch.shape))
            self._context.set_tensor_address(self._in["name"], d_in.data.ptr)
            self._context.set_tensor_address(self._out["name"], d_out.data.ptr)
            if not self._context.execute_async_v3(self._stream.ptr):
                raise RuntimeError("TensorRT failed to enqueue the inference")
            inferred.record(self._stream)
            out = d_out.get(stream=self._stream)
            copied_out.record(self._stream)
        self._stream.synchronize()
        elapsed = self._cupy.cuda.get_elapsed_time
        self.last_timings = {"h2d_ms": elapsed(start, copied_in), "compute_ms": elapsed(copied_in, inferred),
                             "d2h_ms": elapsed(inferred, copied_out)}
        return out
