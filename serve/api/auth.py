"""Tokens: who may use the management API (the model repository: index, load, unload) and, with
`--auth all`, inference and metadata too. A request presents `Authorization: Bearer TOKEN` (gRPC: the
`authorization` metadata); it is compared in constant time (hmac.compare_digest of sha256 digests: the
settings, which travel to worker processes in their environment, hold the token's digest, never the
token). A refusal is a 401 with `WWW-Authenticate: Bearer` (gRPC: UNAUTHENTICATED), counted in /metrics
(prelu_auth_refused_total by protocol and reason); no log line or error message holds the token.

Safe by default: without a token the management API is refused (403) unless the server listens on
loopback only, and a server that would let anyone who reaches it load models — `--model-control
explicit` on an address beyond loopback — does not start without one (exit 2, saying how). A token in
the URL (`?access_token=`, `?token=`, …) is refused everywhere, and masked in the access log: URLs end up
in logs and browser histories."""

import hashlib
import hmac
import logging
import os
import re
from pathlib import Path
from urllib.parse import parse_qsl

from prelu_deploy.errors import UsageError
from prelu_deploy.serve.errors import ApiError, error_response

TOKEN_ENV = "PRELU_DEPLOY_API_TOKEN"
MIN_TOKEN_CHARS = 16
MODES = ("management", "all")
URL_CREDENTIALS = {
    "access_token",
    "token",
    "api_token",
    "apitoken",
    "api_key",
    "apikey",
    "key",
    "auth",
    "authorization",
    "bearer",
    "password",
    "secret",
}
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready")  # probes: never behind the token
MANAGEMENT_PREFIX = "/v2/repository/"
HOW = "start the server with --api-token-file FILE (or the environment variable PRELU_DEPLOY_API_TOKEN)"
log = logging.getLogger("prelu_deploy.serve")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def resolve(
    api_token: str | None, api_token_file: Path | None, auth: str, host: str = "127.0.0.1", model_control: str = "none"
) -> dict:
    """The settings of the token options (api_token_sha256, auth), or UsageError (exit 2) saying why.
    The token comes from --api-token-file, --api-token or PRELU_DEPLOY_API_TOKEN, one of them. A server
    that loads and unloads models on request (--model-control explicit) beyond loopback needs one."""
    if auth not in MODES:
        raise UsageError(
            f"--auth {auth!r}: choose management (the repository API needs the token) or all (inference and metadata too)"
        )
    if api_token is not None and api_token_file is not None:
        raise UsageError("--api-token and --api-token-file: give one")
    if api_token_file is not None:
        try:
            token = api_token_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as err:
            why = getattr(err, "strerror", None) or err
            raise UsageError(f"--api-token-file {api_token_file}: cannot read it ({why})") from None
        if api_token_file.stat().st_mode & 0o077:
            log.warning("--api-token-file %s can be read by other users of this machine: chmod 600 it", api_token_file)
    elif api_token is not None:
        token = api_token.strip()
        log.warning(
            "--api-token on the command line is visible to every user of this machine (ps); prefer --api-token-file or %s",
            TOKEN_ENV,
        )
    else:
        token = os.environ.get(TOKEN_ENV, "").strip() or None
    if token is not None and (len(token) < MIN_TOKEN_CHARS or any(ch.isspace() or not ch.isprintable() for ch in token)):
        raise UsageError(
            f"the API token must be at least {MIN_TOKEN_CHARS} printable characters without spaces "
            "(make one: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    if auth == "all" and token is None:
        raise UsageError(f"--auth all needs a token: {HOW.removeprefix('start the server with ')}")
    if model_control == "explicit" and token is None:
        from prelu_deploy.serve.addresses import is_loopback

        if is_loopback(host) is False:
            raise UsageError(
                f"--model-control explicit on --host {host} (beyond loopback) would let anyone who reaches "
                f"it load and unload models: {HOW.removeprefix('start the server with ')}, or keep "
                "--host 127.0.0.1"
            )
    return {"api_token_sha256": digest(token) if token else None, "auth": auth}


class Guard:
    """The one check, for HTTP and gRPC alike: `check(kind, authorization, protocol)` returns, or raises
    the ApiError to answer. `kind`: "open" (health), "management" (the repository API), or "api"
    (everything else: inference, metadata, the page, /metrics)."""

    def __init__(self, settings, metrics):
        from prelu_deploy.serve.addresses import is_loopback

        self.want, self.mode, self.metrics = settings.api_token_sha256, settings.auth, metrics
        self.local = bool(is_loopback(settings.host))

    def needed(self, kind: str) -> bool:
        return kind == "management" or (kind == "api" and self.mode == "all")

    def check(self, kind: str, authorization: str | None, protocol: str) -> None:
        if not self.needed(kind):
            return
        if self.want is None:  # no token: only the management API can get here (--auth all needs one)
            if self.local:
                return
            raise self._refuse(
                protocol,
                "no_token",
                ApiError(403, f"the management API is refused: this server listens beyond loopback and has no API token; {HOW}"),
            )
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise self._refuse(
                protocol,
                "missing",
                ApiError(
                    401,
                    "this needs an API token: send the header 'Authorization: Bearer TOKEN'",
                    {"WWW-Authenticate": 'Bearer realm="prelu-deploy"'},
                ),
            )
        if not hmac.compare_digest(digest(given.strip()), self.want):
            raise self._refuse(
                protocol,
                "wrong",
                ApiError(
                    401, "the API token is not valid", {"WWW-Authenticate": 'Bearer realm="prelu-deploy", error="invalid_token"'}
                ),
            )

    def in_url(self, protocol: str) -> ApiError:
        return self._refuse(
            protocol,
            "in_url",
            ApiError(
                400,
                "a token in the URL is refused (URLs end up in logs and "
                "histories): send it in the header 'Authorization: Bearer "
                "TOKEN'",
                {"WWW-Authenticate": 'Bearer realm="prelu-deploy", error="invalid_request"'},
            ),
        )

    def _refuse(self, protocol: str, reason: str, err: ApiError) -> ApiError:
        self.metrics.auth_refused.labels(protocol, reason).inc()
        return err


def http_kind(path: str) -> str:
    if path in OPEN_PATHS:
        return "open"
    return "management" if path.startswith(MANAGEMENT_PREFIX) else "api"


def credentials_in(query_string: bytes) -> bool:
    return any(key.lower() in URL_CREDENTIALS for key, _ in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))


class Auth:
    """ASGI middleware: every HTTP request through the Guard before any route sees it."""

    def __init__(self, app, settings, metrics):
        self.app, self.guard = app, Guard(settings, metrics)
        if not any(isinstance(f, MaskUrlCredentials) for f in logging.getLogger("uvicorn.access").filters):
            logging.getLogger("uvicorn.access").addFilter(MaskUrlCredentials())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            if scope["query_string"] and credentials_in(scope["query_string"]):
                raise self.guard.in_url("http")
            if self.guard.needed(kind := http_kind(scope["path"])):
                authorization = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
                self.guard.check(kind, authorization, "http")
        except ApiError as err:
            return await error_response(err)(scope, receive, send)
        await self.app(scope, receive, send)


_QUERY_VALUE = re.compile(r"(?i)([?&](?:" + "|".join(sorted(URL_CREDENTIALS)) + r")=)[^&\s\"]*")


class MaskUrlCredentials(logging.Filter):
    """uvicorn's access log line with a credential's value in the URL replaced by ***."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_QUERY_VALUE.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        return True
