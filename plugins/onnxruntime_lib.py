"""The one place an ONNX Runtime session is made: the loader beneath the onnxruntime backends (the CPU
runner and the CUDA one) and beneath export's own looks at a graph (`quantize`'s held-out scores, the
tensors of per-layer parity), which run graphs that are not model entries yet and sit below the
runners' registry. Imports onnxruntime only when a session is asked for (the server's import of this
module costs nothing)."""

from pathlib import Path

from prelu_deploy import confined_threads

CPU = ("CPUExecutionProvider",)


def load_onnxruntime():
    """The onnxruntime module. Where it is not installed, the ModuleNotFoundError goes on up: the console
    script answers it with the extra that brings it (cli/main.py: EXTRA_FOR), exit 2."""
    import onnxruntime

    return onnxruntime


def new_session(
    model: bytes | str | Path,
    providers=CPU,
    threads: int | None = None,
    spinning: bool = True,
    optimise: bool = True,
    log_severity: int | None = None,
    fallback: bool = True,
):
    """An InferenceSession on `model` (the graph's bytes, or its path).

    threads: the intra-op pool (default: the cores this process may use, where ONNX Runtime's own
    default would escape taskset and cpusets). spinning=False: idle threads sleep at once, fair to
    whatever runs next. optimise=False: no graph optimisation, so every tensor is what the graph says.
    fallback=False: no silent fallback to the CPU (a GPU runner that ran on the CPU would lie)."""
    ort = load_onnxruntime()
    opts = ort.SessionOptions()
    if threads := threads or confined_threads():
        opts.intra_op_num_threads = threads
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimise:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if log_severity is not None:
        opts.log_severity_level = log_severity
    model = model if isinstance(model, bytes) else str(model)
    if fallback:
        return ort.InferenceSession(model, opts, providers=list(providers))
    return ort.InferenceSession(model, opts, providers=list(providers), enable_fallback=0)
