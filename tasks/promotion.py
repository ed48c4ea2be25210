"""Tasks of gates and promotion: measure versions, judge them, move aliases, record why."""

import json
from pathlib import Path

from prefect import get_run_logger, task

from chassis import progress
from chassis.aliases import CHAMPION, describe_aliases
from chassis.cascade.spec import CascadeSpec
from chassis.errors import GatesFailed
from chassis.gates import (
    GatePolicy,
    GateReport,
    Measurements,
    evaluate_gates,
    unmeasurable_report,
)
from chassis.live_accuracy import accuracy_gate
from chassis.registry import AliasChange, Registry
from chassis.registry.tags import TAG_CASCADE, TAG_ONNX_SHA256, TAG_PARENT_VERSION
from chassis.task import task_of
from chassis.tracking import Tracking
from chassis.version_loader import evaluation_rows, load_version, rows_for
from chassis.version_measure import measure_classifier
from tasks.alias_changes import actor, publish_alias_change
from tasks.artifacts import publish_markdown
from tasks.options import NO_CACHE_TASK, REMOTE_READ_TASK


@task(name="measure-versions", **NO_CACHE_TASK)
def measure_versions(
    registry: Registry, model_name: str, version: int, workdir: Path
) -> tuple[Measurements, Measurements | None, Measurements | None]:
    """Candidate, its baseline (if compressed from one) and the champion, on the candidate's
    stored test split. Only the candidate's torch program is rebuilt (for parity): the others
    are judged by their ONNX bytes alone, so no version needs the spec's current code."""
    logger = get_run_logger()
    candidate = load_version(registry, model_name, version, workdir)
    dataset = evaluation_rows(registry, candidate.files, workdir)

    def measure(number: int) -> Measurements:
        if number == version:
            onnx_path, module = candidate.files.onnx_path, candidate.module
            rows = dataset
        else:
            other = registry.fetch_version(model_name, number, workdir / f"v{number}")
            if task_of(other.tags) != candidate.task:
                # Measured on this data as its own task would mean nothing: the gates say so.
                return Measurements.of_other_task(number, task_of(other.tags))
            onnx_path, module = other.onnx_path, None
            rows = rows_for(dataset, other, f"{model_name} v{number}")
        measured = measure_classifier(
            number, onnx_path, rows, module, candidate.n_classes, candidate.task, cascade(number)
        )
        logger.info(
            "v%d: %s, p99 %.3f ms, %d bytes",
            number,
            ", ".join(f"{k} {v:.4f}" for k, v in measured.metrics.items()),
            measured.latency_p99_ms,
            measured.size_bytes,
        )
        return measured

    def cascade(number: int) -> tuple[CascadeSpec, Path] | None:
        """A cascade version's spec and its full tier's verified ONNX file."""
        tag = registry.version_tags(model_name, number).get(TAG_CASCADE)
        if tag is None:
            return None
        spec = CascadeSpec.from_json(tag)
        full = spec.full_version
        return spec, registry.fetch_version(model_name, full, workdir / f"v{full}").onnx_path

    parent = candidate.files.tags.get(TAG_PARENT_VERSION)
    champion_version = registry.current_aliases(model_name).get(CHAMPION)
    with progress.log_fallback(logger):
        return (
            measure(version),
            measure(int(parent)) if parent else None,
            measure(champion_version) if champion_version not in (None, version) else None,
        )


@task(name="judge-gates", **NO_CACHE_TASK)
def judge_gates(
    registry: Registry,
    tracking: Tracking,
    model_name: str,
    measured: tuple[Measurements, Measurements | None, Measurements | None],
    policy: GatePolicy,
) -> GateReport:
    """Evaluate, store the report with the version (MLflow) and show it (Prefect)."""
    candidate, baseline, champion = measured
    report = evaluate_gates(model_name, candidate, baseline, champion, policy)
    return store_gate_report(registry, tracking, report, accuracy_gate(candidate, policy))


