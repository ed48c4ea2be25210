"""Schemathesis against a live gateway process: generated requests, valid and invalid, to
every operation of its `/openapi.json`, and to the admin API with the bearer token.

Bounded and reproducible: a fixed number of examples per operation and generation mode,
derandomised (the same requests every run), no example database. Checks: no 5xx
(`not_a_server_error`), a status the document declares (`status_code_conformance`; the
document declares 200 and "4XX" with a JSON error schema), its content type and body schema
(`content_type_conformance`, `response_schema_conformance`), and for the admin routes that
an answer without the token or with a wrong one is refused (`ignored_auth`).

The gateway's own document covers the predict routes only (see ADMIN_DOCUMENT): the admin,
health, metrics and listing routes are described here, from the admin bodies' schemas,
so the fuzzer reaches them too.
"""

import collections
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from chassis.serving.admin_bodies import RolloutBody, SwitchBody
from tests.fixtures.fault_gateway import admin_headers, release_into
from tests.fixtures.fault_report import ScenarioResult
from tests.fixtures.gateway import MODEL, GatewayProcess

EXAMPLES_PER_OPERATION = 150  # per generation mode (valid and invalid requests)
ADMIN_EXAMPLES_PER_OPERATION = 60
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
FLOAT32_MAX = 3.4028234663852886e38


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("faults-fuzz") / "chassis"
    release_into(home, "tests.fixtures.specs:good")
    return home


@pytest.fixture(scope="module")
def gateway(home: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(home)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def auth(home: Path) -> dict[str, str]:
    return admin_headers(home)


@dataclass
class Outcome:
    sent: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    # Of those, the answers to requests valid by the document.
    valid_statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    server_errors: list[str] = field(default_factory=list)  # "<request> -> <status> <body>"
    failures: list[str] = field(default_factory=list)  # checks' reports, first lines
    dropped: list[str] = field(default_factory=list)  # connection errors: no answer at all

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())


def fuzz(
    schema: Any,
    base_url: str,
    examples: int,
    headers: dict[str, str] | None = None,
    checks: list[Any] = CHECKS,
) -> Outcome:
    """Every operation of `schema`, `examples` valid then `examples` invalid requests each;
    what came back, and what the checks said, collected rather than raised (a failure must
    not stop the run: the report counts every request)."""
    outcome = Outcome()
    session = requests.Session()
    operations = [result.ok() for result in schema.get_all_operations()]
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        for operation in operations:

            @settings(
                max_examples=examples,
                derandomize=True,  # the same requests on every run
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],  # no shrinking: failures are kept
                # Every member: hypothesis types its enum's iteration as the metaclass's.
                suppress_health_check=list(HealthCheck),  # pyright: ignore[reportArgumentType]
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def one(case: Any) -> None:
                outcome.sent += 1
                try:
                    response = case.call(base_url=base_url, session=session, headers=headers)
                except requests.RequestException as error:
                    outcome.dropped.append(f"{case.method} {case.formatted_path}: {error}")
                    return
                outcome.statuses[response.status_code] += 1
                if case.meta is not None and case.meta.generation.mode.is_positive:
                    outcome.valid_statuses[response.status_code] += 1
                if response.status_code >= 500:
                    outcome.server_errors.append(
                        f"{case.method} {response.request.url} body={case.body!r:.300} -> "
                        f"{response.status_code} {response.text[:300]}"
                    )
                try:
                    case.validate_response(
                        response,
                        checks=checks,
                        headers=headers,
                        transport_kwargs={"base_url": base_url, "headers": headers},
                    )
                except Exception as failure:  # the checks' FailureGroup: one report each
                    outcome.failures.append(str(failure).strip()[:1500])

            try:
                one()
            except Unsatisfiable:
                # Invalid requests of an operation that takes nothing (GET /healthz): there
                # is no input to make invalid.
                assert mode is GenerationMode.NEGATIVE, operation.label
    return outcome


def test_every_published_operation_fuzzed_gets_no_5xx_and_conforms(gateway, fault_report):
    schema = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")
    outcome = fuzz(schema, gateway.url, EXAMPLES_PER_OPERATION)
    fault_report.add(
        ScenarioResult(
            "schemathesis: /openapi.json operations (predict, preview)",
            sent=outcome.sent,
            answered=outcome.answered,
            good_failed=len(outcome.server_errors),
            alias_matches_served=None,
            unvalidated_served=0,
            lost="nothing" if not outcome.dropped else f"{len(outcome.dropped)} dropped",
        )
    )
    assert outcome.dropped == []
    assert outcome.server_errors == []
    assert outcome.failures == [], outcome.failures[:3]
    # The fuzzer reached the model (valid rows answered) and its refusals (invalid ones).
    assert outcome.valid_statuses[200] > 0 and outcome.statuses[422] > 0, outcome.statuses


