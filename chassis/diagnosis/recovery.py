"""What the diagnosis does about what it found: the decision, pure (the diagnosis, the
aliases, the audit trail, the replicas' probes and the policy in; a plan out). A fault
in the champion's own performance: fall back to `@previous`. A replica that answers but is
not ready or not verified: restart it, when the local supervisor runs it (elsewhere
nothing here can start it again: on Kubernetes the probes act).

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
from chassis.diagnosis.probes import ReplicaProbe
from chassis.registry.audit import AuditRecord

# The reason an automatic fallback records in the audit trail starts with this: the
# cooldown finds the last one by it.
AUTOMATIC_FALLBACK = "automatic fallback by diagnosis"
AUTOMATIC_RESTART = "automatic restart by diagnosis"
# What restarts a replica where the diagnosis cannot.
ELSEWHERE = (
    "on Kubernetes the readiness probe takes an unready replica out of the Service and the "
    "liveness probe restarts one that stops answering; elsewhere restart it by hand"
)


@dataclass(frozen=True)
class RecoveryPlan:
    action: Literal["fallback", "restart", "none"]
    mode: Literal["act", "suggest", "impossible", "none"]
    explanation: str
    evidence: dict[str, str] = field(default_factory=dict[str, str])
    target: int | None = None  # the version that becomes champion
    replicas: tuple[str, ...] = ()  # the replicas to restart


def plan_recovery(
    diagnosis: Diagnosis,
    aliases: dict[str, int],
    trail: Sequence[AuditRecord],
    policy: DiagnosisPolicy,
    now: datetime,
    probes: Sequence[ReplicaProbe] = (),
) -> RecoveryPlan:
    if diagnosis.failing_branch is None:
        return RecoveryPlan("none", "none", "nothing wrong found: no action")
    if diagnosis.failing_branch == "service":
        return plan_restart(probes, policy)
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
    # The last alias move: a record that moves none (a restart) neither starts nor ends it.
    last = next((r for r in reversed(trail) if r.moves), None)
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


def needs_restart(probe: ReplicaProbe) -> bool:
    """Alive (it answers) but not ready, or not serving a verified version: a restart
    starts it from a clean state. One that does not answer is the supervisor's to start
    again if its process exited, or a person's if it hangs."""
    return probe.reachable and not (probe.ready and probe.serves_verified)


def plan_restart(probes: Sequence[ReplicaProbe], policy: DiagnosisPolicy) -> RecoveryPlan:
    """Restart each replica that needs it and runs under the local supervisor."""
    stuck = [p for p in probes if needs_restart(p)]
    silent = [p.url for p in probes if not p.reachable]
    notes = (
        f"; {', '.join(silent)} does not answer: the local supervisor starts a replica whose "
        "process exited again by itself, a hung one needs a person"
        if silent
        else ""
    )
    if not stuck:
        return RecoveryPlan("none", "none", f"no replica to restart{notes}; {ELSEWHERE}")
    evidence = {p.url: p.problem or "its stable version is not verified and loaded" for p in stuck}
    here = tuple(p.url for p in stuck if p.supervised)
    away = [p.url for p in stuck if not p.supervised]
    if away:
        notes += f"; not under the local supervisor: {', '.join(away)} ({ELSEWHERE})"
    if policy.restart == "off":
        return RecoveryPlan("restart", "none", f"restart is off (policy){notes}", evidence)
    if not here:
        return RecoveryPlan("restart", "none", f"no replica to restart here{notes}", evidence)
    named = ", ".join(here)
    if policy.restart == "suggest":
        return RecoveryPlan(
            "restart", "suggest", f"suggested: restart {named}{notes}", evidence, replicas=here
        )
    return RecoveryPlan(
        "restart", "act", f"restart {named} (local supervisor){notes}", evidence, replicas=here
    )