@task(name="record-unmeasurable", **NO_CACHE_TASK)
def record_unmeasurable(
    registry: Registry, tracking: Tracking, model_name: str, version: int, reason: str
) -> GateReport:
    """A version that could not be measured gets a failed verdict saying why, instead of
    staying registered with no gate report."""
    return store_gate_report(registry, tracking, unmeasurable_report(model_name, version, reason))


def store_gate_report(
    registry: Registry, tracking: Tracking, report: GateReport, live_gate: float | None = None
) -> GateReport:
    """Store the report and the signed verdict; `live_gate`: the live accuracy the version
    must keep once served (chassis/live_accuracy.py)."""
    model_name, version = report.model, report.version
    run_id = registry.version_run_id(model_name, version)
    uri = tracking.log_text_to_run(
        run_id, json.dumps(report.to_dict(), indent=2), f"gates/v{version}.json"
    )
    tracking.log_text_to_run(run_id, report.to_markdown(), f"gates/v{version}.md")
    registry.record_gate_report(model_name, version, report.passed, uri, live_gate)
    publish_markdown(
        report.to_markdown(),
        "gates",
        model_name,
        description=f"Gate report of {model_name} v{version}",
    )
    get_run_logger().info(
        "gates %s; report stored at %s", "passed" if report.passed else "FAILED", uri
    )
    return report


def raise_if_failed(report: GateReport) -> None:
    if not report.passed:
        failing = "; ".join(
            f"{r.gate}: observed {r.observed}, needs {r.threshold}" for r in report.failures
        )
        raise GatesFailed(
            f"{report.model} v{report.version} failed {len(report.failures)} gate(s): {failing}"
        )


@task(name="verify-version", **REMOTE_READ_TASK)
def verify_version(
    registry: Registry, model_name: str, version: int, workdir: Path
) -> dict[str, str]:
    """Download and check the sha256 of what is about to take traffic."""
    files = registry.fetch_version(model_name, version, workdir / f"v{version}")
    get_run_logger().info("v%d verified: sha256 %s", version, files.tags[TAG_ONNX_SHA256][:16])
    return files.tags


def _finish(change: AliasChange) -> AliasChange:
    publish_alias_change(change)
    logger = get_run_logger()
    logger.info(
        "%s %s: aliases %s -> %s",
        change.action,
        change.name,
        describe_aliases(change.aliases_before),
        describe_aliases(change.aliases_after),
    )
    if change.description_problem:
        logger.warning(change.description_problem)
    return change


# Each alias task is a thin call into chassis.registry, the only code that moves aliases.
@task(name="promote-champion", **NO_CACHE_TASK)
def promote_champion(
    registry: Registry,
    model_name: str,
    version: int,
    expected_champion: int | None,
    reason: str,
    evidence: dict[str, str],
) -> AliasChange:
    return _finish(
        registry.promote(
            model_name,
            version,
            expected_champion=expected_champion,
            actor=actor(),
            reason=reason,
            evidence=evidence,
        )
    )


@task(name="set-challenger", **NO_CACHE_TASK)
def set_challenger(
    registry: Registry,
    model_name: str,
    version: int,
    reason: str,
    evidence: dict[str, str],
    allow_retired: bool = False,
) -> AliasChange:
    """Refused (RetiredChallenger, nothing moved) for a version a rollout retired,
    unless `allow_retired`; the audit record then names the override."""
    return _finish(
        registry.set_challenger(
            model_name,
            version,
            actor=actor(),
            reason=reason,
            evidence=evidence,
            allow_retired=allow_retired,
        )
    )


@task(name="rollback-champion", **NO_CACHE_TASK)
def rollback_champion(registry: Registry, model_name: str, reason: str) -> AliasChange:
    return _finish(registry.rollback(model_name, actor=actor(), reason=reason))


@task(name="retire-challenger", **NO_CACHE_TASK)
def retire_challenger(
    registry: Registry,
    model_name: str,
    version: int | None,
    reason: str,
    evidence: dict[str, str] | None = None,
) -> AliasChange:
    return _finish(
        registry.retire_challenger(
            model_name, version, actor=actor(), reason=reason, evidence=evidence
        )
    )
