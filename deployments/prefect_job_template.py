"""Writes deployments/kubernetes/prefect-base-job-template.json: the `chassis-kubernetes`
work pool's base job template, i.e. the Job each flow run starts as.

It is prefect-kubernetes' default template with what Chassis's flow-run pods need and
the default lacks: the settings and Secrets by reference (envFrom; the work pool's `env`
variable takes literal values only), and the security context the namespace's `restricted`
Pod Security level demands (non-root, no privilege escalation, read-only root filesystem
with emptyDir volumes where flows write). Regenerate after upgrading prefect-kubernetes, in
an install with the `kubernetes` extra:

    python -m deployments.prefect_job_template
"""

import copy
import json
from pathlib import Path
from typing import Any

TARGET = Path(__file__).with_name("kubernetes") / "prefect-base-job-template.json"

# The same references as the gateway's Deployment (deployments/kubernetes/).
ENV_FROM = [
    {"configMapRef": {"name": "chassis-settings"}},
    {"secretRef": {"name": "chassis-s3-credentials"}},
    {"secretRef": {"name": "chassis-secrets"}},
]
WRITABLE = {"state": "/var/lib/chassis", "home": "/home/chassis", "tmp": "/tmp"}
UID = 10001


def chassis_template(default: dict[str, Any]) -> dict[str, Any]:
    """The default base job template with Chassis's pod and container settings added."""
    template = copy.deepcopy(default)
    pod = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    # Job fields that the default puts in the pod spec, where the API has no such field (and
    # strict validation refuses them); a Job's own defaults are 1 and 1 anyway.
    pod.pop("completions", None)
    pod.pop("parallelism", None)
    pod["automountServiceAccountToken"] = False
    pod["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod["volumes"] = [{"name": name, "emptyDir": {}} for name in WRITABLE]
    container = pod["containers"][0]
    container["envFrom"] = ENV_FROM
    container["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    container["volumeMounts"] = [
        {"name": name, "mountPath": path} for name, path in WRITABLE.items()
    ]
    return template


def main() -> int:
    # Only in an install with the `kubernetes` extra (the image), not the dev one.
    from prefect_kubernetes.worker import KubernetesWorker  # pyright: ignore[reportMissingImports]

    default = KubernetesWorker.get_default_base_job_template()
    TARGET.write_text(json.dumps(chassis_template(default), indent=2) + "\n")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
