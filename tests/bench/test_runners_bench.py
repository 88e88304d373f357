"""`prelu-deploy bench` in-process: the statistics on known samples, the measuring loop, and real runs of
the command (torch and ONNX Runtime, the lowerings, a model directory and an architecture): a model directory
on ONNX Runtime (its table) by the console script as a process, which imports no torch; the other runs by
its main() in this process, where torch and the exporter are imported already (a new interpreter spent
~8 s of CPU importing them again)."""

import json
import time
from pathlib import Path

import numpy as np
import pytest

from prelu_deploy.bench.timing import interleaved, summary


def test_summary_on_known_samples():
    s = summary([i / 1000 for i in range(1, 101)], items=8)  # 1 … 100 ms, 8 images a call
    assert (s["n"], s["min_ms"], s["max_ms"]) == (100, pytest.approx(1.0), pytest.approx(100.0))
    assert s["mean_ms"] == pytest.approx(50.5) and s["median_ms"] == pytest.approx(50.5)
    # linear interpolation between order statistics (numpy's default, Excel's PERCENTILE.INC)
    assert (s["p90_ms"], s["p95_ms"], s["p99_ms"]) == (pytest.approx(90.1), pytest.approx(95.05), pytest.approx(99.01))
    assert s["std_ms"] == pytest.approx(28.866, abs=1e-3) and s["cv"] == pytest.approx(28.866 / 50.5, abs=1e-4)
    assert s["high_cv"] and s["throughput"] == pytest.approx(8 / 0.0505)
    steady = summary([0.002] * 10)
    assert steady["median_ms"] == pytest.approx(2.0) and steady["cv"] == pytest.approx(0.0) and not steady["high_cv"]
    assert steady["throughput"] == pytest.approx(500.0)
    assert summary([]) == {"n": 0}


def test_the_lowerings_are_exports():
    from prelu_deploy.bench.runners import LOWERINGS as BENCHED
    from prelu_deploy.export.lowering import LOWERINGS

    assert BENCHED == LOWERINGS  # a copy, so that benchmarking a model directory needs no onnx import


def test_interleaved_runs_round_robin_after_warmup():
    calls = []
    samples = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, warmup=2, runs=3)
    assert calls == ["a", "b"] * 5 and [len(v) for v in samples.values()] == [3, 3]


def test_interleaved_honours_time_windows_and_the_cap():
    stamps = []
    start = time.perf_counter()
    samples = interleaved({"a": lambda: stamps.append(time.perf_counter())}, warmup=1, runs=2, warmup_s=0.1, duration_s=0.2)
    measured = stamps[-len(samples["a"]) :]
    assert stamps[len(stamps) - len(measured)] - start >= 0.1  # warm-up lasted its time
    assert measured[-1] - measured[0] >= 0.19 and len(measured) > 2  # so did the measured window
    assert len(interleaved({"a": lambda: None}, warmup=0, runs=5, duration_s=60, max_runs=7)["a"]) == 7


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory, exported):
    return exported(tmp_path_factory.mktemp("repo"), "digits")  # the run's one export of the shipped checkpoint (max batch 32)


FAST = ("--warmup", "2", "--warmup-s", "0", "--runs", "5", "--duration", "0.1")


