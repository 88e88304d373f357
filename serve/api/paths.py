"""The server's paths, written once: each route's template, the endpoint it counts under in /metrics,
and — for the routes serve.api.hot_path answers outside FastAPI's router — what the OpenAPI document
calls them. The hot path matches requests with this table, the metrics middleware labels them with
it (so label values stay bounded whatever paths clients send), and the OpenAPI document lists the hot
routes from it. FastAPI's own routes keep their decorators; tests/serve/test_paths.py checks that every
one of them is in this table."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Route:
    template: str  # e.g. "/v2/models/{name}/versions/{version}/infer"
    endpoint: str  # its `endpoint` label in /metrics; for a hot route also its handler ("infer", "classify")
    summary: str | None = None  # a hot route's OpenAPI summary (None: a FastAPI route, documented by FastAPI)
    operation_id: str | None = None
    parts: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "parts", tuple(self.template.split("/")))

    @property
    def hot(self) -> bool:
        return self.summary is not None

    @property
    def params(self) -> list[str]:
        return [p[1:-1] for p in self.parts if p.startswith("{")]

    def bind(self, parts: list[str]) -> dict[str, str] | None:
        """The path parameters when `parts` (a path split at "/") fits this template, else None."""
        params = {}
        for want, got in zip(self.parts, parts):
            if want.startswith("{"):
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params


ROUTES = (
    Route("/v2/models/{name}/infer", "infer", "Infer", "infer"),
    Route("/v2/models/{name}/versions/{version}/infer", "infer", "Infer (versioned)", "infer_version"),
    Route("/v1/models/{name}/classify", "classify", "Classify", "classify"),
    Route(
        "/v1/classify",
        "classify",
        "Classify with the one model served (400 naming them when there are several)",
        "classify_default",
    ),
    Route("/v2/health/live", "live"),
    Route("/v2/health/ready", "ready"),
    Route("/v2/models/{name}/ready", "ready"),
    Route("/v2/models/{name}/versions/{version}/ready", "ready"),
    Route("/v2/models/{name}", "metadata"),
    Route("/v2/models/{name}/versions/{version}", "metadata"),
    Route("/v2/repository/index", "index"),
    Route("/v2/repository/models/{name}/load", "load"),
    Route("/v2/repository/models/{name}/unload", "unload"),
    Route("/metrics", "metrics"),
)
OTHER = "other"  # the endpoint label of every path not in the table (the page, /docs, server metadata, 404s)
_BY_LENGTH: dict[int, list[Route]] = {}
for _route in ROUTES:
    _BY_LENGTH.setdefault(len(_route.parts), []).append(_route)


def match(path: str) -> tuple[Route, dict[str, str]] | None:
    """The route `path` takes, with its parameters; None for a path outside the table."""
    parts = path.split("/")
    for route in _BY_LENGTH.get(len(parts), ()):
        if (params := route.bind(parts)) is not None:
            return route, params
    return None
