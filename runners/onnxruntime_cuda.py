"""ONNX Runtime on an NVIDIA GPU: the CUDA execution provider (onnxruntime-gpu, the `gpu` extra), with
I/O bound to device buffers and one CUDA graph captured per batch-size bucket.

- Precision, said truthfully: `fp32` runs with TF32 off (`use_tf32=0`: the provider's default is on,
  which errs beyond the fp32 tolerance, docs/gpu.md); `tf32` turns it on (opt-in, its own tolerance);
  `fp16` runs the graph through the same fp16 conversion `build` uses — with `io_fp16` its input and
  output stay float16 too, so the host→device copy carries half the bytes (the cast is on the host).
- cuDNN's convolution algorithm search (`conv_algo`: EXHAUSTIVE, ONNX Runtime's default, HEURISTIC or
  DEFAULT) and NHWC kernels (`nhwc`) are options that `prelu-deploy gpu-check` measures.
- Buffers: per bucket a device input and output (`OrtValue` on 'cuda') bound once with an IOBinding;
  a batch is padded into a host staging buffer of its bucket (page-locked when CuPy is there, so the
  host→device copy is a DMA), copied in place into the bound input, run with `run_with_iobinding`,
  and the real rows read back.
- CUDA graphs (`enable_cuda_graph=1`): ONNX Runtime replays a captured graph only for the same bound
  addresses and shapes, so each bucket has its own graph, told apart by the `gpu_graph_id` run option
  (1, 2, …: 0 is ONNX Runtime's own, -1 turns capture off). ONNX Runtime keeps captured graphs per
  thread: every bucket is captured on the thread that makes the runner (parity, bench), and again on
  another thread's first batch of that bucket (a server's runner thread: its first request per bucket
  pays for the capture). Captures are alone on the GPU (`CaptureGate`). A graph whose nodes do not all
  run on the CUDA provider, or a capture CUDA refuses, turns graphs off; the runner says why (`graph_note`).

Runs on a GPU only; docs/gpu.md says where it ran and with what result."""

import logging
import threading
from contextlib import contextmanager

import numpy as np

from prelu_deploy.errors import PreluDeployError, UsageError
from prelu_deploy.manifest import ModelEntry
from prelu_deploy.plugins.onnxruntime_lib import new_session
from prelu_deploy.runners.buckets import Buckets
from prelu_deploy.runners.cuda import GPU_INSTALL, ort_cuda_missing
from prelu_deploy.runners.runner import BaseRunner

log = logging.getLogger("prelu_deploy.runners")
CAPTURE_RUNS = 3  # per bucket, after one uncaptured run (its allocations): the capture, then replays


def graph_for(entry: ModelEntry, precision: str, io_fp16: bool = False) -> bytes:
    """The ONNX graph a precision runs: the entry's own, or for fp16 the conversion `build` uses
    (with float16 inputs and outputs when `io_fp16`)."""
    model = entry.artifact_bytes()  # the bytes its manifest vouches for (manifest.load_entry)
    if precision != "fp16":
        return model
    import onnx

    from prelu_deploy.export.fp16 import to_fp16

    return to_fp16(onnx.load_from_string(model), keep_io_types=not io_fp16).SerializeToString()


CONV_ALGOS = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")  # cudnn_conv_algo_search; ONNX Runtime's default: EXHAUSTIVE


def provider_options(
    device_id: int, precision: str, cuda_graphs: bool, conv_algo: str | None = None, nhwc: bool = False
) -> dict[str, str]:
    """CUDAExecutionProvider options: TF32 only for the tf32 precision; ONNX Runtime's own defaults for
    the cuDNN search and layout unless asked."""
    options = {
        "device_id": str(device_id),
        "use_tf32": "1" if precision == "tf32" else "0",
        "enable_cuda_graph": "1" if cuda_graphs else "0",
    }
    if conv_algo is not None:
        if conv_algo not in CONV_ALGOS:
            raise UsageError(f"conv_algo {conv_algo!r}: choose {' | '.join(CONV_ALGOS)}")
        options["cudnn_conv_algo_search"] = conv_algo
    if nhwc:
        options["prefer_nhwc"] = "1"
    return options


