"""`prelu-deploy bench http` against real `prelu-deploy serve` processes on loopback ports: complete
reports, failures counted exactly (checked against the server's own Prometheus counters), the bounds
on requests, and the refusals. The command runs once as the console script's process (the complete
report); the other runs and the refusals by its main() in this process (the same code, without a new
interpreter's imports)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prelu_deploy.bench.load_generator import stability

from ..server import Server, free_port


@pytest.fixture(scope="module")
def server(repo):
    srv = Server(repo)
    yield srv
    srv.stop()


def _served(srv: Server, status: int) -> int:
    """The server's count of infer requests answered with `status`."""
    _, _, body = srv.request("GET", "/metrics")
    m = re.search(rf'prelu_requests_total{{endpoint="infer",model="digits",status="{status}"}} (\S+)', body.decode())
    return int(float(m.group(1))) if m else 0


def _report(out: Path) -> dict:
    return json.loads(next(out.glob("*.json")).read_text())


def test_a_complete_report_from_a_live_server(cli, server, tmp_path):
    before = _served(server, 200)
    proc = cli(
        "bench",
        "http",
        server.url,
        "--model",
        "digits",
        "--concurrency",
        "1,3",
        "--duration",
        "0.6",
        "--warmup",
        "0",
        "--out",
        tmp_path,
        "--plot",
    )
    r = _report(tmp_path)
    assert r["kind"] == "http" and r["endpoint"] == "/v2/models/digits/infer" and r["server"]["name"] == "prelu-deploy"
    assert r["model_metadata"]["inputs"][0]["shape"] == [-1, 1, 8, 8] and r["machine"]["cores"] >= 1
    assert [lv["concurrency"] for lv in r["levels"]] == [1, 3]
    for lv in r["levels"]:
        lat = lv["latency"]
        assert lv["ok"] == lv["requests"] == lat["n"] > 10 and lv["errors"] == {}
        assert lat["min_ms"] <= lat["median_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"]
        assert lv["throughput_rps"] == pytest.approx(lv["ok"] / lv["wall_s"]) and lv["wall_s"] >= 0.6
        assert len(lv["window_rps"]) == 5 and sum(lv["window_rps"]) * lv["wall_s"] / 5 == pytest.approx(lv["ok"])
    # every measured request (and the one checked before the load) reached the server, no more
    assert _served(server, 200) - before == 1 + sum(lv["ok"] for lv in r["levels"])
    md = next(tmp_path.glob("*.md")).read_text()
    assert "| concurrency | requests | ok | errors | p50 ms |" in md and f"| 3 | {r['levels'][1]['requests']} |" in md
    assert next(tmp_path.glob("*.png")).read_bytes()[:4] == b"\x89PNG"
    assert "p99 ms" in proc.stdout and "wrote" in proc.stdout


def test_stability_across_windows():
    steady = stability([0.1 * k + 0.05 for k in range(50)], start=0.0, wall=5.0)  # 10 requests/s throughout
    assert steady == {"window_rps": [10.0] * 5, "throughput_cv": 0.0, "stable": True}
    burst = stability([0.01 * k for k in range(50)], start=0.0, wall=5.0)  # all in the first second
    assert burst["window_rps"] == [50.0, 0.0, 0.0, 0.0, 0.0] and burst["throughput_cv"] == pytest.approx(2.0)
    assert not burst["stable"] and stability([], 0.0, 1.0)["throughput_cv"] is None


def test_requests_are_bounded(cli_in_process, server, tmp_path):
    proc = cli_in_process(
        "bench",
        "http",
        server.url,
        "--model",
        "digits",
        "--concurrency",
        "4",
        "--duration",
        "60",
        "--warmup",
        "0",
        "--max-requests",
        "9",
        "--out",
        tmp_path,
        "--json",
    )
    lv = json.loads(proc.stdout)["levels"][0]
    assert lv["requests"] == lv["ok"] == 9 and lv["wall_s"] < 30


def test_real_inputs_json_encoding_and_images(cli_in_process, server, repo, tmp_path):
    golden = repo / "digits" / "golden.npz"
    r = json.loads(
        cli_in_process(
            "bench",
            "http",
            server.url,
            "--model",
            "digits",
            "--concurrency",
            "2",
            "--duration",
            "0.3",
            "--warmup",
            "0",
            "--data",
            golden,
            "--encoding",
            "json",
            "--batch",
            "3",
            "--out",
            tmp_path,
            "--json",
        ).stdout
    )
    assert r["levels"][0]["ok"] > 0 and r["levels"][0]["errors"] == {} and "json FP32 tensors [3, 1, 8, 8]" in r["workload"]
    assert r["levels"][0]["images_per_s"] == pytest.approx(3 * r["levels"][0]["throughput_rps"])
    images = tmp_path / "images"
    images.mkdir()
    with np.load(golden) as z:
        for i, x in enumerate(z["inputs"][:4]):
            Image.fromarray((np.clip(x[0] * 4 + 8, 0, 16) * 15).astype(np.uint8)).save(images / f"{i}.png")
    r = json.loads(
        cli_in_process(
            "bench",
            "http",
            server.url,
            "--model",
            "digits",
            "--concurrency",
            "2",
            "--duration",
            "0.3",
            "--warmup",
            "0",
            "--data",
            images,
            "--out",
            tmp_path,
            "--json",
        ).stdout
    )
    assert r["endpoint"] == "/v1/models/digits/classify" and r["levels"][0]["ok"] > 0 and r["levels"][0]["errors"] == {}


