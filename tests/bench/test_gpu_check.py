"""`prelu-deploy gpu-check`: without a GPU it says so and exits 0; its phases' code runs here as far as a
CPU allows (the HTTP phase on --device cpu with real servers, the tests phase on a GPU-marked module,
the goals on known numbers); the GPU itself is exercised where one is lent (docs/gpu.md)."""

import json
import time

import pytest

from prelu_deploy.bench import gpu_check, gpu_report

from ..conftest import _gpu_present


@pytest.mark.skipif(_gpu_present(), reason="checks the message given where there is no GPU")
def test_without_a_gpu_it_says_so_and_runs_nothing(cli, cli_in_process, tmp_path):
    proc = cli("gpu-check", "--out", tmp_path / "r")
    assert "no NVIDIA GPU here" in proc.stdout and "pip install -e '.[export,serve,gpu,dev]'" in proc.stdout
    assert not (tmp_path / "r").exists()
    assert "unknown foo" in cli_in_process("gpu-check", "--only", "foo", check_rc=2).stderr  # its main() in this process
    refused = cli_in_process("gpu-check", "--layouts", "1,²", check_rc=2).stderr  # '²': a digit to str.isdigit(), not to int()
    assert "--layouts: ² is neither a worker count nor 'default'" in refused


@pytest.mark.slow
def test_the_tests_phase_counts_from_junit(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # its pytest is a user's, not one of this run's workers
    cfg = gpu_check.GpuCheck(tests="tests/plugins/test_kernel.py", test_processes=0)
    t = gpu_check.phase_tests(cfg, 120)
    assert t["ran"] and t["failed"] == 0 and t["passed"] + t["skipped"] == 16  # -m gpu: the 16 kernel cases only
    if not _gpu_present():
        assert t["skipped"] == 16 and any("needs an NVIDIA GPU" in why for why in t["skips"])


@pytest.mark.slow
def test_the_http_phase_drives_model_floor_and_grpc_and_stops_its_servers(tmp_path):
    cfg = gpu_check.GpuCheck(arch="digits_prelu", device="cpu", layouts=("1",), concurrency=(1, 4), http_s=0.3, http_warmup_s=0.1)
    from prelu_deploy.bench.gpu_http import phase_http

    result = phase_http(cfg, print, time.monotonic() + 120)
    (layout,) = result["layouts"]
    assert layout["ran"], layout.get("why")
    assert [m["concurrency"] for m in layout["model"]] == [1, 4] and all(m["ok"] > 0 and not m["errors"] for m in layout["model"])
    assert all(f["ok"] > 0 for f in layout["floor"]) and layout["log_noise"] == 0
    assert [g["concurrency"] for g in layout["grpc"]] == [1, 4] and all(g["ok"] > 0 and not g["errors"] for g in layout["grpc"])
    report = {"gpu": None, "phases": {"http": {"ran": True, "seconds": 1.0, **result}}}
    paths = gpu_report.write(report, tmp_path)
    md, goals = paths[1].read_text(), json.loads(paths[0].read_text())["goals"]
    assert "| 1 | 4 |" in md and "http_floor" in goals
    ratios = [g["throughput_rps"] / m["throughput_rps"] for m, g in zip(layout["model"], layout["grpc"])]
    assert goals["grpc_http"]["met"] == (min(ratios) >= 1.0) and f"{min(ratios):.2f}×" in goals["grpc_http"]["numbers"]
    assert f"{ratios[1]:.2f}×" in md.split("| 1 | 4 |")[1].splitlines()[0]


def _row(batch, label, precision, ms, diff=0.0):
    return {
        "batch": batch,
        "label": label,
        "precision": precision,
        "median_ms": ms,
        "p99_ms": ms,
        "throughput": batch / ms * 1e3,
        "speedup_vs_baseline": 1.0,
        "max_abs_diff_vs_baseline": diff,
        "logit_scale": 10.0,
    }


def test_the_sweep_goals_on_known_numbers():
    rows = [
        _row(1, "torch:cuda", "fp32", 0.45),
        _row(1, "onnxruntime:cuda:tf32", "tf32", 0.11),
        _row(1, "wrong:fp16", "fp16", 0.05, diff=5.0),  # fastest, but beyond its tolerance: not counted
        _row(256, "torch:cuda", "fp32", 2.8),
        _row(256, "onnxruntime:cuda", "fp32", 2.7),
        _row(256, "onnxruntime:cuda:tf32", "tf32", 1.0),
        _row(256, "torch-compile:cuda:fp16+cl", "fp16", 0.5),
    ]
    g = gpu_report.sweep_goals({"results": rows})
    assert g["batch1"] == {"met": True, "numbers": "onnxruntime:cuda:tf32: 0.110 ms"}
    assert g["fp32_256"]["met"] and g["tf32_256"]["met"] and g["fp16_256"]["met"]
    assert "5.60×" in g["fp16_256"]["numbers"] and g["fastest"]["batch 256 fp16"] == "torch-compile:cuda:fp16+cl"
