"""Whether an address is loopback, and what to say when the server listens beyond it: asked by the
token rules (serve.api.auth), `serve`'s warning at start and Ray's local cluster. And free ports, for
Ray's side ports, the serving benchmark's servers and the tests."""

import ipaddress
import socket


def exposure_warning(host: str) -> str | None:
    """What to say when `host` is not a loopback address: anyone who can reach it can use the server
    over plain HTTP, and — unless --auth all is given with a token (serve.api.auth) — every model and its
    queues without one. None for loopback (and for a name that does not resolve: listen() says why)."""
    if is_loopback(host) is not False:
        return None
    return (
        f"listening on {host} (beyond loopback): anyone who can reach this address can use the server, over plain "
        f"HTTP (no TLS) and without a token unless --auth all is given with one; put it behind a TLS proxy, or "
        f"keep --host 127.0.0.1"
    )


def is_loopback(host: str) -> bool | None:
    """Whether every address `host` resolves to is a loopback one; None when it does not resolve."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return None
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct ports free on `host` ("": every interface) now; held at once, so none repeats."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
