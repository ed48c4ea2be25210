"""deployments/: the deployments are written once (prefect.yaml), the Kubernetes variant is
generated from them, and every entrypoint is a real flow that takes the parameters given."""

import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployments.kubernetes import SOURCE, TARGET, kubernetes_variant

EXPECTED = [
    "release",
    "import-model",
    "drift-check",
    "retrain",
    "diagnose",
    "rollout",
    "registry-watch",
]


def deployments(path: Path) -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(path.read_text())
    return {d["name"]: d for d in document["deployments"]}


def test_the_kubernetes_file_is_the_one_generated_from_prefect_yaml():
    assert TARGET.read_text() == kubernetes_variant(SOURCE.read_text()), (
        "deployments/prefect-kubernetes.yaml is stale: run `make kubernetes-deployments`"
    )


def test_both_variants_list_the_same_deployments_differing_only_in_the_work_pool():
    process, kubernetes = deployments(SOURCE), deployments(TARGET)
    assert list(process) == list(kubernetes) == EXPECTED
    for name in EXPECTED:
        ours, theirs = dict(process[name]), dict(kubernetes[name])
        assert ours.pop("work_pool")["name"] == "chassis-process", name
        pool = theirs.pop("work_pool")
        assert pool["name"] == "chassis-kubernetes", name
        assert pool["job_variables"]["image"] == "{{ $CHASSIS_IMAGE }}", name
        # Entrypoint, parameters, schedules, triggers, concurrency, tags, description.
        assert ours == theirs, name
    # Not vacuous: what must be the same is there to compare.
    assert process["drift-check"]["schedules"] and process["retrain"]["triggers"]
    assert process["rollout"]["parameters"]["policy"]
    document = yaml.safe_load(SOURCE.read_text())
    assert yaml.safe_load(TARGET.read_text())["pull"] == document["pull"]


def test_both_variants_keep_telemetry_off():
    for path in (SOURCE, TARGET):
        for name, deployment in deployments(path).items():
            env = deployment["work_pool"]["job_variables"]["env"]
            assert env["DO_NOT_TRACK"] == "1" and env["ORT_DISABLE_TELEMETRY"] == "1", name


def test_prefect_reads_both_files_as_prefect_deploy_does():
    from prefect.cli.deploy._models import PrefectYamlModel

    for path in (SOURCE, TARGET):
        model = PrefectYamlModel.model_validate(yaml.safe_load(path.read_text()))
        assert [d.name for d in model.deployments] == EXPECTED, path


@pytest.mark.parametrize("name", EXPECTED)
def test_each_entrypoint_imports_and_names_a_flow_that_takes_its_parameters(name):
    from prefect import Flow

    deployment = deployments(SOURCE)[name]
    path, _, attribute = deployment["entrypoint"].partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, attribute)
    assert isinstance(flow, Flow), deployment["entrypoint"]
    accepted = set(inspect.signature(flow.fn).parameters)
    given = set(deployment.get("parameters", {}))
    for trigger in deployment.get("triggers", []):
        given |= set(trigger.get("parameters", {}))
    assert given <= accepted, f"{name}: {sorted(given - accepted)} are not parameters of it"


def test_the_generator_refuses_a_file_without_the_pool_anchors():
    with pytest.raises(ValueError, match=r"define the process pool once as `process: &work_pool`"):
        kubernetes_variant("definitions:\n  work_pools:\n    process:\n      name: p\n")
