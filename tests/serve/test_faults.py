"""The faults a reliability probe found, each reproduced against a real server process: disconnects,
malformed manifests, hostile JSON, slow clients, leftovers of killed writers, bad options."""

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ..manifests import edit_manifest
from ..server import Server, wait_for

INFER = "/v2/models/digits/infer"


def _raw(port: int, data: bytes, read: bool = True, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if not read:
            return b""
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def _post(path: str, body: bytes, length: int | None = None) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nConnection: close\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    ).encode() + body


@pytest.fixture(scope="module")
def server(repo):
    srv = Server(repo, "--log-level", "info", "--header-timeout", "1", "--body-timeout", "1")
    yield srv
    assert srv.stop()
    log = srv.proc.stdout.read()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]


def test_clients_that_disconnect_midway_are_499_never_500(repo):
    srv = Server(repo, "--log-level", "info")
    try:
        for _ in range(20):
            _raw(srv.port, _post(INFER, b"x" * 50, length=100), read=False)
        # each disconnect is counted when the server has seen it: wait for all 20, then nothing else came of them
        wait_for(lambda: srv.metric('prelu_requests_total{endpoint="infer",model="digits",status="499"}') >= 20)
        assert srv.metric('prelu_requests_total{endpoint="infer",model="digits",status="499"}') == 20
        assert srv.metric('prelu_requests_total{endpoint="infer",model="digits",status="500"}') == 0
        assert srv.json("GET", "/v2/health/ready")[0] == 200
    finally:
        assert srv.stop()
    log = srv.proc.stdout.read()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
    assert log.count("client disconnected before its body was complete") == 20  # one line each, at info


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs":[{"name":"images","shape":[1,1,8,8],"datatype":"FP32","data":' + b"[" * 1000 + b"]" * 1000 + b"}]}",
        b"[" * 100_000,
        b'{"inputs":[' * 5000,
        b'{"inputs":[{"name":"images","shape":[1,1,8,8],"datatype":"FP32","data":[0],"parameters":5}]}',
        b'{"inputs":[{"name":"images","shape":[1,1,8,8],"datatype":"FP32","data":[0]}],"parameters":[1]}',
        b'{"inputs":[{"name":"images","shape":[1,1,8,8],"datatype":"FP32","data":[0]}],"outputs":{"name":"logits"}}',
        b'{"inputs":[{"name":"images","shape":[1,1,8,8],"datatype":"FP32","data":[1e999]}]}',
    ],
    ids=["deep-data", "deep-array", "deep-inputs", "parameters-int", "parameters-list", "outputs-object", "overflow"],
)
def test_hostile_json_is_a_400_with_json(server, body):
    answer = _raw(server.port, _post(INFER, body))
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head, answer[:300]
    assert json.loads(payload)["error"]


def _cpu_s(pid: int) -> tuple[float, float]:
    """CPU seconds of a process's main thread (where the event loop runs) and of all its threads."""

    def ticks(stat: str) -> int:
        fields = stat.rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    tasks = Path(f"/proc/{pid}/task")
    hz = os.sysconf("SC_CLK_TCK")
    total = sum(ticks((t / "stat").read_text()) for t in tasks.iterdir())
    return ticks((tasks / str(pid) / "stat").read_text()) / hz, total / hz


def test_a_large_json_body_is_decoded_off_the_event_loop(server, repo):
    """Bodies over 64 KiB are decoded in a thread: the answer is the same, and the event loop's thread
    spends little of the decoding's CPU. (Timing other requests cannot show where the decoding ran:
    json.loads holds the GIL for its whole run, on whichever thread.) 40,000 rows (10 MB) take ~1 s
    to decode before they are refused as more than a request may hold."""
    rows = [[[[0.5] * 8] * 8]] * 300
    body = json.dumps({"inputs": [{"name": "images", "shape": [300, 1, 8, 8], "datatype": "FP32", "data": rows}]}).encode()
    assert len(body) > 64 << 10
    status, answer = server.json("POST", INFER, json.loads(body))
    assert status == 200 and answer["outputs"][0]["shape"] == [300, 10]
    n = 40_000
    big = b'{"inputs":[{"name":"images","shape":[%d,1,8,8],"datatype":"FP32","data":[%s]}]}' % (n, b",".join([b"0.5"] * (n * 64)))
    loop_before, all_before = _cpu_s(server.proc.pid)
    status, _, raw = server.request("POST", INFER, big, {"content-type": "application/json"})
    loop_s, all_s = (after - before for after, before in zip(_cpu_s(server.proc.pid), (loop_before, all_before)))
    assert status == 400 and b"at most 512 a request" in raw, raw[:300]
    assert all_s > 0.3 and loop_s < 0.3 * all_s, f"the event loop's thread spent {loop_s:.2f} of {all_s:.2f} CPU seconds"


