"""uvicorn's HTTP protocol with a request-head timeout. uvicorn closes idle keep-alive connections but
times nothing before a request's head is complete, so a client that connects and sends its headers a
byte at a time (slowloris) holds a connection and a file descriptor forever. This protocol closes a
connection whose request head has not arrived within `header_timeout` seconds of the connection being
made or of the previous response. (The body has its own deadline: serve.deps.read_body.) A module-level class: it travels to spawned
worker processes by name."""

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeadTimeoutProtocol(HttpToolsProtocol):
    open_connections = 0  # in this process; with one, requests come one at a time (serve.hot_path uses it)

    def connection_made(self, transport) -> None:
        HeadTimeoutProtocol.open_connections += 1
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
        HeadTimeoutProtocol.open_connections -= 1
        self._head_timer.cancel()
        super().connection_lost(exc)

    def _head_timed_out(self) -> None:
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()

