"""Clients that send too much, or too slowly: a body announced over the limit is answered 413 within
the body deadline (not drained for as long as the client likes), a request head over its size limit
is answered 431 while it is still arriving, and a worker holds a bounded number of connections
(--limit-concurrency). Raw sockets against a real server process."""

import json
import select
import socket
import time

import pytest

from ..server import Server

# one server for the module, on one xdist worker (--dist loadscope): its log counts every refusal
REFUSED = []  # the requests refused with 431 so far


@pytest.fixture(scope="module")
def server(repo):
    srv = Server(repo, "--max-body-mb", "1", "--header-timeout", "2", "--body-timeout", "1")
    yield srv
    assert srv.stop()
    log = srv.proc.stdout.read()
    assert "Traceback" not in log, log[-3000:]
    assert log.count(": 431, connection closed") == len(REFUSED), log[-3000:]  # each refused head said why, in one line


def _connect(srv: Server, timeout: float = 5) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)


def _answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """(status line and headers, body) of one response (Content-Length framed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed without an answer after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def _closed_within(sock: socket.socket, seconds: float, dribble: bytes = b"") -> float:
    """Seconds until the server closed `sock` (sending `dribble` every 0.1 s meanwhile); fails past `seconds`."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            if dribble:
                sock.sendall(dribble)
            if select.select([sock], [], [], 0.1)[0] and not sock.recv(65536):
                return time.monotonic() - start
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - start
    raise AssertionError(f"the server kept the connection open for {seconds} s")


def test_a_body_announced_over_the_limit_is_refused_within_the_body_deadline(server):
    """2 MB announced (the limit is 1 MiB), sent a byte at a time: 413 once --body-timeout (1 s) has
    passed, and the connection closed (before: held with no answer for as long as the client sent)."""
    with _connect(server) as sock:
        sock.sendall(
            b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2000000\r\n\r\n{"
        )
        start, answer = time.monotonic(), b""
        while b"}" not in answer:
            assert time.monotonic() - start < 4, f"no answer within 4 s: {answer!r}"
            try:
                sock.sendall(b"x")
            except (BrokenPipeError, ConnectionResetError):
                pass
            if select.select([sock], [], [], 0.1)[0]:
                answer += sock.recv(65536)
        elapsed = time.monotonic() - start
        head, _, body = answer.partition(b"\r\n\r\n")
        assert (
            head.startswith(b"HTTP/1.1 413")
            and json.loads(body)["error"] == "the body is 1.91 MB (2000000 bytes); the limit is 1 MB (--max-body-mb)"
        )
        assert 0.9 < elapsed < 3 and b"connection: close" in head.lower(), (elapsed, head)
        assert _closed_within(sock, 1) < 1
    assert server.json("GET", "/v2/health/ready")[0] == 200


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Big", "a" * (20 << 10))],  # one 20 KiB header: over both limits
        [("X-Line", "a" * (9 << 10))],  # 9 KiB: over the 8 KiB line limit, within the 16 KiB head
        [(f"X-Part-{i}", "a" * (5 << 10)) for i in range(4)],  # 20 KiB in four 5 KiB lines: over the head limit
    ],
    ids=["one-huge-header", "one-long-line", "many-lines"],
)
def test_a_request_head_over_the_limits_is_431(server, headers):
    with _connect(server) as sock:
        sock.sendall(
            b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers) + b"\r\n"
        )
        head, body = _answer(sock)
        assert head.startswith(b"HTTP/1.1 431") and b"connection: close" in head.lower(), head
        REFUSED.append(headers)
        assert "over" in json.loads(body)["error"] and "--max-header" in json.loads(body)["error"]
        assert _closed_within(sock, 3) < 3


def test_a_head_within_the_limits_is_served(server):
    with _connect(server) as sock:
        sock.sendall(
            b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n"
            + b"".join(f"X-Part-{i}: {'a' * (4 << 10)}\r\n".encode() for i in range(3))
            + b"\r\n"
        )
        head, body = _answer(sock)
        assert head.startswith(b"HTTP/1.1 200") and json.loads(body) == {"live": True}


@pytest.mark.parametrize(
    "start", [b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\nX-Big: ", b"GET /"], ids=["header-value", "request-line"]
)
def test_a_head_growing_past_the_limit_is_refused_while_it_arrives(server, start):
    """A header value (or URL) that never ends: refused once the limit is crossed, not when the head is
    complete or times out (before: buffered whole, then closed after --header-timeout with no answer)."""
    with _connect(server) as sock:
        sock.sendall(start)
        began = time.monotonic()
        sent, answer = 0, b""
        while b"\r\n\r\n" not in answer:
            assert time.monotonic() - began < 1.5, f"no answer after {sent} bytes: {answer!r}"
            try:
                sock.sendall(b"a" * 1024)
                sent += 1024
            except (BrokenPipeError, ConnectionResetError):
                break
            if select.select([sock], [], [], 0.01)[0]:
                chunk = sock.recv(65536)
                answer += chunk
                if not chunk:
                    break
        answer += sock.recv(65536) if b"\r\n\r\n" not in answer else b""
        assert answer.startswith(b"HTTP/1.1 431"), answer
        REFUSED.append(start)
        assert sent <= 2 * (16 << 10) + (64 << 10)  # refused once past the limit (to within one read)


def test_connections_beyond_the_concurrency_limit_are_503(repo):
    srv = Server(repo, "--limit-concurrency", "3")
    try:
        idle = [_connect(srv) for _ in range(2)]
        for sock in idle:  # two kept-alive connections
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n")
            assert _answer(sock)[0].startswith(b"HTTP/1.1 200")
        assert srv.request("GET", "/v2/health/live")[0] == 503  # a third one (the limit counts it)
        idle.pop().close()
        deadline = time.monotonic() + 5
        while (status := srv.request("GET", "/v2/health/live")[0]) == 503 and time.monotonic() < deadline:
            time.sleep(0.05)  # until the server has seen the close
        assert status == 200
        idle.pop().close()
    finally:
        assert srv.stop()
