"""Schemathesis against the document a gateway serving a text model publishes, driven in
process through the ASGI app (no server): the text form is described well enough that
generated requests, valid and invalid, get no 5xx and conforming answers. The fault suite
(tests/faults/test_gateway_fuzz.py) does the same over HTTP for a numeric model."""

import collections
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chassis.serving.asgi import GatewayApp
from chassis.serving.gateway import ServedModel
from chassis.serving.state import RolloutState
from tests.unit.test_serving_text import (
    MODEL,
    TOKEN,
    WORDS_V1,
    FakeRegistry,
    Version,
    gateway_for,
    opened,
)

EXAMPLES_PER_OPERATION = 60  # per generation mode
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.slow
def test_a_text_models_predict_routes_fuzzed_get_no_5xx_and_conform(tmp_path: Path):
    v1 = Version(tmp_path / "v1", WORDS_V1, max_length=6)
    gateway = gateway_for(tmp_path, FakeRegistry({1: v1}))
    state = RolloutState(model=MODEL, stable_version=1)
    gateway._serve(MODEL, ServedModel(MODEL, state, {1: opened(gateway, 1, v1)}))
    gateway.tried_once = True  # the startup's loading is done: the model is served
    schema = schemathesis.openapi.from_asgi("/openapi.json", GatewayApp(gateway, TOKEN))
    statuses: collections.Counter[tuple[str, int]] = collections.Counter()
    failures: list[str] = []
    results = list(schema.get_all_operations())
    # The document must describe every operation: one it cannot is a failure here.
    assert all(isinstance(result, Ok) for result in results), results
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        for operation in operations:
            if not operation.path.endswith("/predict"):
                continue

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),  # pyright: ignore[reportArgumentType]
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def one(case: Any) -> None:
                response = case.call()
                positive = case.meta is not None and case.meta.generation.mode.is_positive
                statuses[("POSITIVE" if positive else "NEGATIVE", response.status_code)] += 1
                try:
                    case.validate_response(response, checks=CHECKS)
                except Exception as failure:  # collected: every request is counted
                    failures.append(str(failure).strip()[:1500])

            one()
    assert failures == [], failures[:3]
    assert not any(status >= 500 for _, status in statuses), statuses
    # Valid texts were answered, and invalid bodies refused with a 4xx naming the problem.
    assert statuses[("POSITIVE", 200)] > 0 and statuses[("NEGATIVE", 422)] > 0, statuses
