"""The base-services and business-logic branches, judged from what the replicas and the
registry said (pure: probes, the rollout record and the aliases in, findings out)."""

from chassis.diagnosis.findings import Finding
from chassis.diagnosis.probes import ReplicaProbe
from chassis.rollout import lease
from chassis.rollout.record import RolloutRecord


def service_findings(probes: list[ReplicaProbe], model: str) -> list[Finding]:
    """Every replica reachable, ready, serving the model, and reading its rollout record."""
    findings: list[Finding] = []
    if not probes:
        return [Finding("replicas", "failing", "no replica to ask", "at least one replica")]
    for probe in probes:
        where = f"replica {probe.url}"
        if not probe.reachable:
            findings.append(Finding(f"{where} reachable", "failing", probe.problem, "answers"))
            continue
        findings.append(
            Finding(
                f"{where} ready",
                "healthy" if probe.ready else "failing",
                "/readyz 200" if probe.ready else probe.problem or "/readyz is not 200",
                "/readyz 200",
            )
        )
        if probe.status is None:
            findings.append(
                Finding(f"{where} serves {model}", "failing", probe.problem, f"serves {model}")
            )
            continue
        stable = probe.status["state"].get("stable_version")
        loaded = probe.status.get("loaded_versions", [])
        findings.append(
            Finding(
                f"{where} serves {model}",
                "healthy" if probe.serves_verified else "failing",
                f"stable v{stable}, verified and loaded: {loaded}",
                "its stable version verified and loaded",
            )
        )
        if probe.status.get("record_error"):
            findings.append(
                Finding(
                    f"{where} reads the rollout record",
                    "failing",
                    str(probe.status["record_error"]),
                    "the record read and applied",
                )
            )
    return findings


def business_findings(
    probes: list[ReplicaProbe],
    record: RolloutRecord | None,
    champion: int | None,
    now: float,
) -> list[Finding]:
    """One committed split served everywhere, no orphaned split, the champion served."""
    served = [p for p in probes if p.status is not None]
    findings: list[Finding] = []
    if champion is None:
        findings.append(Finding("champion alias", "failing", "no @champion", "a champion"))
    if record is not None:
        generations = sorted({int(p.status["generation"]) for p in served if p.status})
        findings.append(
            Finding(
                "every replica serves the committed split",
                "healthy" if generations in ([record.generation], []) else "failing",
                f"record generation {record.generation}; replicas serve {generations}",
                f"generation {record.generation} on every replica",
            )
        )
        if record.mode != "stable" and lease.expired(record, now):
            findings.append(
                Finding(
                    "the split's rollout is alive",
                    "failing",
                    f"{record.mode} split orphaned: {lease.describe(record)}",
                    "a live rollout owns any split that is not stable",
                )
            )
    stable_only = record is None or record.mode == "stable"
    if champion is not None and stable_only:
        stables = sorted({p.status["state"].get("stable_version") for p in served if p.status})
        findings.append(
            Finding(
                "replicas serve the champion",
                "healthy" if stables in ([champion], []) else "failing",
                f"@champion v{champion}; replicas serve "
                + (", ".join(f"v{version}" for version in stables) or "nothing"),
                f"v{champion} everywhere",
            )
        )
    return findings
