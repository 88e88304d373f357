"""GET /: one small HTML page (no build step, no external assets) to pick or drop images and see the
top-k answers, with links to /docs and /metrics. It is sent with a Content-Security-Policy that lets
only its own inline script and style run (each by its sha256, computed from the page at startup: no
'unsafe-inline' for scripts), talk only to this server, and never be framed; and with nosniff."""

import base64
import hashlib
import re
from functools import cache
from html import escape
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from prelu_deploy.serve.api.deps import Models

router = APIRouter(tags=["page"])


@cache
def _template() -> str:
    return (files("prelu_deploy.serve.api") / "static" / "index.html").read_text()


def _hashes(html: str, tag: str) -> str:
    """'sha256-…' of every inline <tag> element's content, as CSP matches them."""
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.S)
    )


@cache
def headers() -> dict[str, str]:
    """The page's security headers (the model options substituted into it are outside its script and style)."""
    html = _template()
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src {_hashes(html, 'script')}",
            f"style-src {_hashes(html, 'style')}",
            "img-src 'self' blob: data:",  # the thumbnails of the picked files are blob: URLs
            "connect-src 'self'",  # its fetch() to /v1/models/…/classify
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }


@router.get("/", response_class=HTMLResponse)
async def page(models: Models) -> HTMLResponse:
    options = "".join(
        f'<option value="{escape(name)}">{escape(name)}{"" if m.ready else " (not ready)"}</option>' for name, m in models.items()
    )
    return HTMLResponse(_template().replace("__MODEL_OPTIONS__", options), headers=headers())
