"""deployments/kubernetes/ is valid offline: against the Kubernetes API schemas of the
stated version, and against Chassis's own rules (deployments/manifest_checks.py). Each rule
is shown to catch a broken copy of the shipped manifests, naming the field that is wrong."""

import copy
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chassis_cli.main import build_parser
from deployments.manifest_checks import (
    BASE,
    JOB_TEMPLATE,
    KUBERNETES_VERSION,
    Manifest,
    chassis_command,
    exported_metric_names,
    job_template_problems,
    kustomize_build,
    kustomize_command,
    load_base,
    pod_spec,
    problems,
    unlisted_files,
)

BASE_MANIFESTS = load_base()


def find(manifests: list[Manifest], kind: str, name: str) -> dict[str, Any]:
    return next(m.document for m in manifests if m.kind == kind and m.name == name)


def gateway_container(manifests: list[Manifest]) -> dict[str, Any]:
    pod = find(manifests, "Deployment", "chassis-gateway")["spec"]["template"]["spec"]
    return pod["containers"][0]


def env_entry(container: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in container["env"] if e["name"] == name)


def broken(change: Callable[[list[Manifest]], None]) -> list[str]:
    """The problems of a copy of the base that `change` edited in place."""
    manifests = [Manifest(m.file, copy.deepcopy(m.document)) for m in BASE_MANIFESTS]
    change(manifests)
    return problems(manifests)


def only_problem(found: list[str], *fragments: str) -> str:
    """The one problem found, which names each fragment (the file, resource and field)."""
    assert len(found) == 1, found
    for fragment in fragments:
        assert fragment in found[0], found[0]
    return found[0]


def test_the_shipped_base_passes_the_schemas_and_every_chassis_rule():
    assert problems(BASE_MANIFESTS) == []
    assert unlisted_files() == []
    kinds = {m.kind for m in BASE_MANIFESTS}
    # Not vacuous: what the issue asks for is there to check.
    for kind in (
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ScaledObject",
        "ServiceMonitor",
        "ConfigMap",
        "Namespace",
    ):
        assert kind in kinds, kind
    assert KUBERNETES_VERSION == "1.31.0"


def test_the_gateway_runs_three_replicas_and_a_headless_service_selects_them():
    deployment = find(BASE_MANIFESTS, "Deployment", "chassis-gateway")
    headless = find(BASE_MANIFESTS, "Service", "chassis-gateway-replicas")
    assert deployment["spec"]["replicas"] == 3
    assert headless["spec"]["clusterIP"] == "None"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert headless["spec"]["selector"].items() <= labels.items()


def test_a_field_the_schema_does_not_know_is_named_with_the_kubernetes_version():
    def typo(manifests: list[Manifest]) -> None:
        gateway_container(manifests)["readinessProbe"]["periodSecond"] = 5

    problem = only_problem(broken(typo), "gateway.yaml: Deployment chassis-gateway")
    assert "periodSecond" in problem and KUBERNETES_VERSION in problem


def test_a_wrong_type_is_named_by_its_path():
    def words(manifests: list[Manifest]) -> None:
        find(manifests, "Deployment", "chassis-gateway")["spec"]["replicas"] = "three"

    only_problem(broken(words), "spec.replicas", "'three'")


def test_a_grace_period_shorter_than_prestop_drain_and_grace_is_refused():
    def short(manifests: list[Manifest]) -> None:
        pod = find(manifests, "Deployment", "chassis-gateway")["spec"]["template"]["spec"]
        pod["terminationGracePeriodSeconds"] = 30

    problem = only_problem(broken(short), "terminationGracePeriodSeconds 30")
    assert "preStop 5 s" in problem and "CHASSIS_GATEWAY_DRAIN_SECONDS 10 s" in problem
    assert "= 35 s" in problem


def test_a_drain_the_readiness_probe_cannot_notice_is_refused():
    def quick(manifests: list[Manifest]) -> None:
        env_entry(gateway_container(manifests), "CHASSIS_GATEWAY_DRAIN_SECONDS")["value"] = "2"

    only_problem(broken(quick), "CHASSIS_GATEWAY_DRAIN_SECONDS 2 s", "readinessProbe")


