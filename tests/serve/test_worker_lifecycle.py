"""Worker processes over their lifetime: a SIGTERM ends the server within its deadline even when a
worker hangs, and a rolling restart (SIGHUP) leaves the shared connection count right."""

import os
import re
import signal
import socket
import time


from ..server import Server, wait_for
from .test_workers import _children, _listening


def _open_connections(srv: Server) -> int:
    status, _, body = srv.request("GET", "/metrics")
    found = re.search(r"^prelu_open_connections (\S+)$", body.decode(), re.M)
    assert status == 200 and found, (status, body[-1000:])  # what came instead (one run, once, had no such line)
    return int(float(found.group(1)))


def test_sigterm_with_a_stopped_worker_exits_within_its_deadline_and_frees_the_port(repo):
    srv = Server(repo, "--workers", "2", "--threads", "1", "--shutdown-timeout", "1", "--log-level", "info")
    hung = None
    try:
        hung = min(_children(srv.proc.pid))
        os.kill(hung, signal.SIGSTOP)  # a worker that never answers again, not even to SIGTERM
        start = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        srv.proc.wait(1 + 2 + 5)  # --shutdown-timeout, then 2 s, then killed (before: never returned)
        elapsed = time.monotonic() - start
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
        if hung and os.path.exists(f"/proc/{hung}") and "Z" not in open(f"/proc/{hung}/stat").read().split()[2]:
            os.kill(hung, signal.SIGKILL)  # never leave a stopped process behind
    log = srv.proc.stdout.read()
    assert elapsed < 1 + 2 + 4, f"{elapsed:.1f} s\n{log[-2000:]}"  # the deadline, then the exits (slow on a busy host)
    assert f"worker process {hung} did not stop within 3 s of SIGTERM" in log, log[-2000:]
    assert not os.path.exists(f"/proc/{hung}")  # killed and reaped
    assert _listening(srv.port) == 0
    with socket.socket() as s:  # and the port can be taken again at once
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", srv.port))


def test_a_rolling_restart_keeps_the_connection_count_right(repo):
    srv = Server(repo, "--workers", "2", "--threads", "1", "--log-level", "info")  # no lone runner: faster loads
    idle = []
    try:
        for _ in range(3):  # kept-alive connections, spread by the kernel over both workers
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n")
            answer = b""
            while not answer.endswith(b'{"live":true}'):
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200")
            idle.append(sock)
        assert _open_connections(srv) == 4  # the three, and the one asking
        before = _children(srv.proc.pid)
        os.kill(srv.proc.pid, signal.SIGHUP)  # each worker replaced in turn; the old ones close their connections
        wait_for(lambda: len(_children(srv.proc.pid)) == 2 and not _children(srv.proc.pid) & before, 90, 0.25)
        for sock in idle:
            assert sock.recv(65536) == b""  # closed by its old worker as it stopped
        seen = [_open_connections(srv) for _ in range(5)]
        assert min(seen) >= 0 and seen[-1] == 1, seen  # before: -1 … -3, and the lone path off for good
        assert srv.request("GET", "/v2/health/live")[0] == 200
    finally:
        for sock in idle:
            sock.close()
        assert srv.stop()
    log = srv.proc.stdout.read()
    assert "Traceback" not in log and "did not start" not in log, log[-3000:]
