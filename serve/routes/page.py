"""GET /: one small HTML page (no build step, no external assets) to pick or drop images and see the
top-k answers, with links to /docs and /metrics."""

from functools import cache
from html import escape
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from prelu_deploy.serve.deps import Models

router = APIRouter(tags=["page"])


@cache
def _template() -> str:
    return (files("prelu_deploy.serve") / "static" / "index.html").read_text()


@router.get("/", response_class=HTMLResponse)
async def page(models: Models) -> HTMLResponse:
    options = "".join(f'<option value="{escape(name)}">{escape(name)}{"" if m.ready else " (not ready)"}</option>'
                      for name, m in models.items())
    return HTMLResponse(_template().replace("__MODEL_OPTIONS__", options))