@contextmanager
def quiet_provider_lookup(ort):
    """onnxruntime-gpu first looks for a plugin EP device for the CUDA provider and, finding none,
    logs "No registered plugin EP device found for 'CUDAExecutionProvider'" on its default logger
    before it takes the bundled provider: not a fault, and read as one. The default logger is raised to
    errors while a session is made (sessions log on their own logger, kept at warnings: real warnings
    stay); ONNX Runtime has no getter, so it is put back to its default, warning."""
    with _LOGGER_LOCK:
        ort.set_default_logger_severity(3)
        try:
            yield
        finally:
            ort.set_default_logger_severity(2)


_LOGGER_LOCK = threading.Lock()


def cuda_session(ort, model: bytes, providers: list):
    """An InferenceSession that logs its own warnings but not the provider lookup's, with no silent
    fallback to the CPU: a GPU runner that runs on the CPU would lie in every report."""
    with quiet_provider_lookup(ort):
        return new_session(model, providers, log_severity=2, fallback=False)


def _staging(shape: tuple[int, ...], device_id: int, dtype=np.float32) -> tuple[np.ndarray, bool]:
    """A host buffer, page-locked through CuPy where CuPy is installed."""
    count, dtype = int(np.prod(shape)), np.dtype(dtype)
    try:
        import cupy

        with cupy.cuda.Device(device_id):
            mem = cupy.cuda.alloc_pinned_memory(count * dtype.itemsize)
        host = np.frombuffer(mem, dtype, count).reshape(shape)  # the array keeps `mem` alive
        host[...] = 0
        return host, True
    except Exception:  # no CuPy (or it cannot pin): pageable memory, correct and a little slower
        return np.zeros(shape, dtype), False


class CaptureGate:
    """ONNX Runtime captures in cudaStreamCaptureModeGlobal: while one thread captures, a CUDA call such
    as cudaMalloc or a synchronous copy from any other thread of the process invalidates the capture
    (CUDA error 900). So every run of these runners shares this gate, and a capture (with the
    allocations before it) holds it alone: it waits for the runs in flight, and new runs wait for it."""

    def __init__(self):
        self._cond = threading.Condition()
        self._running, self._capturing = 0, False

    @contextmanager
    def shared(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._capturing)
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._capturing)
            self._capturing = True  # from here new runs wait
            self._cond.wait_for(lambda: self._running == 0)
        try:
            yield
        finally:
            with self._cond:
                self._capturing = False
                self._cond.notify_all()


GATE = CaptureGate()  # one per process: the hazard is process-wide


class _Slot:
    """One bucket's bound buffers, binding and run options."""

    def __init__(self, ort, session, entry: ModelEntry, size: int, device_id: int, graph_id: int | None, dtype=np.float32):
        self.x = ort.OrtValue.ortvalue_from_shape_and_type([size, *entry.input.dims], dtype, "cuda", device_id)
        self.y = ort.OrtValue.ortvalue_from_shape_and_type([size, *entry.output.dims], dtype, "cuda", device_id)
        self.binding = session.io_binding()
        self.binding.bind_ortvalue_input(session.get_inputs()[0].name, self.x)
        self.binding.bind_ortvalue_output(session.get_outputs()[0].name, self.y)
        self.run_options = ort.RunOptions()
        if graph_id is not None:
            self.run_options.add_run_config_entry("gpu_graph_id", str(graph_id))
        self.host, self.pinned = _staging((size, *entry.input.dims), device_id, dtype)