def test_a_probe_on_a_path_the_gateway_does_not_serve_is_refused():
    def wrong(manifests: list[Manifest]) -> None:
        gateway_container(manifests)["livenessProbe"]["httpGet"]["path"] = "/health"

    only_problem(broken(wrong), "livenessProbe.httpGet.path is '/health'", "/healthz")


def test_readiness_on_healthz_is_refused_because_it_would_not_drain():
    def wrong(manifests: list[Manifest]) -> None:
        gateway_container(manifests)["readinessProbe"]["httpGet"]["path"] = "/healthz"

    only_problem(broken(wrong), "readinessProbe.httpGet.path", "/readyz")


def test_a_probe_on_a_port_the_container_does_not_expose_is_refused():
    def wrong(manifests: list[Manifest]) -> None:
        gateway_container(manifests)["startupProbe"]["httpGet"]["port"] = "admin"

    only_problem(broken(wrong), "startupProbe.httpGet.port 'admin'", "not a port")


def test_a_gateway_listening_elsewhere_than_its_container_port_is_refused():
    def moved(manifests: list[Manifest]) -> None:
        env_entry(gateway_container(manifests), "CHASSIS_GATEWAY_PORT")["value"] = "9000"

    found = broken(moved)
    assert any("listens on 9000, which no containerPort exposes" in p for p in found), found
    assert any("readinessProbe.httpGet.port 'http' is 8000" in p for p in found), found


def test_a_gateway_bound_to_loopback_is_refused():
    def loopback(manifests: list[Manifest]) -> None:
        container = gateway_container(manifests)
        container["env"].remove(env_entry(container, "CHASSIS_GATEWAY_HOST"))

    only_problem(broken(loopback), "CHASSIS_GATEWAY_HOST is 127.0.0.1", "0.0.0.0")


def test_max_unavailable_other_than_zero_is_refused():
    def one(manifests: list[Manifest]) -> None:
        strategy = find(manifests, "Deployment", "chassis-gateway")["spec"]["strategy"]
        strategy["rollingUpdate"]["maxUnavailable"] = 1

    only_problem(broken(one), "Deployment chassis-gateway", "maxUnavailable is 1")


def test_a_missing_limit_is_named():
    def unlimited(manifests: list[Manifest]) -> None:
        del gateway_container(manifests)["resources"]["limits"]["memory"]

    only_problem(broken(unlimited), "containers[0] (gateway)", "resources.limits.memory")


