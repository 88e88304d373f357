"""Whether an address is loopback, and what to say when the server listens beyond it: asked by the
token rules (serve.api.auth), `serve`'s warning at start and Ray's local cluster. And free ports, for
Ray's side ports, the serving benchmark's servers and the tests."""

import ipaddress
import socket


def exposure_warning(host: str, auth: str = "management", token: bool = False) -> str | None:
    """What to say when `host` is not a loopback address: anyone who can reach it can use the server
    over plain HTTP, and — unless --auth all is given with a token (serve.api.auth) — every model and its
    queues without one; with a `token`, what it guards under `auth`, what it leaves open, and that it
    travels in clear. None for loopback (and for a name that does not resolve: listen() says why)."""
    if is_loopback(host) is not False:
        return None
    if token:
        guards = (
            "every route but /v2/health/* needs the API token"
            if auth == "all"
            else "the API token guards the management API; anyone who can reach this address can run inference "
            "and read metadata (--auth all: every route)"
        )
        return (
            f"listening on {host} (beyond loopback): {guards}; over plain HTTP (no TLS) the token travels "
            "in clear: put the server behind a TLS proxy, or keep --host 127.0.0.1"
        )
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
