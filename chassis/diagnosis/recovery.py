"""What the diagnosis does about what it found: the decision, pure (the diagnosis, the
aliases, the audit trail, the replicas' probes and the policy in; a plan out). A fault
in the champion's own performance: fall back to `@previous`. A replica that answers but is
not ready or not verified: restart it, when the local supervisor runs it (elsewhere
nothing here can start it again: on Kubernetes the probes act). A data-quality fault that
sanitization answers (missing values, values outside the reference's ranges) switches the
model's gateway sanitization on, and a clean window switches it off again
(`_sanitization_plan`).

A cooldown prevents flapping: after an automatic fallback, another waits
`fallback_cooldown_minutes` unless an alias moved since (a person promoted a version, or a
release did), which means someone has acted on the model and the new champion deserves the
same protection.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from chassis.diagnosis.data_checks import MISSING_CHECK, RANGE_CHECK
from chassis.diagnosis.findings import Diagnosis, Finding
from chassis.diagnosis.policy import DiagnosisPolicy
from chassis.diagnosis.probes import ReplicaProbe
from chassis.registry.audit import AuditRecord
from chassis.sanitization import SanitizationMode

# The reason an automatic fallback records in the audit trail starts with this: the
# cooldown finds the last one by it.
AUTOMATIC_FALLBACK = "automatic fallback by diagnosis"
# And an automatic sanitization switch's reason.
AUTOMATIC_SANITIZATION = "automatic sanitization switch by diagnosis"
AUTOMATIC_RESTART = "automatic restart by diagnosis"
# What restarts a replica where the diagnosis cannot.
ELSEWHERE = (
    "on Kubernetes the readiness probe takes an unready replica out of the Service and the "
    "liveness probe restarts one that stops answering; elsewhere restart it by hand"
)


@dataclass(frozen=True)
class RecoveryPlan:
    action: Literal["fallback", "sanitize", "unsanitize", "restart", "none"]
    mode: Literal["act", "suggest", "impossible", "none"]
    explanation: str
    evidence: dict[str, str] = field(default_factory=dict[str, str])
    target: int | None = None  # the version that becomes champion
    sanitization: SanitizationMode | None = None  # the mode sanitize/unsanitize sets
    replicas: tuple[str, ...] = ()  # the replicas to restart


def plan_recovery(
    diagnosis: Diagnosis,
    aliases: dict[str, int],
    trail: Sequence[AuditRecord],
    policy: DiagnosisPolicy,
    now: datetime,
    *,
    sanitizing: SanitizationMode = "off",
    reads_text: bool = False,
    probes: Sequence[ReplicaProbe] = (),
) -> RecoveryPlan:
    """`sanitizing`: the model's sanitization mode in the registry now; `reads_text`: its
    champion reads texts (sanitization does not apply)."""
    if diagnosis.failing_branch == "data" or (
        diagnosis.failing_branch is None and sanitizing != "off"
    ):
        return _sanitization_plan(diagnosis, policy, sanitizing, reads_text)
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
    # The last alias move: a record that moves none (a restart, a sanitization switch)
    # neither starts the cooldown nor ends it.
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


def _sanitization_plan(
    diagnosis: Diagnosis, policy: DiagnosisPolicy, sanitizing: SanitizationMode, reads_text: bool
) -> RecoveryPlan:
    """Data failing on what sanitization answers: switch it on (once: already on, in any
    mode, is left as it is). Nothing failing while it is on: off again, if the data branch
    judged a window and found it clean and the mode is clip (whose rows are logged as
    received; refuse mode's refused rows are not logged, so it is only suggested)."""
    data = next((r for r in diagnosis.walked if r.branch == "data"), None)
    findings = data.findings if data is not None else []
    model = diagnosis.model
    if diagnosis.failing_branch == "data":
        answered = [f for f in findings if f.failing and f.check in (MISSING_CHECK, RANGE_CHECK)]
        if not answered:
            return RecoveryPlan(
                "none",
                "none",
                "no automatic action: sanitization answers missing and out-of-range values "
                "only, and neither failed",
            )
        evidence = {f.check: f.observed for f in answered}
        mode = policy.sanitize_mode
        if reads_text:
            return RecoveryPlan(
                "sanitize",
                "none",
                "no automatic action: sanitization applies to models that read rows of "
                "numbers, and this one reads texts",
                evidence,
            )
        if policy.sanitize == "off":
            return RecoveryPlan("sanitize", "none", "sanitization is off (policy)", evidence)
        if sanitizing != "off":
            return RecoveryPlan(
                "sanitize",
                "none",
                f"sanitization is already on ({sanitizing}): nothing written; the window is "
                "logged as received, so it fails until the source sends clean rows",
                evidence,
                sanitization=sanitizing,
            )
        if policy.sanitize == "suggest":
            return RecoveryPlan(
                "sanitize",
                "suggest",
                f"suggested: switch sanitization on ({mode}) (`chassis sanitize --model "
                f"{model} --mode {mode}` does it by hand)",
                evidence,
                sanitization=mode,
            )
        return RecoveryPlan(
            "sanitize", "act", f"switch sanitization on ({mode})", evidence, sanitization=mode
        )
    clean = bool(findings) and all(f.verdict == "healthy" for f in findings)
    if not clean:
        return RecoveryPlan(
            "none",
            "none",
            f"nothing wrong found; sanitization stays {sanitizing}: no window was judged clean",
        )
    evidence = {f.check: f.observed for f in findings}
    if policy.sanitize == "off":
        return RecoveryPlan(
            "unsanitize",
            "none",
            f"nothing wrong found; sanitization stays {sanitizing} (policy: sanitize off)",
            evidence,
        )
    if policy.sanitize == "suggest" or sanitizing == "refuse":
        # Refused rows never reach the prediction log: a clean window there says nothing
        # about the source (chassis_sanitization_refused_rows_total does), so refuse mode
        # is only ever switched off by a person.
        why = (
            " (refused rows are not logged, so a clean window does not show a clean source: "
            "see chassis_sanitization_refused_rows_total)"
            if sanitizing == "refuse"
            else ""
        )
        return RecoveryPlan(
            "unsanitize",
            "suggest",
            f"the window is clean: suggested: switch sanitization off (`chassis sanitize "
            f"--model {model} --mode off`){why}",
            evidence,
            sanitization="off",
        )
    return RecoveryPlan(
        "unsanitize",
        "act",
        f"the window is clean: switch sanitization ({sanitizing}) off",
        evidence,
        sanitization="off",
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
