"""What the diagnosis does about what it found: the decision, pure (the diagnosis, the
aliases, the audit trail and the policy in; a plan out). Only a fault in the champion's
own performance has an action here so far: fall back to `@previous`.

A cooldown prevents flapping: after an automatic fallback, another waits
`fallback_cooldown_minutes` unless an alias moved since (a person promoted a version, or a
release did), which means someone has acted on the model and the new champion deserves the
same protection.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from chassis.diagnosis.findings import Diagnosis, Finding
from chassis.diagnosis.policy import DiagnosisPolicy
from chassis.registry.audit import AuditRecord

# The reason an automatic fallback records in the audit trail starts with this: the
# cooldown finds the last one by it.
AUTOMATIC_FALLBACK = "automatic fallback by diagnosis"


@dataclass(frozen=True)
class RecoveryPlan:
    action: Literal["fallback", "none"]
    mode: Literal["act", "suggest", "impossible", "none"]
    explanation: str
    evidence: dict[str, str] = field(default_factory=dict[str, str])
    target: int | None = None  # the version that becomes champion


def plan_recovery(
    diagnosis: Diagnosis,
    aliases: dict[str, int],
    trail: Sequence[AuditRecord],
    policy: DiagnosisPolicy,
    now: datetime,
) -> RecoveryPlan:
    if diagnosis.failing_branch is None:
        return RecoveryPlan("none", "none", "nothing wrong found: no action")
    if diagnosis.failing_branch == "service":
        # On Kubernetes the probes act on a replica that does not answer /healthz or
        # /readyz (restart, or out of the Service); elsewhere a person or supervisor does.
        return RecoveryPlan(
            "none",
            "none",
            "no automatic action: on Kubernetes the liveness probe restarts a replica that "
            "stops answering and the readiness probe takes an unready one out of the Service; "
            "elsewhere restart the replica named above",
        )
    if diagnosis.failing_branch != "model":
        return RecoveryPlan(
            "none", "none", f"no automatic action for a failing {diagnosis.failing_branch} branch"
        )
    champion = aliases.get("champion")
    failing: list[Finding] = [
        f for r in diagnosis.walked for f in r.findings if f.failing and f.version == champion
    ]
    if champion is None or not failing:
        return RecoveryPlan(
            "none",
            "none",
            "the failing version is not the champion (a rollout's candidate is judged by "
            "its rollout): no action",
        )
    evidence = {f.check: f.observed for f in failing}
    if policy.fallback == "off":
        return RecoveryPlan("fallback", "none", "fallback is off (policy)", evidence)
    previous = aliases.get("previous")
    if previous is None:
        return RecoveryPlan(
            "fallback",
            "impossible",
            f"v{champion} is failing and there is no @previous to fall back to; nothing was "
            "changed",
            evidence,
        )
    if policy.fallback == "suggest":
        return RecoveryPlan(
            "fallback",
            "suggest",
            f"suggested: fall back from v{champion} to v{previous}",
            evidence,
            previous,
        )
    last = trail[-1] if trail else None
    if (
        last is not None
        and last.action == "rollback"
        and last.reason.startswith(AUTOMATIC_FALLBACK)
        and now - datetime.fromisoformat(last.at)
        < timedelta(minutes=policy.fallback_cooldown_minutes)
    ):
        return RecoveryPlan(
            "fallback",
            "suggest",
            f"cooldown: the last automatic fallback was at {last.at}, within "
            f"{policy.fallback_cooldown_minutes} min, and no alias has moved since; suggested "
            f"only: fall back from v{champion} to v{previous} (`chassis rollback --model "
            f"{diagnosis.model}` does it by hand)",
            evidence,
            previous,
        )
    return RecoveryPlan(
        "fallback", "act", f"fall back from v{champion} to v{previous}", evidence, previous
    )
