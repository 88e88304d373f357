"""Valid images that are large: what a request may cost the server in memory, and how long it may hold
the event loop, measured on a real server process (its resident memory read from /proc). A watchdog
kills the server as soon as it grows past the bound, so a regression fails in about a second instead
of taking the machine's memory (before the bounds, one 43 KiB request took 12.6 GB)."""

import io
import json
import os
import signal
import threading
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from ..server import Server, wait_for

CLASSIFY = "/v1/models/digits/classify"
MB = 1 << 20
GROWTH = 300 * MB  # the most a burst may add to the server's idle resident memory


def _image(fmt: str, side: int) -> bytes:
    """A dark stroke on a white square, `side` px: under 1 KB (WebP) or 58 KB (RGB PNG, 4096²) encoded, side² pixels decoded."""
    img = Image.new("RGB", (side, side), "white")
    ImageDraw.Draw(img).rectangle((side * 7 // 16, side // 4, side * 9 // 16, side * 3 // 4), fill="black")
    buf = io.BytesIO()
    img.save(buf, fmt, **({"lossless": True} if fmt == "WEBP" else {"optimize": True}))
    return buf.getvalue()


def _multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, dict]:
    parts = [
        b'--b\r\nContent-Disposition: form-data; name="files"; filename="%s"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n%s\r\n" % (name.encode(), data)
        for name, data in files
    ]
    return b"".join(parts) + b"--b--\r\n", {"content-type": "multipart/form-data; boundary=b"}


def _status_field(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


class Memory:
    """The server's resident memory, summed over its process and its worker processes: `idle` when
    entered, `peak` (the kernel's high-water mark, reset on entry, and what the watchdog saw) and
    `after` on exit. The watchdog SIGKILLs the server once it grows by more than `limit` bytes."""

    def __init__(self, srv: Server, limit: int = GROWTH):
        self.srv, self.limit, self.killed, self.seen = srv, limit, False, 0
        self._done = threading.Event()

    def pids(self) -> list[int]:
        root = self.srv.proc.pid
        kids = []
        for task in Path(f"/proc/{root}/task").iterdir():
            kids += [int(p) for p in (task / "children").read_text().split()]
        return [root, *kids]

    def rss(self) -> int:
        return sum(_status_field(pid, "VmRSS") for pid in self.pids())

    def __enter__(self) -> "Memory":
        self.idle = self.rss()
        try:
            for pid in self.pids():
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the present VmRSS
            self.hwm = True
        except OSError:  # not allowed here: the watchdog's samples, every 10 ms, tell the peak
            self.hwm = False
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._done.wait(0.01):
            try:
                self.seen = max(self.seen, self.rss())
            except (FileNotFoundError, ProcessLookupError):
                return
            if self.seen - self.idle > self.limit:
                self.killed = True
                for pid in self.pids()[::-1]:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                return

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        if not self.killed:
            self.peak = max(self.seen, sum(_status_field(pid, "VmHWM") for pid in self.pids()) if self.hwm else 0)
            self.after = self.rss()

    def say(self) -> str:
        if self.killed:
            return f"the server grew past {self.limit // MB} MB over its idle {self.idle // MB} MB and was killed"
        peak, after = (self.peak - self.idle) / MB, (self.after - self.idle) / MB
        return f"idle {self.idle / MB:.0f} MB, peak +{peak:.0f} MB, after +{after:.0f} MB"


@pytest.fixture(scope="module")
def server(repo):
    srv = Server(repo)
    assert srv.request("POST", CLASSIFY, _image("PNG", 64), {"content-type": "image/png"})[0] == 200  # warm
    yield srv
    srv.stop()


def _send(srv: Server, body: bytes, headers: dict, timeout: float = 60):
    try:
        return srv.request("POST", CLASSIFY, body, headers, timeout=timeout)
    except (urllib.error.URLError, ConnectionError, OSError) as err:
        return 0, {}, str(err).encode()


def test_64_huge_webp_images_in_one_request_are_refused_within_the_memory_bound(server):
    """64 lossless WebP images of 4096² (a 43 KiB body, 1.07 G pixels): 413 at once, naming the
    request pixel limit and its option; the server's memory stays within 300 MB of idle."""
    webp = _image("WEBP", 4096)
    body, headers = _multipart([(f"{i}.webp", webp) for i in range(64)])
    assert len(body) < 64 << 10
    with Memory(server) as mem:
        status, _, raw = _send(server, body, headers)
    assert not mem.killed, mem.say()
    assert status == 413, raw[:300]
    error = json.loads(raw)["error"]
    assert "1073741824 pixels" in error and "67108864" in error and "--max-request-pixels" in error, error
    assert mem.peak - mem.idle < GROWTH, mem.say()
    print(mem.say())


def test_large_webp_images_within_the_request_budget_decode_one_at_a_time(server):
    """Four 3072² WebP images are answered, decoded one at a time: each holds ~150 MB while Pillow
    decodes it (libwebp's two canvases, the frame copied out, the image), all four at once 600 MB."""
    webp = _image("WEBP", 3072)
    body, headers = _multipart([(f"{i}.webp", webp) for i in range(4)])
    with Memory(server) as mem:
        status, _, raw = _send(server, body, headers)
    assert not mem.killed, mem.say()
    assert status == 200, raw[:300]
    assert len(json.loads(raw)["predictions"]) == 4
    assert mem.peak - mem.idle < GROWTH, mem.say()
    print(mem.say())


def test_12_concurrent_huge_pngs_stay_within_the_memory_bound_and_it_returns(server):
    """12 clients each send one 4096² PNG at once: every one answered, the peak within 300 MB of idle,
    and afterwards the memory is given back (within 64 MB of idle)."""
    png = _image("PNG", 4096)
    assert len(png) < 64 << 10
    with Memory(server) as mem:
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda _: _send(server, png, {"content-type": "image/png"}), range(12)))
        time.sleep(0.2)
    assert not mem.killed, mem.say()
    assert [a[0] for a in answers] == [200] * 12, [a[2][:200] for a in answers]
    assert mem.peak - mem.idle < GROWTH, mem.say()
    assert mem.after - mem.idle < 64 * MB, mem.say()
    print(mem.say())


def test_a_multi_image_request_does_not_hold_the_event_loop(server):
    """While a request of 16 images of 2048² (12 KiB) is prepared, /v2/health/live answers within 0.5 s
    (decoded on the event loop, it waited seconds)."""
    png = _image("PNG", 2048)
    body, headers = _multipart([(f"{i}.png", png) for i in range(16)])
    answer = {}
    worker = threading.Thread(target=lambda: answer.update(result=_send(server, body, headers)))
    worker.start()
    wait_for(lambda: server.metric("prelu_in_flight_requests") >= 2)  # the request is in (and the /metrics asking)
    waits = []
    while worker.is_alive():
        start = time.monotonic()
        assert server.request("GET", "/v2/health/live", timeout=30)[0] == 200
        waits.append(time.monotonic() - start)
        time.sleep(0.02)
    worker.join()
    assert answer["result"][0] == 200, answer["result"][2][:300]
    assert waits and max(waits) < 0.5, f"/v2/health/live waited up to {max(waits):.2f} s ({len(waits)} calls)"
    print(f"{len(waits)} health calls, the longest {max(waits) * 1000:.0f} ms")