def test_a_slow_head_is_closed_and_a_slow_body_is_408(server):
    start = time.monotonic()
    assert _raw(server.port, b"POST /v2/models/dig") == b""  # closed, no answer: the head never came
    assert 0.8 < time.monotonic() - start < 5
    answer = _raw(server.port, _post(INFER, b'{"inputs": ', length=500))
    assert answer.startswith(b"HTTP/1.1 408") and b"not complete within 1 s" in answer
    assert server.json("GET", "/v2/health/ready")[0] == 200


def test_a_malformed_entry_is_not_ready_and_the_others_serve(repo, tmp_path):
    cases = {
        "empty_artifacts": lambda m: m.update(artifacts=[]),
        "null_artifacts": lambda m: m.update(artifacts=None),
        "no_prelu": lambda m: m.pop("prelu"),
        "no_shape": lambda m: m["input"].pop("shape"),
    }
    for name, change in cases.items():
        shutil.copytree(repo / "digits", tmp_path / name)
        edit_manifest(tmp_path / name, lambda m, change=change, name=name: (change(m), m.update(name=name)))
    shutil.copytree(repo / "digits", tmp_path / "digits")
    srv = Server(tmp_path)
    try:
        assert srv.json("GET", "/v2/models/digits/ready")[0] == 200
        assert (
            srv.json(
                "POST", INFER, {"inputs": [{"name": "images", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}]}
            )[0]
            == 200
        )
        for name, field in [
            ("empty_artifacts", "'artifacts' is list"),
            ("null_artifacts", "'artifacts' is NoneType"),
            ("no_prelu", "'prelu' is missing"),
            ("no_shape", "'input.shape' is missing"),
        ]:
            status, meta = srv.json("GET", f"/v2/models/{name}")
            assert status == 200 and not meta["ready"] and f"manifest field {field}" in meta["reason"], meta
        assert srv.json("GET", "/v2/health/ready")[0] == 503  # not every model is ready
    finally:
        assert srv.stop()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_leftovers_are_never_served_and_duplicates_are_refused(repo, tmp_path):
    pid = _dead_pid()
    shutil.copytree(repo / "digits", tmp_path / "digits")
    shutil.copytree(repo / "digits", tmp_path / f".digits.{pid}.abc123.tmp")  # a killed export's staging copy
    shutil.copytree(repo / "digits", tmp_path / ".digits.1.live99.tmp")  # pid 1 lives: another writer's, kept
    shutil.copytree(repo / "digits", tmp_path / "copy")  # the same model name twice
    srv = Server(tmp_path, "--log-level", "info")
    try:
        status, meta = srv.json("GET", "/v2/models/digits")
        assert status == 200 and meta["ready"]
        assert srv.json("GET", "/v2/models/copy")[0] == 404
    finally:
        assert srv.stop()
    log = srv.proc.stdout.read()
    assert log.count("model digits: ready") == 1
    assert "model name 'digits' is already served from" in log and "copy" in log
    assert f"removed .digits.{pid}.abc123.tmp" in log
    assert sorted(p.name for p in tmp_path.iterdir()) == [".digits.1.live99.tmp", "copy", "digits"]


def test_a_killed_swap_is_restored_at_the_next_start(repo, tmp_path):
    """Where the filesystem cannot exchange two folders, export --force renames the old one aside
    first; killed right then, the backup is restored by the next start."""
    shutil.copytree(repo / "digits", tmp_path / f".digits.{_dead_pid()}.xyz789.old")
    srv = Server(tmp_path)
    try:
        assert srv.json("GET", "/v2/models/digits/ready")[0] == 200
    finally:
        assert srv.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits"]


@pytest.mark.parametrize(
    "args, rc, message",
    [
        (
            ["--backend", "onnxrunitme"],
            2,
            "--backend 'onnxrunitme': choose one of auto, onnxruntime, tensorrt, torch, torch-compile",
        ),
        (["--log-level", "verbose"], 2, "--log-level 'verbose': choose one of critical"),
        (["--host", "no.such.host.invalid"], 2, "--host 'no.such.host.invalid': not an address"),
    ],
)
def test_bad_options_exit_2_before_anything_starts(serve_in_process, repo, args, rc, message):
    proc = serve_in_process("serve", repo, *args, check_rc=rc)
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_a_busy_port_exits_9(cli, repo):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        proc = cli("serve", repo, "--port", s.getsockname()[1], check_rc=9)
    assert "Address already in use; choose another --port" in proc.stderr and "Traceback" not in proc.stderr
