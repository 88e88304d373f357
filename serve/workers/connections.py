"""uvicorn's HTTP protocol with limits on the request head. uvicorn closes idle keep-alive connections
but times nothing before a request's head is complete, so a client that connects and sends its
headers a byte at a time (slowloris) holds a connection and a file descriptor forever; and its
httptools parser takes a head of any size (a client sending one 80 MB header value held half the
other connections for 9 s). This protocol
- closes a connection whose request head has not arrived within `header_timeout` seconds of the
  connection being made or of the previous response (the body has its own deadline:
  serve.api.hot_path.read_body);
- answers 431 and closes when a request head grows past `max_head_bytes` (request line and headers,
  counted as they arrive, not once complete) or one of its lines past `max_line_bytes`, with one
  warning in the log.
A module-level class: it travels to the worker processes by name.

It also counts open client connections (COUNT): with one in the whole server, HTTP/1.1 brings its
requests one at a time, so nothing else can be waiting (serve.api.hot_path runs such a request inline)."""

import json
import logging
import time

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger("prelu_deploy.serve")
LINGER_S, LINGER_BYTES = 1.0, 256 << 10  # after a 431: what the client still sends is read and dropped — for this
# long, up to this much (so that it reads the answer, not a reset) — then the connection is closed


class ConnectionCount:
    """Open client connections of the server: one slot per worker process, each written by its worker
    only — a plain list in one process, an array in shared memory under several (serve.workers.processes gives
    each worker process a slot of its own, never one a live process still writes)."""

    def __init__(self):
        self.slots, self.index = [0], 0

    def share(self, slots, index: int) -> None:
        self.slots, self.index = slots, index

    def opened(self) -> None:
        self.slots[self.index] += 1

    def closed(self) -> None:
        self.slots[self.index] -= 1

    def total(self) -> int:
        return sum(self.slots)


COUNT = ConnectionCount()  # this process's; stays 0 where our protocol does not serve (behind Ray's proxy)


class RateLimitedLog:
    """Warnings about what clients do, in bursts of at most `burst` lines and one a second on average (a
    client refused and reconnecting in a loop must not flood the log); a line says how many were left
    out before it."""

    def __init__(self, logger: logging.Logger, burst: int = 10, per_s: float = 1.0):
        self.logger, self.burst, self.per_s = logger, burst, per_s
        self.tokens, self.at, self.left_out = float(burst), time.monotonic(), 0

    def warning(self, message: str, *args) -> None:
        now = time.monotonic()
        self.tokens, self.at = min(self.burst, self.tokens + (now - self.at) * self.per_s), now
        if self.tokens < 1:
            self.left_out += 1
            return
        self.tokens -= 1
        if self.left_out:
            message += f" ({self.left_out} more like it before, not logged)"
        self.logger.warning(message, *args)
        self.left_out = 0


REFUSALS = RateLimitedLog(log)


class HeadLimitsProtocol(HttpToolsProtocol):
    def connection_made(self, transport) -> None:
        COUNT.opened()
        super().connection_made(transport)
        config = self.config  # serve.workers.processes.ServerConfig sets these
        self.header_timeout = getattr(config, "header_timeout", 10.0)
        self.max_head = getattr(config, "max_head_bytes", 16 << 10)
        self.max_line = getattr(config, "max_header_line_bytes", 8 << 10)
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)
        self._in_head, self._head_bytes, self._parsed, self._ended, self._refused = True, 0, 0, False, None

    def data_received(self, data: bytes) -> None:
        if self._refused:  # lingering after a 431: dropped, up to LINGER_BYTES
            self._linger_left -= len(data)
            if self._linger_left < 0:
                self.transport.close()
            return
        in_head, self._ended = self._in_head, False
        super().data_received(data)
        if self._refused is None and self._in_head:  # the head is still incomplete after these bytes
            # every byte was the head's unless a request ended within them (pipelining): then the next
            # head's first bytes in this read are not counted (the limit holds to within one read)
            self._head_bytes = self._head_bytes + len(data) if in_head and not self._ended else 0
            if self._head_bytes > self.max_head:
                self._refuse(f"request head over {self.max_head} bytes")
        if self._refused:
            self._answer_431()

    # the parser's callbacks: a refused head goes no further (no ASGI request is made of it)
    def on_message_begin(self) -> None:
        self._in_head, self._head_bytes, self._parsed = True, 0, 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.max_line:
            self._refuse(f"request line over {self.max_line} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        line = len(name) + len(value) + 4  # name: value\r\n
        self._parsed += line  # a head that arrived whole in one read is counted here
        if line > self.max_line:
            self._refuse(f"header line {name[:40].decode('latin-1')!r} over {self.max_line} bytes")
        elif self._parsed + len(self.url) > self.max_head:
            self._refuse(f"request head over {self.max_head} bytes")
        if not self._refused:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_timer.cancel()
        self._in_head = False
        if not self._refused:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes, self._ended = True, 0, True
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():  # the next request's head is timed too
            self._head_timer.cancel()
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def connection_lost(self, exc) -> None:
        COUNT.closed()
        self._head_timer.cancel()
        super().connection_lost(exc)

    def _head_timed_out(self) -> None:
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()

    def _refuse(self, why: str) -> None:
        self._refused = self._refused or why

    def _answer_431(self) -> None:
        """431 with {"error"} and close: at once when no earlier response is still being written (a
        pipelined request's), then the client's bytes in flight are read and dropped for LINGER_S (so
        that it reads the answer rather than a reset)."""
        if self.transport.is_closing():
            return
        self._head_timer.cancel()
        client = "%s:%d" % tuple(self.client[:2]) if self.client else "a client"
        option = "--max-header-kb" if "head over" in self._refused else "--max-header-line-kb"
        REFUSALS.warning("%s: %s (%s): 431, connection closed", client, self._refused, option)
        self._linger_left = LINGER_BYTES
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()
            return
        body = json.dumps({"error": f"{self._refused} (the server's {option})"}).encode()
        head = [
            STATUS_LINE[431],
            *(b"%s: %s\r\n" % kv for kv in self.server_state.default_headers),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)
