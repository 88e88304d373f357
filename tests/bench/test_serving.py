"""`prelu-deploy bench serving`: our server and the hand-written baseline started side by side on
loopback ports, driven with the same requests, both stopped afterwards; and its refusals."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prelu_deploy.bench.serving import tree_cpu_s

SAMPLES = Path(__file__).parents[2] / "models" / "samples"  # the bundled digit PNGs


@pytest.mark.slow
def test_ours_beside_the_baseline_in_one_report(cli, repo, tmp_path):
    proc = cli(
        "bench",
        "serving",
        repo,
        "--model",
        "digits",
        "--serve-args",
        "--workers 1 --max-batch-size 8",
        "--concurrency",
        "1,4",
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--reference",
        "0.2",
        "--data",
        repo / "digits" / "golden.npz",
        "--out",
        tmp_path,
    )
    r = json.loads(next(tmp_path.glob("bench-serving-digits-*.json")).read_text())
    assert r["kind"] == "serving" and r["endpoint"] == "/v2/models/digits/infer"
    assert r["settings"]["reference_s"] == 0.2 and "in process again: 0.2 s per batch size" in proc.stderr
    assert "--workers 1 --max-batch-size 8" in r["servers"]["ours"] and "baseline_server" in r["servers"]["baseline"]
    assert r["in_process"]["batch_1"]["median_ms"] > 0 and r["in_process"]["batch_32"]["throughput"] > 0
    runs = r["in_process_runs"]  # before the servers started and after they stopped: the faster is the reference
    assert len(runs) == 2 and all(r["in_process"][k]["median_ms"] == min(run[k]["median_ms"] for run in runs) for k in runs[0])
    assert [lv["concurrency"] for lv in r["levels"]] == [1, 4]
    for lv in r["levels"]:
        for name in ("ours", "baseline"):
            s = lv[name]
            assert s["ok"] == s["requests"] > 5 and s["errors"] == {} and 0 <= s["client_cpu"] < 2
            assert s["server_cpu"] > 0 and s["server_cpu_ms"] == pytest.approx(s["server_cpu_s"] / s["ok"] * 1e3)
    assert [g["concurrency"] for g in r["goals"]] == [1, 4] and all(isinstance(g["met"], bool) for g in r["goals"])
    md = next(tmp_path.glob("bench-serving-digits-*.md")).read_text()
    assert "| 4 | baseline |" in md and "| concurrency | goal | this run | met |" in md
    assert "ours / baseline" in proc.stdout
    # both servers are gone
    left = subprocess.run(["pgrep", "-f", f"serve {repo} --log-level warning --workers 1"], capture_output=True, text=True)
    assert left.stdout.strip() == ""


@pytest.mark.slow
def test_images_drive_the_classify_route_of_both(cli_in_process, repo, tmp_path):
    """By the script's main() in this process (bench serving as a process: above); the servers are processes."""
    cli_in_process(
        "bench",
        "serving",
        repo,
        "--model",
        "digits",
        "--serve-args",
        "--workers 1",
        "--concurrency",
        "2",
        "--duration",
        "0.4",
        "--warmup",
        "0.1",
        "--rounds",
        "2",
        "--reference",
        "0",
        "--data",
        SAMPLES,
        "--out",
        tmp_path,
    )
    r = json.loads(next(tmp_path.glob("bench-serving-digits-*.json")).read_text())
    assert r["endpoint"] == "/v1/models/digits/classify" and r["settings"]["rounds"] == 2
    for name in ("ours", "baseline"):
        s = r["levels"][0][name]
        assert s["errors"] == {} and s["ok"] > 5 and len(s["rounds_rps"]) == 2
        assert s["throughput_rps"] == pytest.approx(sum(s["rounds_rps"]) / 2)  # the median of two rounds
    lv = r["levels"][0]  # ours / baseline: the median of the rounds' pairs (two: their mean)
    assert lv["ratio"] == pytest.approx(sum(o / b for o, b in zip(lv["ours"]["rounds_rps"], lv["baseline"]["rounds_rps"])) / 2)
    md = next(tmp_path.glob("bench-serving-digits-*.md")).read_text()
    assert "2 alternating rounds" in md and "the servers ran, 0 s per batch size each)" in md
    assert all(run[k]["n"] >= 50 for run in r["in_process_runs"] for k in run)  # --reference 0: the 50 calls at least


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nope"], "no model directory named 'nope'"),
        (["--model", "digits", "--data", "nowhere"], "--data nowhere: no such file or folder"),
        (["--model", "digits", "--concurrency", "0"], "--concurrency: levels must be 1"),
        (["--model", "digits", "--reference", "-1"], "Invalid value for '--reference'"),
    ],
)
def test_refusals(cli_in_process, repo, tmp_path, args, message):
    assert message in cli_in_process("bench", "serving", repo, *args, "--out", tmp_path, check_rc=2).stderr
    assert not list(tmp_path.glob("*.json"))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_servers_cpu_counts_its_worker_processes():
    burn = "import time\nwhile time.process_time() < 0.5: pass\ntime.sleep(60)"  # 0.5 s of CPU, then idle
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {burn!r}]); time.sleep(60)",
        ]
    )
    try:
        deadline = time.monotonic() + 20
        while (tree_cpu_s(parent.pid) or 0) < 0.5 and time.monotonic() < deadline:
            time.sleep(0.1)
        own = sum(map(int, Path(f"/proc/{parent.pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13]))
        assert tree_cpu_s(parent.pid) >= 0.5 > own / os.sysconf("SC_CLK_TCK")  # the child's burn, not the parent's own
    finally:
        subprocess.run(["pkill", "-P", str(parent.pid)])
        parent.kill()
        parent.wait()
    assert tree_cpu_s(parent.pid) is None  # gone: no /proc entry
