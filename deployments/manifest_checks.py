"""Offline checks of the Kubernetes manifests in deployments/kubernetes/ (no cluster needed).

Two layers: every resource against the Kubernetes API schemas of KUBERNETES_VERSION (the
`kubernetes-validate` package bundles them; strict: an unknown field is an error), and
Chassis's own rules, which no schema knows: the gateway's shutdown must fit in the grace
period, its probes must hit the routes it serves on the port it listens on, settings must be
names Chassis reads, secrets must come from Secrets, and so on. Each problem is one line
naming the file, the resource and the field.

    python -m deployments.manifest_checks     # exit 1 and one line per problem, if any

tests/unit/test_kubernetes_manifests.py runs these checks on the shipped base and on broken
copies of it.
"""

import functools
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

KUBERNETES_VERSION = "1.31.0"
BASE = Path(__file__).with_name("kubernetes")
# The chassis-kubernetes work pool's base job template (deployments/prefect_job_template.py).
JOB_TEMPLATE = BASE / "prefect-base-job-template.json"
# Values a Prefect worker puts in the template's placeholders, to validate the Job it makes.
JOB_SAMPLE: dict[str, Any] = {
    "command": ["prefect", "flow-run", "execute"],
    "env": [{"name": "PREFECT__FLOW_RUN_ID", "value": "0"}],
    "labels": {"prefect.io/flow-run-id": "0"},
    "annotations": {},
    "name": "flow-run",
    "namespace": "chassis",
    "image": "chassis",
    "service_account_name": "chassis",
    "image_pull_policy": "IfNotPresent",
    "backoff_limit": 0,
    "finished_job_ttl": 3600,
    "cpu_request": "500m",
    "cpu_limit": "2",
    "memory_request": "1Gi",
    "memory_limit": "2Gi",
}

# Custom resources: not in the core schemas; each gets its own checks below instead.
CUSTOM_KINDS = {
    "ScaledObject": "keda.sh/v1alpha1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
}
# What each probe of a Chassis server must ask (chassis/serving/asgi.py and
# chassis/webhook_relay.py serve these). Readiness must be /readyz: it turns 503 while the
# gateway drains or a model is missing; liveness on /readyz would restart a draining gateway.
PROBE_PATHS: dict[str, dict[str, str]] = {
    "serve": {"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"},
    "webhook-relay": {
        "startupProbe": "/healthz",
        "readinessProbe": "/healthz",
        "livenessProbe": "/healthz",
    },
}
# Where each Chassis server takes its bind address and port (settings), by CLI command.
LISTEN_SETTINGS = {
    "serve": ("gateway_host", "gateway_port", "--port"),
    "webhook-relay": ("webhook_relay_host", "webhook_relay_port", "--port"),
}
# Environment names that look like credentials: given only by reference (valueFrom).
SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|SIGNING_KEY|ACCESS_KEY|BACKEND_STORE_URI)")
# Kubernetes' defaults where a field is left out.
DEFAULT_GRACE_SECONDS = 30
DEFAULT_PROBE_PERIOD = 10
DEFAULT_PROBE_FAILURES = 3


@dataclass(frozen=True)
class Manifest:
    """One resource of the base, and the file it came from."""

    file: str
    document: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.document.get("kind", "?"))

    @property
    def name(self) -> str:
        return str(self.document.get("metadata", {}).get("name", "?"))

    @property
    def where(self) -> str:
        return f"{self.file}: {self.kind} {self.name}"


def load_base(base: Path = BASE) -> list[Manifest]:
    """Every resource kustomization.yaml lists, in its order."""
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    manifests: list[Manifest] = []
    for file in kustomization["resources"]:
        for document in yaml.safe_load_all((base / file).read_text()):
            if document:
                manifests.append(Manifest(file, document))
    return manifests


def kustomize_command() -> list[str] | None:
    """How to run `kustomize build` here: a kustomize binary, else kubectl's built-in
    (`kubectl kustomize`, kustomize v5 since kubectl 1.27); None when neither is installed."""
    if (kustomize := shutil.which("kustomize")) is not None:
        return [kustomize, "build"]
    if (kubectl := shutil.which("kubectl")) is not None:
        return [kubectl, "kustomize"]
    return None


