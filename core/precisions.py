"""Precisions in one table: what an artifact computes in, what `build` asks TensorRT for, and what each
backend may compute an entry in on each device. The manifest, `build`, the runners' registry and the
benchmarks all read it here."""

from prelu_deploy.errors import UsageError

PRECISIONS = ("fp32", "fp16", "int8")  # what an artifact computes in: int8 comes from `quantize`
BUILD_PRECISIONS = ("fp32", "fp16")  # what `build --precision` asks TensorRT for
# What a runner may compute in (`--precision`): the artifacts' plus tf32 (fp32 storage, TF32 math: an opt-in on GPUs)
RUN_PRECISIONS = ("fp32", "tf32", "fp16", "int8")

_AS_STORED = {p: (p,) for p in PRECISIONS}
_FP32_ON_A_GPU = ("fp32", "tf32", "fp16")
_CHECKPOINT = {"cpu": {p: ("fp32",) for p in PRECISIONS}, "cuda": {p: _FP32_ON_A_GPU for p in PRECISIONS}}

# backend → device kind → {the entry's precision: what a runner may compute it in, its default first}.
# ONNX Runtime's CUDA provider runs an fp32 graph with TF32 on request, or the fp16 graph `build` would
# make; a plan runs as built; torch runs the source checkpoint, whatever the entry's artifact computes in.
RUNS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "onnxruntime": {"cpu": _AS_STORED, "cuda": {**_AS_STORED, "fp32": _FP32_ON_A_GPU}},
    "tensorrt": {"cuda": _AS_STORED},
    "torch": _CHECKPOINT,
    "torch-compile": _CHECKPOINT,
}


def run_precisions(backend: str, device_kind: str, stored: str) -> tuple[str, ...]:
    """What `backend` on `device_kind` (cpu | cuda) may compute an entry stored in `stored` in, its default first."""
    return RUNS[backend][device_kind][stored]


def run_precision(backend: str, device_kind: str, entry_name: str, stored: str, asked: str | None) -> str:
    """The precision a runner computes in: `asked`, or the default; UsageError (exit 2) for one this
    backend cannot honour here, saying where it could."""
    allowed = run_precisions(backend, device_kind, stored)
    if asked is None or asked in allowed:
        return asked or allowed[0]
    where = "on the GPU" if device_kind == "cuda" else "on the CPU"
    gpu = RUNS[backend].get("cuda", {}).get(stored, ())
    more = " and ".join(p for p in gpu if p not in allowed)
    hint = f"; {more} need --device cuda" if device_kind == "cpu" and asked in gpu else ""
    raise UsageError(f"--precision {asked!r}: {entry_name} ({stored}) runs on {backend} {where} as {' | '.join(allowed)}{hint}")