def test_overload_errors_are_counted_exactly(cli_in_process, repo, tmp_path):
    # a queue of 4 rows that waits 50 ms for company: 8 clients sending 2 rows each overflow it at once
    srv = Server(repo, "--max-queue", "4", "--max-batch-size", "2", "--max-queue-delay-ms", "50", "--threads", "1")
    try:
        proc = cli_in_process(
            "bench",
            "http",
            srv.url,
            "--model",
            "digits",
            "--concurrency",
            "8",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--batch",
            "2",
            "--out",
            tmp_path,
            "--json",
        )
        lv = json.loads(proc.stdout)["levels"][0]
        assert set(lv["errors"]) == {"503"} and lv["errors"]["503"] > 0 and lv["ok"] > 0
        assert lv["requests"] == lv["ok"] + lv["errors"]["503"] and lv["latency"]["n"] == lv["ok"]
        assert _served(srv, 503) == lv["errors"]["503"]  # the server agrees, request for request
        assert _served(srv, 200) == lv["ok"] + 1  # + the check before the load
    finally:
        srv.stop()


def test_every_request_failing_writes_the_report_and_exits_8(cli_in_process, repo, tmp_path):
    srv = Server(repo, "--max-body-mb", "0.001")  # 1048 bytes: every request of 8 images (2 KiB) is over it (413)
    try:
        proc = cli_in_process(
            "bench",
            "http",
            srv.url,
            "--model",
            "digits",
            "--concurrency",
            "1,2",
            "--duration",
            "0.3",
            "--warmup",
            "0",
            "--batch",
            "8",
            "--out",
            tmp_path,
            check_rc=8,
        )
    finally:
        srv.stop()
    assert "no request succeeded at concurrency 1, 2 (413 ×" in proc.stderr and "report written" in proc.stderr
    levels = _report(tmp_path)["levels"]
    assert all(lv["ok"] == 0 and lv["errors"]["413"] == lv["requests"] > 0 and lv["latency"] == {"n": 0} for lv in levels)
    assert "| 1 | " in next(tmp_path.glob("*.md")).read_text()


@pytest.mark.parametrize(
    "url, extra, rc, message",
    [
        ("http://10.1.2.3:8000", [], 2, "10.1.2.3 resolves to 10.1.2.3, not a loopback address; pass --allow-remote"),
        ("ftp://127.0.0.1/", [], 2, "is not an http(s)://host[:port] URL"),
        ("http://127.0.0.1:{free}", [], 8, "cannot reach http://127.0.0.1:"),
        ("{server}", ["--concurrency", "0"], 2, "--concurrency: levels must be 1…1024"),
        ("{server}", ["--concurrency", "a"], 2, "--concurrency: 'a' is not a comma-separated list of ints"),
        ("{server}", ["--duration", "0"], 2, "--duration, --timeout must be > 0"),
        ("{server}", ["--encoding", "msgpack"], 2, "--encoding: binary or json"),
        ("{server}", ["--data", "/no/such/file.npy"], 2, "--data /no/such/file.npy: no such file or folder"),
    ],
)
def test_bad_arguments_are_refused(cli_in_process, server, tmp_path, url, extra, rc, message):
    url = url.format(free=free_port(), server=server.url)
    proc = cli_in_process("bench", "http", url, "--model", "digits", "--duration", "0.2", *extra, "--out", tmp_path, check_rc=rc)
    assert message in proc.stderr and not list(tmp_path.glob("*.json"))


def test_unknown_models_and_wrong_tensors_are_refused(cli_in_process, server, tmp_path):
    assert (
        "GET /v2/models/nope: HTTP 404"
        in cli_in_process("bench", "http", server.url, "--model", "nope", "--out", tmp_path, check_rc=8).stderr
    )
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 3, 32, 32), np.float32))
    proc = cli_in_process("bench", "http", server.url, "--model", "digits", "--data", wrong, "--out", tmp_path, check_rc=2)
    assert "tensors of shape [2, 3, 32, 32]; the model takes [N, 1, 8, 8]" in proc.stderr


def test_the_hand_written_baseline_answers_what_the_runner_computes(repo, cli_in_process, tmp_path):
    """bench/baseline_server.py, the HTTP benchmark's comparison: bench http drives it like ours, and
    its answers are the runner's."""
    import subprocess
    import sys
    import time
    import urllib.request

    from prelu_deploy.runners.registry import get_runner

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "prelu_deploy.bench.baseline_server", str(repo / "digits"), "--port", str(port)]
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/digits/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        out = tmp_path / "reports"
        cli_in_process(
            "bench",
            "http",
            f"http://127.0.0.1:{port}",
            "--model",
            "digits",
            "--concurrency",
            "1,4",
            "--duration",
            "0.3",
            "--warmup",
            "0.1",
            "--data",
            repo / "digits" / "golden.npz",
            "--out",
            out,
            "--json",
        )
        report = json.loads(next(out.glob("*.json")).read_text())
        assert report["server"]["name"] == "hand-written baseline"
        assert all(lv["ok"] > 0 and not lv["errors"] for lv in report["levels"])
        import tritonclient.http as httpclient

        x = np.load(repo / "digits" / "golden.npz")["inputs"][:3]
        inp = httpclient.InferInput("images", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        y = httpclient.InferenceServerClient(f"127.0.0.1:{port}").infer("digits", [inp]).as_numpy("logits")
        np.testing.assert_allclose(y, get_runner(None, repo / "digits").run(x), rtol=1e-5, atol=1e-5)
    finally:
        proc.terminate()
        proc.wait(10)