@pytest.mark.slow
@pytest.mark.filterwarnings("error::matplotlib.MatplotlibDeprecationWarning")  # the plot keeps working with the next Matplotlib
def test_bench_an_architecture_across_backends_and_lowerings(cli_in_process, tmp_path):
    out = tmp_path / "reports"
    proc = cli_in_process(
        "bench",
        "digits_prelu",
        "--backend",
        "torch,onnxruntime",
        "--prelu-mode",
        "native,leaky,plugin",
        "--batch",
        "1,4",
        *FAST,
        "--out",
        out,
        "--plot",
        "--json",
    )
    r = json.loads(proc.stdout)
    assert r["candidates"] == ["torch", "onnxruntime:native", "onnxruntime:leaky", "onnxruntime:plugin"]
    assert r["baseline"] == "torch" and r["machine"]["cores"] >= 1 and r["versions"]["onnxruntime"]
    assert r["command"].startswith("prelu-deploy bench digits_prelu")
    assert [(x["batch"], x["label"]) for x in r["results"]] == [(b, c) for b in (1, 4) for c in r["candidates"]]
    for x in r["results"]:
        assert x["n"] >= 5 and x["min_ms"] <= x["median_ms"] <= x["p90_ms"] <= x["p99_ms"] <= x["max_ms"]
        assert x["max_abs_diff_vs_baseline"] < 1e-4 * max(1.0, x["logit_scale"])  # every lowering computes the same
        assert x["throughput"] == pytest.approx(x["batch"] * 1e3 / x["mean_ms"])
        # roofline: the model's FLOPs at the measured median, against the GEMM measured in the run
        assert x["gflops"] == pytest.approx(r["flops_per_image"] * x["batch"] / (x["median_ms"] * 1e6))
        assert x["gemm_fraction"] == pytest.approx(x["gflops"] / r["gemm"]["cpu"]["gflops"])
    torch_rows = [x for x in r["results"] if x["label"] == "torch"]
    assert all(x["speedup_vs_baseline"] == 1.0 for x in torch_rows)
    assert r["flops_per_image"] > 1e6 and r["gemm"]["cpu"]["gflops"] > 0.1
    files = sorted(out.iterdir(), key=lambda f: f.suffix)
    assert [f.suffix for f in files] == [".json", ".md", ".png"]
    assert json.loads(files[0].read_text())["results"] == r["results"]
    md = files[1].read_text()
    assert "| 4 | onnxruntime:plugin |" in md and "speed-up vs torch" in md and "Command: `prelu-deploy bench" in md
    assert files[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and files[2].stat().st_size > 10_000


def test_bench_a_model_directory_uses_it_and_reexports_other_lowerings(cli, cli_in_process, tmp_path, digits_dir):
    proc = cli_in_process(
        "bench",
        digits_dir,
        "--backend",
        "onnxruntime",
        "--prelu-mode",
        "leaky,native",
        "--batch",
        "2",
        "--baseline",
        "onnxruntime:leaky",
        *FAST,
        "--out",
        tmp_path,
        "--json",
    )
    r = json.loads(proc.stdout)
    leaky, native = r["results"]
    assert leaky["model_dir"] == str(digits_dir) and native["model_dir"] != str(digits_dir)  # re-exported
    assert leaky["speedup_vs_baseline"] == 1.0 and native["max_abs_diff_vs_baseline"] < 1e-4
    assert r["flops_per_image"] == json.loads((digits_dir / "manifest.json").read_text())["flops_per_image"]
    # the table on stdout without --json, by the console script as a process
    table = cli("bench", digits_dir, "--backend", "onnxruntime", "--batch", "1", *FAST, "--out", tmp_path).stdout
    assert "onnxruntime:leaky" in table and "wrote" in table


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["digits_prelu", "--backend", "tensorflow"],
            "--backend: unknown 'tensorflow'; choose from onnxruntime, tensorrt, torch, torch-compile",
        ),
        (["digits_prelu", "--prelu-mode", "relu"], "--prelu-mode: unknown 'relu'"),
        (["digits_prelu", "--batch", "1,x"], "--batch: '1,x' is not a comma-separated list of ints"),
        (["digits_prelu", "--batch", "0"], "--batch: batch sizes must be ≥ 1"),
        (["digits_prelu", "--precision", "bf16"], "--precision: unknown 'bf16'"),
        (["no_such_net"], "'no_such_net' is neither a model directory nor an architecture"),
        (["digits_prelu", "--baseline", "tensorrt"], "--baseline 'tensorrt' is none of this run's candidates"),
        (["digits_prelu", "--runs", "10", "--max-runs", "5"], "--max-runs ≥ --runs"),
        (["digits_prelu", "--device", "tpu"], "--device 'tpu': choose cpu, cuda or cuda:N"),
    ],
)
def test_bad_arguments_are_refused(cli_in_process, tmp_path, args, message):
    proc = cli_in_process("bench", *FAST, *args, "--out", tmp_path, check_rc=2)
    assert message in proc.stderr and not list(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # its compiler's import
def test_torch_compile_is_a_candidate(cli_in_process, tmp_path, digits_dir):
    args = ("--backend", "torch,torch-compile", "--batch", "2", *FAST, "--out", tmp_path, "--json")
    proc = cli_in_process("bench", digits_dir, *args)
    eager, compiled = json.loads(proc.stdout)["results"]
    assert (eager["label"], compiled["label"]) == ("torch", "torch-compile") and compiled["n"] >= 5
    assert compiled["max_abs_diff_vs_baseline"] < 1e-4 * max(1.0, compiled["logit_scale"])


def test_a_batch_over_the_directorys_limit_and_an_unwritable_out_are_refused(cli_in_process, tmp_path, digits_dir):
    assert "--batch 64 is over" in cli_in_process("bench", digits_dir, "--batch", "64", "--out", tmp_path, check_rc=2).stderr
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert "cannot create the report folder" in cli_in_process("bench", digits_dir, "--out", blocker / "sub", check_rc=2).stderr


def test_torch_on_a_missing_gpu_says_so(cli_in_process, tmp_path, digits_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the message given where torch has no CUDA")
    proc = cli_in_process(
        "bench", digits_dir, "--backend", "torch", "--device", "cuda", "--batch", "1", *FAST, "--out", tmp_path, check_rc=2
    )
    assert "torch device 'cuda' is not available here" in proc.stderr


def test_tensorrt_without_a_gpu_says_so(cli_in_process, tmp_path, digits_dir):
    from ..conftest import _gpu_present, tensorrt_or_skip

    tensorrt_or_skip()

    if _gpu_present():
        pytest.skip("checks the message given where there is no GPU")
    proc = cli_in_process("bench", digits_dir, "--backend", "tensorrt", "--batch", "1", *FAST, "--out", tmp_path, check_rc=1)
    assert "the TensorRT runner needs CuPy and an NVIDIA GPU" in proc.stderr


@pytest.mark.gpu
def test_bench_tensorrt_on_the_gpu_reports_gpu_times(tensorrt_gpu, cli, tmp_path, digits_dir):
    proc = cli(
        "bench",
        digits_dir,
        "--backend",
        "torch,torch-compile,onnxruntime,tensorrt",
        "--device",
        "cuda",
        "--precision",
        "fp32,fp16",
        "--batch",
        "1,8",
        *FAST,
        "--out",
        tmp_path,
        "--json",
    )
    r = json.loads(proc.stdout)
    assert r["candidates"][:2] == ["torch:cuda", "torch-compile:cuda"] and r["baseline"] == "torch:cuda"
    gpu = [x for x in r["results"] if x["backend"] == "tensorrt"]
    assert len(gpu) == 4 and all(x["gpu"]["compute_ms"] > 0 and x["gpu"]["h2d_ms"] > 0 for x in gpu)
    assert all(x["gpu"]["compute_ms"] <= x["median_ms"] * 1.5 for x in gpu) and "cuda_fp16" in r["gemm"]
    assert all(np.isfinite(x["max_abs_diff_vs_baseline"]) for x in gpu)
    assert any(Path(p).suffix == ".md" for p in map(str, tmp_path.iterdir()))


def test_without_torch_the_torch_runner_says_how_to_get_it(digits_dir):
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None\n"  # as if not installed (a serve-only install)
        "from prelu_deploy.runners.registry import get_runner\n"
        f"try:\n    get_runner('torch', {str(digits_dir)!r})\nexcept Exception as e:\n    print(type(e).__name__, e)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.startswith("ModuleNotFoundError") and "torch" in out  # the console script names the extra (tests/cli)


def test_int8_is_a_candidate_beside_fp32(cli_in_process, tmp_path, digits_dir):
    """--precision fp32,int8: the directory's graph and a QDQ graph quantized on demand, interleaved;
    the INT8 answers stay close to fp32's (same top-1 on the golden held-out rows)."""
    proc = cli_in_process(
        "bench",
        digits_dir,
        "--backend",
        "onnxruntime",
        "--precision",
        "fp32,int8",
        "--batch",
        "4",
        *FAST,
        "--out",
        tmp_path,
        "--json",
    )
    fp32, int8 = json.loads(proc.stdout)["results"]
    assert (fp32["label"], int8["label"]) == ("onnxruntime:leaky", "onnxruntime:leaky:int8") and int8["precision"] == "int8"
    assert 0 < int8["max_abs_diff_vs_baseline"] < 0.2 * fp32["logit_scale"]