class OnnxRuntimeCudaRunner(BaseRunner):
    name = "onnxruntime"

    def __init__(
        self,
        entry: ModelEntry,
        device: str = "cuda",
        precision: str | None = None,
        cuda_graphs: bool = True,
        conv_algo: str | None = None,
        nhwc: bool = False,
        io_fp16: bool = False,
        buckets: tuple[int, ...] | None = None,
    ):
        super().__init__(entry, device, precision)
        if self.device_kind != "cuda":
            raise UsageError(f"the ONNX Runtime CUDA runner runs on cuda[:N], not {device!r}")
        self.device_id = self.device_index
        try:
            import onnxruntime as ort
        except ImportError:
            raise UsageError(ort_cuda_missing(None) or GPU_INSTALL) from None
        if why := ort_cuda_missing(ort):
            raise UsageError(why)
        self._ort, self.device = ort, f"cuda:{self.device_id}"
        if io_fp16 and self.precision != "fp16":
            raise UsageError(f"io_fp16: float16 inputs and outputs are for the fp16 precision, not {self.precision}")
        self._conv_algo, self._nhwc = conv_algo, nhwc
        self._io = np.float16 if io_fp16 else np.float32
        model = graph_for(entry, self.precision, io_fp16)
        self.graph_note = None
        try:
            self.session = self._session(model, cuda_graphs)
        except PreluDeployError as err:
            if not cuda_graphs:
                raise
            self.session, cuda_graphs = self._session(model, False), False  # raises again if the GPU is the cause
            self._graphs_off(f"the session refused graph capture ({err})")
        self.cuda_graphs = cuda_graphs
        p = self.profile
        self.buckets = Buckets(p.max, p.min, buckets)
        self._graph_ids = {size: graph_id for graph_id, size in enumerate(self.buckets, start=1)}
        self._uncaptured = ort.RunOptions()
        self._uncaptured.add_run_config_entry("gpu_graph_id", "-1")
        self._slots: dict[int, _Slot] = {}
        self._ready: set[tuple[int, int]] = set()  # (thread, bucket): buffers made and, with graphs, captured there
        if cuda_graphs:  # this thread's graphs now, largest bucket first (its allocations serve the smaller ones)
            try:
                for size in sorted(self.buckets, reverse=True):
                    self._prepare(size)
            except Exception as err:  # a capture CUDA refused: run without graphs, and say so
                self._slots.clear()
                self._ready.clear()
                self.session, self.cuda_graphs = self._session(model, False), False
                self._graphs_off(
                    f"capture failed ({str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__})"
                )

    def _graphs_off(self, why: str) -> None:
        self.graph_note = f"CUDA graphs off: {why}"
        log.warning("%s: %s", self.entry.name, self.graph_note)

    @property
    def pinned(self) -> bool | None:
        """Whether the host staging buffers are page-locked (None before the first is made)."""
        return all(s.pinned for s in self._slots.values()) if self._slots else None

    def _prepare(self, size: int) -> None:
        """A bucket's buffers (once) and, with graphs, its graph on the calling thread: ONNX Runtime keeps
        captured graphs in a per-thread context, so a server's runner thread captures its own on its
        first batch of each bucket. One uncaptured run (`gpu_graph_id=-1`) allocates what the capture
        needs; then the capture and replays. Alone on the GPU while it runs (`GATE`)."""
        with GATE.exclusive():
            if size not in self._slots:
                self._slots[size] = _Slot(
                    self._ort,
                    self.session,
                    self.entry,
                    size,
                    self.device_id,
                    self._graph_ids[size] if self.cuda_graphs else None,
                    self._io,
                )
            slot = self._slots[size]
            if self.cuda_graphs:
                slot.x.update_inplace(slot.host)
                self.session.run_with_iobinding(slot.binding, self._uncaptured)
                for _ in range(CAPTURE_RUNS):
                    self.session.run_with_iobinding(slot.binding, slot.run_options)
            self._ready.add((threading.get_ident(), size))

    def _session(self, model: bytes, cuda_graphs: bool):
        ort, entry = self._ort, self.entry
        providers = [
            ("CUDAExecutionProvider", provider_options(self.device_id, self.precision, cuda_graphs, self._conv_algo, self._nhwc))
        ]
        try:
            session = cuda_session(ort, model, providers)
        except Exception as err:  # onnxruntime raises its own types (Fail, RuntimeException, …)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise PreluDeployError(
                f"{entry.path}: ONNX Runtime cannot run {entry.artifact.name} on {self.device_name} ({first})"
            ) from None
        if session.get_providers()[0] != "CUDAExecutionProvider":
            raise UsageError(
                f"ONNX Runtime did not take the CUDA execution provider on {self.device_name} (it has "
                f"{', '.join(session.get_providers())}): no usable NVIDIA GPU, or CUDA/cuDNN libraries "
                f"missing; {GPU_INSTALL}"
            )
        return session

    @property
    def device_name(self) -> str:
        return f"cuda:{self.device_id}"

    def _run(self, batch: np.ndarray) -> np.ndarray:
        size = self.buckets.size_for(len(batch))  # without graphs too: a bounded set of device buffers
        if (threading.get_ident(), size) not in self._ready:
            self._prepare(size)
        slot = self._slots[size]
        with GATE.shared():
            self.buckets.pad(batch, out=slot.host)
            slot.x.update_inplace(slot.host)
            self.session.run_with_iobinding(slot.binding, slot.run_options)  # synchronises before it returns
            out = slot.y.numpy()
        return Buckets.unpad(out, len(batch)).astype(np.float32, copy=False)

    def close(self) -> None:
        self._slots.clear()
        self.session = None