def kustomize_build(base: Path = BASE) -> list[Manifest]:
    """What `kubectl apply -k` would send: the base as kustomize renders it (namespace,
    labels, images and generated ConfigMaps with their hashed names applied). Raises
    RuntimeError naming the tool's own message when the build fails."""
    command = kustomize_command()
    if command is None:
        raise RuntimeError("neither kustomize nor kubectl is installed: cannot build the base")
    built = subprocess.run(
        [*command, str(base)], capture_output=True, text=True, timeout=60, check=False
    )
    if built.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} {base} failed: {built.stderr.strip()}")
    return [
        Manifest("kustomize build", document)
        for document in yaml.safe_load_all(built.stdout)
        if document
    ]


def unlisted_files(base: Path = BASE) -> list[str]:
    """YAML files in the base that kustomization.yaml does not list (kustomize would skip
    them silently), and listed files (resources, generators' files) that do not exist."""
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in base.glob("*.yaml")} - {"kustomization.yaml"}
    generated = {
        file
        for generator in kustomization.get("configMapGenerator") or []
        for file in generator.get("files") or []
    }
    return (
        [f"{name}: not listed in kustomization.yaml resources" for name in present - listed]
        + [f"kustomization.yaml: lists {name}, which does not exist" for name in listed - present]
        + [
            f"kustomization.yaml: configMapGenerator names {name}, which does not exist"
            for name in sorted(generated)
            if not (base / name).is_file()
        ]
    )


def job_template_problems(template: dict[str, Any], manifests: list[Manifest]) -> list[str]:
    """The work pool's base job template: every placeholder is a variable of the template,
    and the Job a worker makes from it passes the schemas and the pod rules of the base."""
    where = JOB_TEMPLATE.name
    found: list[str] = []
    configuration = template.get("job_configuration", {})
    variables = set(template.get("variables", {}).get("properties", {}))
    used = set(re.findall(r"\{\{ *(\w+) *\}\}", json.dumps(configuration)))
    found += [
        f"{where}: {{{{ {name} }}}} is no variable of the template"
        for name in sorted(used - variables)
    ]
    job = _rendered(configuration.get("job_manifest", {}))
    found += schema_problems(Manifest(where, job))
    pod = job.get("spec", {}).get("template", {}).get("spec", {})
    config_maps = {m.name for m in manifests if m.kind == "ConfigMap"}
    for index, container in enumerate(pod.get("containers", [])):
        at = f"{where}: containers[{index}] ({container.get('name')})"
        found += list(security_problems(at, pod, container))
        for source in container.get("envFrom") or []:
            name = (source.get("configMapRef") or {}).get("name")
            if name is not None and name not in config_maps:
                found.append(f"{at}: envFrom names ConfigMap {name}, which is not in the base")
    return found


