"""Every deployment's parameters validate against its flow's parameters, policies included:
a threshold misspelled in prefect.yaml, or one the policy does not have, fails here rather
than in the first scheduled run."""

import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import ValidationError as SchemaError
from prefect.utilities.schema_tools.validation import validate
from pydantic import BaseModel, TypeAdapter, ValidationError

DEPLOYMENTS = Path(__file__).resolve().parents[2] / "deployments"


def deployments() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(DEPLOYMENTS.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        for deployment in document.get("deployments") or []:
            found.append((f"{path.name}:{deployment['name']}", deployment))
    return found


def flow_of(deployment: dict[str, Any]) -> Any:
    file, _, name = deployment["entrypoint"].partition(":")
    return getattr(importlib.import_module(file.removesuffix(".py").replace("/", ".")), name)


def check(flow: Any, parameters: dict[str, Any]) -> None:
    """As Prefect checks a run's parameters (its JSON schema, what the server sees), and as
    the flow itself will (pydantic, which also runs each policy's cross-field checks)."""
    schema = parameter_schema(flow.fn).model_dump_for_openapi()
    validate(parameters, schema, raise_on_error=True, ignore_required=True)
    signature = inspect.signature(flow.fn)
    for name, value in parameters.items():
        assert name in signature.parameters, f"{flow.name} has no parameter {name!r}"
        TypeAdapter(signature.parameters[name].annotation).validate_python(value)


ALL = deployments()


def test_the_deployment_files_are_found():
    names = {name.split(":")[1] for name, _ in ALL}
    assert {"release", "drift-check", "retrain", "rollout", "registry-watch"} <= names


@pytest.mark.parametrize(("name", "deployment"), ALL, ids=[name for name, _ in ALL])
def test_each_deployments_parameters_validate_against_its_flow(name, deployment):
    check(flow_of(deployment), deployment.get("parameters") or {})


def test_the_rollout_deployment_sets_its_policy_as_a_rollout_policy():
    from chassis.rollout.policy import RolloutPolicy

    (rollout,) = [d for name, d in ALL if name == "prefect.yaml:rollout"]
    policy = TypeAdapter(RolloutPolicy).validate_python(rollout["parameters"]["policy"])
    assert isinstance(policy, BaseModel) and policy.steps == [10, 25, 50, 100]


@pytest.mark.parametrize(
    ("deployment_name", "parameters", "named"),
    [
        # A field the policy does not have (the old RolloutSettings' missing p99_slack_ms).
        ("rollout", {"policy": {"p99_slack_ms": 2}}, "p99_slack_ms"),
        # Valid alone, inconsistent together: only the policy's own check sees it.
        ("rollout", {"policy": {"steps": [10, 50]}}, "steps must increase and end at 100"),
        ("drift-check", {"policy": {"drift_share": 1.5}}, "drift_share"),
        ("drift-check", {"max_null_share": 0.3}, "max_null_share"),  # outside its policy
        ("release", {"thresholds": {"recall_floor": 0.5}}, "recall_floor"),
        ("release", {"compression_policy": {"candidates": ["magic"]}}, "magic"),
    ],
)
def test_a_wrong_policy_in_a_deployment_is_refused_naming_it(deployment_name, parameters, named):
    (deployment,) = [d for name, d in ALL if name == f"prefect.yaml:{deployment_name}"]
    with pytest.raises((SchemaError, ValidationError, AssertionError)) as refused:
        check(flow_of(deployment), {**(deployment.get("parameters") or {}), **parameters})
    assert named in f"{refused.value} {refused.value.__cause__}"
