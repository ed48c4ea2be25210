"""Gates, promotion and rollback: the flows that decide which version takes traffic."""

import shutil
import uuid
from typing import Annotated, Literal

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from chassis import tracking
from chassis.aliases import CHAMPION
from chassis.errors import ChassisError, RegistryError, RegistryUnreachable
from chassis.gates import GatePolicy
from chassis.registry import AliasChange, Registry
from chassis.registry.tags import TAG_GATE_REPORT
from chassis.settings import ChassisSettings
from flows.parameters import ModelParameter, VersionParameter
from flows.run_form import described
from tasks.promotion import (
    judge_gates,
    measure_versions,
    promote_champion,
    raise_if_failed,
    record_unmeasurable,
    retire_challenger,
    rollback_champion,
    set_challenger,
    verify_version,
)


class GatesOutcome(BaseModel):
    model_name: str
    version: int
    passed: bool
    report: dict[str, object]
    report_uri: str


class AliasOutcome(BaseModel):
    model_name: str
    action: str
    noop: bool
    aliases_before: dict[str, int]
    aliases_after: dict[str, int]
    audit_sequence: int | None


def run_url(settings: ChassisSettings) -> str:
    return tracking.flow_run_url(settings, flow_run.id)


def alias_outcome(change: AliasChange) -> AliasOutcome:
    return AliasOutcome(
        model_name=change.name,
        action=change.action,
        noop=change.noop,
        aliases_before=change.aliases_before,
        aliases_after=change.aliases_after,
        audit_sequence=change.audit.sequence if change.audit else None,
    )


@described
@flow(name="gates", flow_run_name="gates {model_name} v{version}", log_prints=True)
def gates(
    model_name: ModelParameter,
    version: VersionParameter,
    thresholds: Annotated[
        GatePolicy | None,
        Field(description="Gate thresholds (defaults when empty); see GatePolicy."),
    ] = None,
) -> GatesOutcome:
    """Measure a version's ONNX file (verified by sha256) on its spec's test split, compare it
    with its baseline and the current champion, store the gate report with the version, and
    fail the run if any gate fails. Thresholds: see chassis.gates.GatePolicy (quality change
    semantics of MLflow's MetricThreshold; negative changes allow a bounded regression)."""
    settings = ChassisSettings()
    registry = Registry.from_settings(settings)
    policy = thresholds or GatePolicy()
    workdir = settings.home / "work" / uuid.uuid4().hex
    store = tracking.Tracking.from_settings(settings)
    try:
        measured = measure_versions(registry, model_name, version, workdir)
        report = judge_gates(registry, store, model_name, measured, policy)
    except RegistryUnreachable:
        raise  # nothing is known about the version: no verdict either way
    except ChassisError as error:
        if not is_registered(registry, model_name, version):
            raise
        report = record_unmeasurable(registry, store, model_name, version, str(error))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    raise_if_failed(report)
    return GatesOutcome(
        model_name=model_name,
        version=version,
        passed=report.passed,
        report=report.to_dict(),
        report_uri=registry.version_tags(model_name, version)[TAG_GATE_REPORT],
    )


def is_registered(registry: Registry, model_name: str, version: int) -> bool:
    try:
        registry.version_tags(model_name, version)
    except RegistryUnreachable:
        raise
    except RegistryError:
        return False
    return True


@described
@flow(name="promote", flow_run_name="promote {model_name} v{version} to {to}", log_prints=True)
def promote(
    model_name: ModelParameter,
    version: VersionParameter,
    to: Annotated[
        Literal["champion", "challenger"],
        Field(description="Alias to give the version: champion, or challenger for a rollout."),
    ] = "champion",
    expected_champion: Annotated[
        int | None,
        Field(
            ge=0,
            description="Compare-and-set: the champion this promotion replaces. Empty: the "
            "champion when this run starts (`chassis promote` always passes the champion it "
            "read when the command was given). 0: expect no champion yet.",
        ),
    ] = None,
    reason: Annotated[str, Field(max_length=500)] = "promoted by hand",
    allow_retired: Annotated[
        bool,
        Field(
            description="With to=challenger: set a version that a rollout retired as "
            "challenger again (refused otherwise); the audit record names the override."
        ),
    ] = False,
) -> AliasOutcome:
    """Verify a version's bytes (sha256) and move an alias to it. Refused unless its gate
    report passed; refused with a conflict if another promotion moved the champion first;
    a retired challenger is refused as challenger unless allow_retired is set."""
    if allow_retired and to != "challenger":
        raise RegistryError("allow_retired applies to to=challenger only; nothing was changed")
    settings = ChassisSettings()
    registry = Registry.from_settings(settings)
    current = registry.current_aliases(model_name)
    workdir = settings.home / "work" / uuid.uuid4().hex
    try:
        tags = verify_version(registry, model_name, version, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    evidence = {
        "gate_report": tags.get(TAG_GATE_REPORT, "none"),
        "flow_run": run_url(settings),
    }
    if to == "challenger":
        return alias_outcome(
            set_challenger(
                registry, model_name, version, reason, evidence, allow_retired=allow_retired
            )
        )
    expected = current.get(CHAMPION) if expected_champion is None else (expected_champion or None)
    return alias_outcome(
        promote_champion(registry, model_name, version, expected, reason, evidence)
    )


@described
@flow(name="rollback", flow_run_name="rollback {model_name}", log_prints=True)
def rollback(
    model_name: ModelParameter,
    reason: Annotated[
        str, Field(max_length=500, description="Why, for the audit record.")
    ] = "rolled back by hand",
) -> AliasOutcome:
    """Make `previous` the champion again, in one step, with an audit record."""
    settings = ChassisSettings()
    registry = Registry.from_settings(settings)
    return alias_outcome(rollback_champion(registry, model_name, reason))


@described
@flow(name="retire", flow_run_name="retire challenger of {model_name}", log_prints=True)
def retire(
    model_name: ModelParameter,
    version: Annotated[
        int | None,
        Field(ge=1, description="The challenger to retire; empty: whichever is challenger."),
    ] = None,
    reason: Annotated[
        str, Field(max_length=500, description="Why, for the audit record.")
    ] = "retired by hand",
) -> AliasOutcome:
    """Remove the challenger alias and record the retirement: the version is not set as
    challenger again without the explicit override, and is never left as `previous`."""
    settings = ChassisSettings()
    registry = Registry.from_settings(settings)
    return alias_outcome(retire_challenger(registry, model_name, version, reason))