def _rendered(value: Any) -> Any:
    """`value` with each "{{ name }}" string replaced by the worker's kind of value."""
    if isinstance(value, dict):
        return {k: _rendered(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rendered(v) for v in value]
    if isinstance(value, str):
        whole = re.fullmatch(r"\{\{ *(\w+) *\}\}", value)
        if whole:
            return JOB_SAMPLE.get(whole.group(1), value)
        return re.sub(r"\{\{ *(\w+) *\}\}", lambda m: str(JOB_SAMPLE.get(m.group(1))), value)
    return value


def problems(manifests: list[Manifest]) -> list[str]:
    """Every problem found, one line each; empty when the manifests pass."""
    found: list[str] = []
    for manifest in manifests:
        found += schema_problems(manifest)
    found += list(chassis_problems(manifests))
    return found


def schema_problems(manifest: Manifest) -> list[str]:
    # The same resource validates the same way: the tests check many copies of the base
    # that differ in one resource, and the schemas' references make each check slow-ish.
    return list(_schema_problems(manifest.file, json.dumps(manifest.document, sort_keys=True)))


@functools.lru_cache(maxsize=256)
def _schema_problems(file: str, document_json: str) -> tuple[str, ...]:
    return tuple(_validate(Manifest(file, json.loads(document_json))))


def _validate(manifest: Manifest) -> list[str]:
    import kubernetes_validate

    expected_api = CUSTOM_KINDS.get(manifest.kind)
    if expected_api is not None:
        api = manifest.document.get("apiVersion")
        if api != expected_api:
            return [f"{manifest.where}: apiVersion is {api!r}, expected {expected_api}"]
        return []
    try:
        kubernetes_validate.validate(manifest.document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(part) for part in error.path) or "(resource)"
        return [f"{manifest.where}: {path}: {error.message} (Kubernetes {KUBERNETES_VERSION})"]
    except kubernetes_validate.SchemaNotFoundError:
        return [
            f"{manifest.where}: no {manifest.document.get('apiVersion')} {manifest.kind} in "
            f"the Kubernetes {KUBERNETES_VERSION} schemas"
        ]
    return []


# ---- Chassis's rules -------------------------------------------------------------------


def chassis_problems(manifests: list[Manifest]) -> Iterator[str]:
    config_maps = {m.name: m.document for m in manifests if m.kind == "ConfigMap"}
    deployments = [m for m in manifests if m.kind == "Deployment"]
    for manifest in manifests:
        if manifest.kind == "Secret":
            yield (
                f"{manifest.where}: a Secret with values in the manifests; create it "
                "apart and refer to it"
            )
    for deployment in deployments:
        yield from rollout_problems(deployment)
        pod = pod_spec(deployment)
        for index, container in enumerate(pod.get("containers", [])):
            where = f"{deployment.where}: containers[{index}] ({container.get('name')})"
            yield from security_problems(where, pod, container)
            yield from resource_problems(where, container)
            env = container_env(container, config_maps)
            yield from env_problems(where, container, config_maps)
            command = chassis_command(container)
            if command in PROBE_PATHS:
                yield from probe_problems(where, command, container, env)
            if command == "serve":
                yield from drain_problems(where, pod, container, env)
    yield from service_problems(manifests, deployments)
    yield from pdb_problems(manifests, deployments)
    yield from scaled_object_problems(manifests, deployments)
    yield from service_monitor_problems(manifests)


def pod_spec(deployment: Manifest) -> dict[str, Any]:
    return deployment.document.get("spec", {}).get("template", {}).get("spec", {})


def pod_labels(deployment: Manifest) -> dict[str, str]:
    return (
        deployment.document.get("spec", {}).get("template", {}).get("metadata", {}).get("labels")
        or {}
    )


def chassis_command(container: Mapping[str, Any]) -> str | None:
    """The `chassis` subcommand a container runs through the image's entrypoint, if any
    (deployments/docker/entrypoint.sh runs `prefect ...` and `mlflow ...` as themselves)."""
    if container.get("command"):
        return None
    args = [str(a) for a in container.get("args") or []]
    if not args or args[0] in ("prefect", "mlflow"):
        return None
    return args[0]


def rollout_problems(deployment: Manifest) -> Iterator[str]:
    strategy = deployment.document.get("spec", {}).get("strategy") or {}
    kind = strategy.get("type", "RollingUpdate")
    if kind != "RollingUpdate":
        yield (
            f"{deployment.where}: spec.strategy.type is {kind}; use RollingUpdate with "
            "maxUnavailable 0"
        )
        return
    unavailable = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", "25% (default)")
    if unavailable not in (0, "0", "0%"):
        yield (
            f"{deployment.where}: spec.strategy.rollingUpdate.maxUnavailable is {unavailable}; "
            "it must be 0 so an update never takes a ready replica away first"
        )


def security_problems(
    where: str, pod: Mapping[str, Any], container: Mapping[str, Any]
) -> Iterator[str]:
    pod_context = pod.get("securityContext") or {}
    context = container.get("securityContext") or {}
    non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
    user = context.get("runAsUser", pod_context.get("runAsUser"))
    if user == 0:
        yield f"{where}: runs as root: securityContext.runAsUser is 0"
    elif non_root is not True:
        yield f"{where}: may run as root: securityContext.runAsNonRoot is not true"
    if context.get("readOnlyRootFilesystem") is not True:
        yield f"{where}: securityContext.readOnlyRootFilesystem is not true"
    if context.get("allowPrivilegeEscalation") is not False:
        yield f"{where}: securityContext.allowPrivilegeEscalation is not false"
    # What else the namespace's `restricted` Pod Security level refuses a pod for.
    if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
        yield f"{where}: securityContext.capabilities.drop does not include ALL"
    seccomp = context.get("seccompProfile", pod_context.get("seccompProfile")) or {}
    if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
        yield f"{where}: securityContext.seccompProfile.type is not RuntimeDefault"


def resource_problems(where: str, container: Mapping[str, Any]) -> Iterator[str]:
    resources = container.get("resources") or {}
    for bound in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in (resources.get(bound) or {}):
                yield f"{where}: resources.{bound}.{resource} is missing"


def known_settings() -> dict[str, bool]:
    """Every CHASSIS_* name Chassis reads, and whether it is a secret (SecretStr)."""
    from pydantic import SecretStr

    from chassis.serving.policy import ENV_PREFIX, ServingPolicy
    from chassis.settings import ChassisSettings

    names: dict[str, bool] = {}
    for prefix, model in (("CHASSIS_", ChassisSettings), (ENV_PREFIX, ServingPolicy)):
        for field, info in model.model_fields.items():
            annotation = str(info.annotation)
            names[f"{prefix}{field.upper()}"] = SecretStr.__name__ in annotation
    # Read outside the settings models: the repository's path in the image (prefect.yaml's
    # pull step), the Kubernetes flow-run image, the registry lock's lifetime, progress bars.
    for extra in (
        "CHASSIS_PROJECT_DIR",
        "CHASSIS_IMAGE",
        "CHASSIS_LOCK_TTL_SECONDS",
        "CHASSIS_PROGRESS",
    ):
        names[extra] = False
    return names


def container_env(
    container: Mapping[str, Any], config_maps: Mapping[str, Mapping[str, Any]]
) -> dict[str, str | None]:
    """The container's environment by name: literal values, None for values by reference.
    ConfigMaps named by envFrom first, then env (which wins, as in Kubernetes)."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom") or []:
        name = str((source.get("configMapRef") or {}).get("name"))
        if name in config_maps:
            env.update({k: str(v) for k, v in (config_maps[name].get("data") or {}).items()})
    for variable in container.get("env") or []:
        value = variable.get("value")
        env[str(variable.get("name"))] = None if value is None else str(value)
    return env


def env_problems(
    where: str, container: Mapping[str, Any], config_maps: Mapping[str, Mapping[str, Any]]
) -> Iterator[str]:
    settings = known_settings()
    for source in container.get("envFrom") or []:
        name = (source.get("configMapRef") or {}).get("name")
        if name is None:
            continue
        if name not in config_maps:
            yield f"{where}: envFrom names ConfigMap {name}, which is not in the base"
            continue
        for key, value in (config_maps[name].get("data") or {}).items():
            yield from _setting_problems(f"{where}: ConfigMap {name}", key, value, settings)
    for variable in container.get("env") or []:
        yield from _setting_problems(
            f"{where}: env", str(variable.get("name")), variable.get("value"), settings
        )


def _setting_problems(
    where: str, name: str, value: object, settings: Mapping[str, bool]
) -> Iterator[str]:
    if name.startswith("CHASSIS_") and name not in settings:
        yield (
            f"{where}: {name} is not a Chassis setting "
            "(chassis/settings.py, chassis/serving/policy.py)"
        )
    if value is not None and (settings.get(name) or SECRET_NAME.search(name)):
        yield f"{where}: {name} has a literal value; give it by reference (valueFrom.secretKeyRef)"


def _number(value: str | None, default: float) -> float:
    return default if value is None else float(value)


def listen_port(command: str, container: Mapping[str, Any], env: Mapping[str, str | None]) -> int:
    from chassis.settings import ChassisSettings

    _, port_field, option = LISTEN_SETTINGS[command]
    args = [str(a) for a in container.get("args") or []]
    if option in args[:-1]:
        return int(args[args.index(option) + 1])
    default = ChassisSettings.model_fields[port_field].default
    return int(_number(env.get(f"CHASSIS_{port_field.upper()}"), default))


def probe_problems(
    where: str, command: str, container: Mapping[str, Any], env: Mapping[str, str | None]
) -> Iterator[str]:
    host_field = LISTEN_SETTINGS[command][0]
    host = env.get(f"CHASSIS_{host_field.upper()}", "127.0.0.1 (the default)")
    args = [str(a) for a in container.get("args") or []]
    if "--host" in args[:-1]:
        host = args[args.index("--host") + 1]
    if host not in ("0.0.0.0", "::", "[::]"):
        yield (
            f"{where}: CHASSIS_{host_field.upper()} is {host}; kubelet probes and Services "
            "reach the pod's address, so bind 0.0.0.0"
        )
    port = listen_port(command, container, env)
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
    if port not in ports.values():
        yield f"{where}: ports: the server listens on {port}, which no containerPort exposes"
    for probe, path in PROBE_PATHS[command].items():
        spec = container.get(probe)
        if spec is None:
            if probe != "startupProbe":
                yield f"{where}: {probe} is missing"
            continue
        get = spec.get("httpGet") or {}
        if get.get("path") != path:
            yield (
                f"{where}: {probe}.httpGet.path is {get.get('path')!r}; "
                f"`chassis {command}` answers this probe on {path}"
            )
        probe_port = get.get("port")
        number = ports.get(probe_port) if isinstance(probe_port, str) else probe_port
        if number is None:
            yield (
                f"{where}: {probe}.httpGet.port {probe_port!r} is not a port the container exposes"
            )
        elif number != port:
            yield (
                f"{where}: {probe}.httpGet.port {probe_port!r} is {number}; "
                f"the server listens on {port}"
            )


def drain_problems(
    where: str, pod: Mapping[str, Any], container: Mapping[str, Any], env: Mapping[str, str | None]
) -> Iterator[str]:
    from chassis.serving.policy import ENV_PREFIX, ServingPolicy

    fields = ServingPolicy.model_fields
    drain = _number(env.get(f"{ENV_PREFIX}DRAIN_SECONDS"), fields["drain_seconds"].default)
    grace = _number(env.get(f"{ENV_PREFIX}GRACE_SECONDS"), fields["grace_seconds"].default)
    pre_stop = (((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get(
        "seconds", 0
    )
    termination = pod.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
    needed = pre_stop + drain + grace
    if termination < needed:
        yield (
            f"{where}: terminationGracePeriodSeconds {termination} is shorter than the "
            f"gateway's shutdown: preStop {pre_stop:g} s + {ENV_PREFIX}DRAIN_SECONDS {drain:g} s "
            f"+ {ENV_PREFIX}GRACE_SECONDS {grace:g} s = {needed:g} s (Kubernetes kills it "
            "with requests in flight)"
        )
    readiness = container.get("readinessProbe") or {}
    noticed = readiness.get("periodSeconds", DEFAULT_PROBE_PERIOD) * readiness.get(
        "failureThreshold", DEFAULT_PROBE_FAILURES
    )
    if pre_stop + drain < noticed:
        yield (
            f"{where}: {ENV_PREFIX}DRAIN_SECONDS {drain:g} s + preStop {pre_stop:g} s is shorter "
            f"than readinessProbe periodSeconds x failureThreshold ({noticed:g} s): a load "
            "balancer reading /readyz still sends requests when the gateway stops accepting"
        )


def _selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())


def _gateways(deployments: list[Manifest]) -> list[Manifest]:
    return [
        d
        for d in deployments
        if any(chassis_command(c) == "serve" for c in pod_spec(d).get("containers", []))
    ]


def service_problems(manifests: list[Manifest], deployments: list[Manifest]) -> Iterator[str]:
    services = [m for m in manifests if m.kind == "Service"]
    for service in services:
        spec = service.document.get("spec", {})
        targets = [d for d in deployments if _selects(spec.get("selector"), pod_labels(d))]
        if not targets:
            yield f"{service.where}: spec.selector matches no Deployment's pods"
            continue
        exposed = {
            key
            for d in targets
            for c in pod_spec(d).get("containers", [])
            for p in c.get("ports") or []
            for key in (p.get("name"), p.get("containerPort"))
        }
        for port in spec.get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            if target not in exposed:
                yield f"{service.where}: targetPort {target!r} is not a port of the pods it selects"
    for gateway in _gateways(deployments):
        headless = [
            s
            for s in services
            if s.document.get("spec", {}).get("clusterIP") == "None"
            and _selects(s.document.get("spec", {}).get("selector"), pod_labels(gateway))
        ]
        if not headless:
            yield (
                f"{gateway.where}: no headless Service (clusterIP: None) selects its pods; "
                "the rollout flow finds every replica through one (replicas: dns:NAME:PORT)"
            )


def pdb_problems(manifests: list[Manifest], deployments: list[Manifest]) -> Iterator[str]:
    budgets = [m for m in manifests if m.kind == "PodDisruptionBudget"]
    for gateway in _gateways(deployments):
        replicas = gateway.document.get("spec", {}).get("replicas", 1)
        covering = [
            b
            for b in budgets
            if _selects(
                (b.document.get("spec", {}).get("selector") or {}).get("matchLabels"),
                pod_labels(gateway),
            )
        ]
        if not covering:
            yield f"{gateway.where}: no PodDisruptionBudget selects its pods"
        for budget in covering:
            spec = budget.document.get("spec", {})
            if spec.get("maxUnavailable") in (0, "0", "0%") or (
                isinstance(spec.get("minAvailable"), int) and spec["minAvailable"] >= replicas
            ):
                yield (
                    f"{budget.where}: spec allows no disruption of {replicas} replicas; node "
                    "drains would block (use maxUnavailable: 1)"
                )


def exported_metric_names() -> set[str]:
    """Every series name the gateway's /metrics can carry (chassis/serving/metrics.py): its
    registry's families, the process collector's included."""
    from chassis.serving.metrics import GatewayMetrics

    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("_sum", "_count", "_created"),
        "gauge": ("",),
    }
    names: set[str] = set()
    for family in GatewayMetrics().registry.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def scaled_object_problems(manifests: list[Manifest], deployments: list[Manifest]) -> Iterator[str]:
    names = {d.name: d for d in deployments}
    for scaled in (m for m in manifests if m.kind == "ScaledObject"):
        spec = scaled.document.get("spec", {})
        target = (spec.get("scaleTargetRef") or {}).get("name")
        if target not in names:
            yield (
                f"{scaled.where}: spec.scaleTargetRef.name {target!r} is no Deployment of the base"
            )
        low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        if not isinstance(low, int) or not isinstance(high, int) or not 1 <= low <= high:
            yield (
                f"{scaled.where}: spec.minReplicaCount {low} / maxReplicaCount {high} is "
                "not 1 <= min <= max"
            )
        triggers = spec.get("triggers") or []
        if not triggers:
            yield f"{scaled.where}: spec.triggers is empty"
        exported = exported_metric_names()
        for index, trigger in enumerate(triggers):
            metadata = trigger.get("metadata") or {}
            if trigger.get("type") != "prometheus":
                continue
            query = str(metadata.get("query", ""))
            for key in ("serverAddress", "query", "threshold"):
                if not metadata.get(key):
                    yield f"{scaled.where}: spec.triggers[{index}].metadata.{key} is missing"
            for metric in sorted(set(re.findall(r"\bchassis_[a-z0-9_]+", query)) - exported):
                yield (
                    f"{scaled.where}: spec.triggers[{index}].metadata.query reads {metric}, "
                    "which the gateway does not export (chassis/serving/metrics.py)"
                )


def service_monitor_problems(manifests: list[Manifest]) -> Iterator[str]:
    services = [m for m in manifests if m.kind == "Service"]
    for monitor in (m for m in manifests if m.kind == "ServiceMonitor"):
        spec = monitor.document.get("spec", {})
        selector = (spec.get("selector") or {}).get("matchLabels")
        selected = [
            s
            for s in services
            if _selects(selector, s.document.get("metadata", {}).get("labels") or {})
        ]
        if not selected:
            yield f"{monitor.where}: spec.selector.matchLabels selects no Service of the base"
        port_names = {
            p.get("name") for s in selected for p in s.document.get("spec", {}).get("ports") or []
        }
        for index, endpoint in enumerate(spec.get("endpoints") or []):
            if endpoint.get("port") not in port_names:
                yield (
                    f"{monitor.where}: spec.endpoints[{index}].port {endpoint.get('port')!r} "
                    "is no named port of the Services it selects"
                )
            if endpoint.get("path", "/metrics") != "/metrics":
                yield (
                    f"{monitor.where}: spec.endpoints[{index}].path is "
                    f"{endpoint.get('path')!r}; the gateway serves /metrics"
                )


def main() -> int:
    manifests = load_base()
    template = json.loads(JOB_TEMPLATE.read_text())
    found = unlisted_files() + problems(manifests) + job_template_problems(template, manifests)
    # The rendered base too, when a kustomize is installed: what a cluster would receive.
    built = "kustomize build: not run (neither kustomize nor kubectl installed)"
    if kustomize_command() is not None:
        try:
            found += problems(kustomize_build())
            built = "kustomize build: valid too"
        except RuntimeError as error:
            found.append(str(error))
    for line in found:
        print(line, file=sys.stderr)
    if not found:
        print(
            f"deployments/kubernetes: valid for Kubernetes {KUBERNETES_VERSION}, Chassis rules "
            f"pass; {built}"
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