def admin_document() -> dict[str, Any]:
    """The routes the gateway serves beyond its published document: admin (bearer token),
    health, metrics, listing. Bodies from the admin API's own pydantic schemas."""
    error = {
        "description": "Refused; the body names the problem",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    ok_object = {
        "description": "Done",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    name = {
        "name": "name",
        "in": "path",
        "required": True,
        # The served model mostly (valid data reaches the gateway's logic), other names too.
        "schema": {"type": "string", "enum": [MODEL, "other", "..", "test-blobs.x"]},
    }

    def admin(method: str, body: type | None = None) -> dict[str, Any]:
        operation: dict[str, Any] = {
            "parameters": [name],
            "security": [{"bearer": []}],
            "responses": {"200": ok_object, "4XX": error},
        }
        if body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body.model_json_schema()}},
            }
        return {method: operation}

    plain = {"responses": {"200": {"description": "ok"}, "4XX": error, "503": error}}
    paths: dict[str, Any] = {
        "/admin/status": {
            "get": {
                "security": [{"bearer": []}],
                "responses": {"200": ok_object, "4XX": error},
            }
        },
        "/admin/models/{name}": admin("get"),
        "/admin/models/{name}/rollout": admin("post", RolloutBody),
        "/admin/models/{name}/switch": admin("post", SwitchBody),
        "/healthz": {"get": plain},
        "/readyz": {"get": plain},
        "/metrics": {"get": plain},
        "/v1/models": {"get": plain},
    }
    for action in ("rollback", "promote", "sync", "follow-champion", "reset-stats"):
        paths[f"/admin/models/{{name}}/{action}"] = admin("post")
    return {
        "openapi": "3.1.0",
        "info": {"title": "Chassis gateway: routes beyond /openapi.json", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "status"],
                    "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
                }
            },
        },
    }


def test_admin_and_health_routes_fuzzed_with_the_token_get_no_5xx_and_enforce_auth(
    gateway, auth, fault_report
):
    schema = schemathesis.openapi.from_dict(admin_document())
    outcome = fuzz(schema, gateway.url, ADMIN_EXAMPLES_PER_OPERATION, auth, [*CHECKS, ignored_auth])
    served = httpx.get(f"{gateway.url}/admin/models/{MODEL}", headers=auth).json()
    good = httpx.post(
        f"{gateway.url}/v1/models/{MODEL}/predict", json={"instances": [[0.5, -1.0, 2.0, 0.0]]}
    )
    fault_report.add(
        ScenarioResult(
            "schemathesis: admin, health and listing routes (with the token)",
            sent=outcome.sent + 1,
            answered=outcome.answered + 1,
            good_failed=len(outcome.server_errors) + int(good.status_code != 200),
            alias_matches_served=None,
            unvalidated_served=0,
            lost="nothing" if not outcome.dropped else f"{len(outcome.dropped)} dropped",
        )
    )
    assert outcome.dropped == []
    assert outcome.server_errors == []
    assert outcome.failures == [], outcome.failures[:3]
    # Valid requests carry the token and are never refused for it; invalid ones (schemathesis
    # also drops or mangles the Authorization header) are.
    valid = outcome.valid_statuses
    assert valid[200] > 0 and valid[401] == 0, valid
    assert outcome.statuses[401] > 0, outcome.statuses
    # Whatever the fuzzer asked, the one verified version still serves (no candidate exists
    # that passes its gates, so no generated split could move traffic).
    assert served["state"]["stable_version"] == 1 and served["state"]["candidate_version"] is None
    assert good.status_code == 200 and good.headers["x-model-version"] == "1"


def test_the_document_bounds_features_to_what_the_gateway_accepts(gateway):
    """The published schema and validation agree: the largest value the document allows is
    served, and one beyond it is refused with a 422, as the document implies."""
    document = httpx.get(f"{gateway.url}/openapi.json").json()
    body = document["paths"][f"/v1/models/{MODEL}/predict"]["post"]["requestBody"]
    number = body["content"]["application/json"]["schema"]["properties"]["instances"]["items"][
        "items"
    ]
    url = f"{gateway.url}/v1/models/{MODEL}/predict"
    at_bound = httpx.post(url, json={"instances": [[number["maximum"], number["minimum"], 0, 0]]})
    beyond = httpx.post(url, json={"instances": [[1e39, 0.0, 0.0, 0.0]]})
    assert number["maximum"] == FLOAT32_MAX and number["minimum"] == -FLOAT32_MAX
    assert at_bound.status_code == 200, at_bound.text
    assert beyond.status_code == 422 and "beyond float32" in beyond.json()["error"]
