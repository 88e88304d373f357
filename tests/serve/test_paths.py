"""The route table (serve.api.paths) is the one place the server's paths are written: FastAPI's routes
are all in it, the metric labels and the OpenAPI document's hot routes come from it."""

from types import SimpleNamespace

import pytest
from prelu_deploy.serve.api import paths
from prelu_deploy.serve.api.app import LimitsAndMetrics, create_app
from prelu_deploy.serve.api.hot_path import MODEL_KEY
from prelu_deploy.serve.api.routes import page, repository_api, v2
from prelu_deploy.serve.settings import Settings

# answered by FastAPI but counted as "other": the page, server metadata, the docs and their files
UNLISTED = {"/", "/v2", "/docs", "/openapi.json", "/docs-static"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return create_app(Settings(repo=tmp_path_factory.mktemp("repo")))  # nothing loads before the lifespan starts


def test_every_fastapi_route_is_in_the_table(app):
    templates = {route.template for route in paths.ROUTES}
    served = {route.path for route in app.routes if hasattr(route, "path")}  # the app's own; its routers' below
    served |= {route.path for router in (v2.router, page.router, repository_api.router) for route in router.routes}
    assert served - templates == UNLISTED
    assert served & {r.template for r in paths.ROUTES if r.hot} == set()  # those the hot path answers, FastAPI does not


def test_the_openapi_document_lists_the_hot_routes_of_the_table(app):
    documented = app.openapi()["paths"]
    for route in (r for r in paths.ROUTES if r.hot):
        assert documented[route.template]["post"]["operationId"] == route.operation_id
        assert [p["name"] for p in documented[route.template]["post"]["parameters"] if p["in"] == "path"] == route.params


@pytest.mark.parametrize(
    "path, chosen, labels",
    [
        ("/v2/models/digits/infer", None, ("digits", "infer")),
        ("/v2/models/digits/versions/1/infer", None, ("digits", "infer")),
        ("/v1/classify", "digits", ("digits", "classify")),
        ("/v1/classify", None, ("-", "classify")),
        ("/v2/models/nope/ready", None, ("unknown", "ready")),
        ("/v2/models/digits/versions/1", None, ("digits", "metadata")),
        ("/v2/repository/models/digits/unload", None, ("digits", "unload")),
        ("/v2/health/live", None, ("-", "live")),
        ("/metrics", None, ("-", "metrics")),
        ("/v2/models/digits/infer/more", None, ("-", "other")),
        ("/v2", None, ("-", "other")),
    ],
)
def test_metric_labels_come_from_the_table(path, chosen, labels):
    scope = {"path": path, "app": SimpleNamespace(state=SimpleNamespace(models={"digits": object()}))}
    if chosen:
        scope[MODEL_KEY] = chosen  # the model a hot route's handler chose
    assert LimitsAndMetrics._labels(scope) == labels
