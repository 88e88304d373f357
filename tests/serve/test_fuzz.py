"""Schema-driven fuzzing of a live server (schemathesis, from its own /openapi.json): whatever a client
sends, no 5xx, no status the document does not list, every answer in its documented content type and
schema. And the document serves its own UI with no internet."""

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from ..server import Server

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def server(repo):
    srv = Server(repo)
    yield srv
    assert srv.stop()
    log = srv.proc.stdout.read()
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.slow
def test_no_5xx_and_no_undocumented_status(server):
    """Every operation of the document, 40 generated requests each (valid and invalid, Hypothesis); those
    that name a model, 40 more to the model that is served."""
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    statuses = Counter()
    runs = [(op, served) for op in operations for served in ((False, True) if "{name}" in op.path else (False,))]
    assert len(runs) > len(operations)
    for op, served in runs:

        @given(case=op.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            if served and "name" in (case.path_parameters or {}):  # past the 404: the model that is served
                case.path_parameters = (
                    {**case.path_parameters, "name": "digits", "version": "1"}
                    if "version" in case.path_parameters
                    else {**case.path_parameters, "name": "digits"}
                )
            statuses[case.call_and_validate(checks=CHECKS).status_code] += 1

        fuzz()
    assert sum(statuses.values()) >= 400 and statuses[200] > 50 and statuses[400] > 20 and statuses[404] > 0, statuses


def test_the_document_describes_bodies_and_errors(server):
    status, doc = server.json("GET", "/openapi.json")
    infer = doc["paths"]["/v2/models/{name}/infer"]["post"]
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert {"200", "400", "404", "413", "503"} <= set(infer["responses"]) and "422" not in infer["responses"]
    assert infer["responses"]["400"]["content"]["application/json"]["schema"]["required"] == ["error"]
    classify = doc["paths"]["/v1/models/{name}/classify"]["post"]
    assert {"multipart/form-data", "image/png", "image/jpeg"} <= set(classify["requestBody"]["content"])


def test_docs_render_from_local_assets(server):
    status, _, html = server.request("GET", "/docs")
    assert status == 200 and b"/docs-static/swagger-ui-bundle.js" in html and b"cdn" not in html.lower()
    status, _, js = server.request("GET", "/docs-static/swagger-ui-bundle.js")
    assert status == 200 and len(js) > 100_000