def test_running_as_root_is_refused():
    def root(manifests: list[Manifest]) -> None:
        pod = find(manifests, "Deployment", "chassis-webhook-relay")
        pod["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = 0

    only_problem(broken(root), "Deployment chassis-webhook-relay", "runAsUser is 0")


def test_a_writable_root_filesystem_is_refused():
    def writable(manifests: list[Manifest]) -> None:
        gateway_container(manifests)["securityContext"]["readOnlyRootFilesystem"] = False

    only_problem(broken(writable), "readOnlyRootFilesystem")


def test_a_pod_the_restricted_pod_security_level_would_refuse_is_named():
    def loose(manifests: list[Manifest]) -> None:
        pod = find(manifests, "Deployment", "mlflow")["spec"]["template"]["spec"]
        del pod["securityContext"]["seccompProfile"]
        del pod["containers"][0]["securityContext"]["capabilities"]

    found = broken(loose)
    assert len(found) == 2 and all("Deployment mlflow" in p for p in found), found
    assert "capabilities.drop does not include ALL" in found[0]
    assert "seccompProfile.type is not RuntimeDefault" in found[1]


def test_an_env_var_that_is_no_chassis_setting_is_named():
    def misspelt(manifests: list[Manifest]) -> None:
        env_entry(gateway_container(manifests), "CHASSIS_GATEWAY_DRAIN_SECONDS")["name"] = (
            "CHASSIS_GATEWAY_DRAIN_SECS"
        )

    found = broken(misspelt)
    assert any("CHASSIS_GATEWAY_DRAIN_SECS is not a Chassis setting" in p for p in found), found


def test_a_misspelt_setting_in_the_shared_config_map_is_named():
    def misspelt(manifests: list[Manifest]) -> None:
        data = find(manifests, "ConfigMap", "chassis-settings")["data"]
        data["CHASSIS_TRACKING_URL"] = data.pop("CHASSIS_TRACKING_URI")

    found = broken(misspelt)
    assert found and all("ConfigMap chassis-settings: CHASSIS_TRACKING_URL" in p for p in found)


def test_a_secret_setting_given_as_a_literal_value_is_refused():
    def literal(manifests: list[Manifest]) -> None:
        entry = env_entry(gateway_container(manifests), "CHASSIS_GATEWAY_ADMIN_TOKEN")
        del entry["valueFrom"]
        entry["value"] = "hunter2hunter2hunter2"

    only_problem(broken(literal), "CHASSIS_GATEWAY_ADMIN_TOKEN has a literal value", "secretKeyRef")


def test_a_gateway_without_a_headless_service_is_refused():
    def gone(manifests: list[Manifest]) -> None:
        manifests[:] = [m for m in manifests if m.name != "chassis-gateway-replicas"]

    only_problem(broken(gone), "no headless Service", "dns:NAME:PORT")


def test_an_autoscaler_reading_a_metric_the_gateway_does_not_export_is_refused():
    def invented(manifests: list[Manifest]) -> None:
        trigger = find(manifests, "ScaledObject", "chassis-gateway")["spec"]["triggers"][0]
        trigger["metadata"]["query"] = "sum(chassis_inflight_requests)"

    only_problem(broken(invented), "chassis_inflight_requests", "does not export")


def test_the_autoscaler_reads_the_latency_histogram_the_gateway_exports():
    trigger = find(BASE_MANIFESTS, "ScaledObject", "chassis-gateway")["spec"]["triggers"][0]
    read = set(re.findall(r"chassis_[a-z0-9_]+", trigger["metadata"]["query"]))
    assert read == {"chassis_request_latency_seconds_sum"}
    assert read <= exported_metric_names()


def test_a_service_monitor_on_a_port_the_service_does_not_name_is_refused():
    def wrong(manifests: list[Manifest]) -> None:
        find(manifests, "ServiceMonitor", "chassis-gateway")["spec"]["endpoints"][0]["port"] = (
            "metrics"
        )

    only_problem(broken(wrong), "ServiceMonitor chassis-gateway", "endpoints[0].port 'metrics'")


def test_a_budget_that_allows_no_disruption_is_refused():
    def strict(manifests: list[Manifest]) -> None:
        spec = find(manifests, "PodDisruptionBudget", "chassis-gateway")["spec"]
        del spec["maxUnavailable"]
        spec["minAvailable"] = 3

    only_problem(broken(strict), "PodDisruptionBudget chassis-gateway", "allows no disruption")


def test_a_file_kustomize_would_skip_is_named(tmp_path: Path):
    base = tmp_path / "kubernetes"
    shutil.copytree(BASE, base)
    (base / "extra.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    assert unlisted_files(base) == ["extra.yaml: not listed in kustomization.yaml resources"]


def test_every_chassis_command_the_manifests_run_parses_with_the_installed_cli():
    parser = build_parser()
    commands = []
    for manifest in BASE_MANIFESTS:
        if manifest.kind != "Deployment":
            continue
        for container in manifest.document["spec"]["template"]["spec"]["containers"]:
            if chassis_command(container) is None:
                continue
            args, unknown = parser.parse_known_args(container["args"])
            assert unknown == [], (manifest.where, unknown)
            commands.append(args.command)
    assert sorted(commands) == ["serve", "webhook-relay"]


def test_the_manifests_run_the_image_as_the_user_the_dockerfile_creates():
    dockerfile = (BASE.parent.parent / "Dockerfile").read_text()
    uid = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
    assert uid is not None
    for manifest in BASE_MANIFESTS:
        if manifest.kind == "Deployment":
            context = manifest.document["spec"]["template"]["spec"]["securityContext"]
            assert context["runAsUser"] == int(uid.group(1)), manifest.where


def job_pod(template: dict[str, Any]) -> dict[str, Any]:
    return template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]


def test_the_flow_run_job_template_passes_and_gives_pods_the_settings_and_secrets():
    template = json.loads(JOB_TEMPLATE.read_text())
    assert job_template_problems(template, BASE_MANIFESTS) == []
    references = job_pod(template)["containers"][0]["envFrom"]
    assert {"secretRef": {"name": "chassis-secrets"}} in references
    assert {"configMapRef": {"name": "chassis-settings"}} in references
    # The worker gives flow-run pods `args: prefect flow-run execute`: the entrypoint's case.
    assert job_pod(template)["containers"][0]["args"] == "{{ command }}"


def test_a_flow_run_pod_running_as_root_is_refused():
    template = json.loads(JOB_TEMPLATE.read_text())
    job_pod(template)["securityContext"]["runAsUser"] = 0
    found = job_template_problems(template, BASE_MANIFESTS)
    only_problem(found, "prefect-base-job-template.json", "prefect-job", "runAsUser is 0")


def test_prefects_misplaced_job_fields_in_the_pod_spec_are_refused_by_the_schema():
    # The default template puts completions in the pod spec; ours takes it out.
    template = json.loads(JOB_TEMPLATE.read_text())
    job_pod(template)["completions"] = 1
    found = job_template_problems(template, BASE_MANIFESTS)
    only_problem(found, "spec.template.spec", "completions")


def test_a_placeholder_the_template_has_no_variable_for_is_named():
    template = json.loads(JOB_TEMPLATE.read_text())
    job_pod(template)["priorityClassName"] = "{{ priority_class }}"
    found = job_template_problems(template, BASE_MANIFESTS)
    assert any("{{ priority_class }} is no variable" in p for p in found), found


# ---- the base as kustomize renders it (`kubectl apply -k` sends this) ---------------------


def built_base(base: Path = BASE) -> list[Manifest]:
    # kubectl ships with kustomize built in (`kubectl kustomize`); this machine's image has it.
    if kustomize_command() is None:
        pytest.skip("neither kustomize nor kubectl is installed: nothing can build the base")
    return kustomize_build(base)


def test_the_kustomize_build_passes_the_schemas_and_every_chassis_rule():
    built = built_base()
    assert problems(built) == []
    # Every listed resource is rendered, plus the generated job-template ConfigMap.
    assert len(built) == len(BASE_MANIFESTS) + 1


def test_kustomize_puts_every_resource_in_the_chassis_namespace_with_the_part_of_label():
    for manifest in built_base():
        metadata = manifest.document["metadata"]
        if manifest.kind != "Namespace":
            assert metadata.get("namespace") == "chassis", manifest.where
        assert metadata["labels"]["app.kubernetes.io/part-of"] == "chassis", manifest.where


def test_kustomize_gives_every_chassis_container_the_released_image():
    images = [
        container["image"]
        for manifest in built_base()
        if manifest.kind == "Deployment"
        for container in pod_spec(manifest)["containers"]
    ]
    # The gateway, the webhook relay, the Prefect worker and the MLflow server: one image.
    assert len(images) == 4
    assert set(images) == {"registry.example.com/chassis:0.1.0"}


def test_the_worker_mounts_the_job_template_under_its_generated_name():
    built = built_base()
    generated = [
        m.name
        for m in built
        if m.name.startswith("chassis-prefect-job-template") and m.kind == "ConfigMap"
    ]
    # configMapGenerator appends a hash of the content, so a changed template rolls the worker.
    assert len(generated) == 1 and re.fullmatch(
        r"chassis-prefect-job-template-[a-z0-9]{10}", generated[0]
    ), generated
    worker = next(m for m in built if m.kind == "Deployment" and m.name == "chassis-prefect-worker")
    mounted = {v["configMap"]["name"] for v in pod_spec(worker)["volumes"] if "configMap" in v}
    assert generated[0] in mounted


def test_a_base_listing_a_missing_file_fails_the_build_naming_it(tmp_path: Path):
    base = tmp_path / "kubernetes"
    shutil.copytree(BASE, base)
    (base / "gateway-pdb.yaml").unlink()
    with pytest.raises(RuntimeError, match=r"gateway-pdb\.yaml"):
        built_base(base)


def test_a_rule_broken_in_a_base_file_is_found_in_the_build(tmp_path: Path):
    base = tmp_path / "kubernetes"
    shutil.copytree(BASE, base)
    pdb = base / "gateway-pdb.yaml"
    pdb.write_text(pdb.read_text().replace("maxUnavailable: 1", "minAvailable: 3"))
    only_problem(
        problems(built_base(base)), "PodDisruptionBudget chassis-gateway", "allows no disruption"
    )
