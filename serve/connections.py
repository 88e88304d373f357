"""uvicorn's HTTP protocol with a request-head timeout. uvicorn closes idle keep-alive connections but
times nothing before a request's head is complete, so a client that connects and sends its headers a
byte at a time (slowloris) holds a connection and a file descriptor forever. This protocol closes a
connection whose request head has not arrived within `header_timeout` seconds of the connection being
made or of the previous response. (The body has its own deadline: serve.hot_path.read_body.) A
module-level class: it travels to spawned worker processes by name.

It also counts open client connections (COUNT): with one in the whole server, HTTP/1.1 brings its
requests one at a time, so nothing else can be waiting (serve.hot_path runs such a request inline)."""

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class ConnectionCount:
    """Open client connections of the server: one slot per worker process, each written by its worker
    only — a plain list in one process, an array in shared memory under several (serve.workers)."""

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


class HeadTimeoutProtocol(HttpToolsProtocol):
    def connection_made(self, transport) -> None:
        COUNT.opened()
        super().connection_made(transport)
        self.header_timeout = getattr(self.config, "header_timeout", 10.0)  # serve.workers.ServerConfig sets it
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def on_headers_complete(self) -> None:
        self._head_timer.cancel()
        super().on_headers_complete()

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

