"""The compression stage: smaller, faster candidates of a registered version; the best one
that keeps quality within tolerance is registered as a new version."""

import shutil
import uuid
from typing import Annotated, Any

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from chassis.compression.candidates import BASELINE
from chassis.compression.measure import Measurement
from chassis.compression.policy import CompressionPolicy
from chassis.compression.select import Selection
from chassis.registry import RegisteredVersion, Registry
from chassis.settings import ChassisSettings
from chassis.task import CLASSIFICATION
from chassis.tracking import Tracking
from flows.run_form import described
from tasks.artifacts import publish_markdown, publish_table
from tasks.compression import (
    build_candidates,
    classifier_setup,
    load_parent,
    log_compression,
    measure_candidates,
    propose,
    register_selected,
    select,
    table_rows,
)

ModelNameParameter = Annotated[
    str, Field(min_length=1, description="Registered-model name, e.g. digits-mlp.")
]
VersionParameter = Annotated[
    int, Field(ge=1, description="Version to compress; it must carry torch weights (trained).")
]
CompressionPolicyParameter = Annotated[
    CompressionPolicy | None,
    Field(description="Candidates, their recipes, tolerance and objective (defaults when empty)."),
]


class CompressionOutcome(BaseModel):
    model_name: str
    parent_version: int
    selected: str
    fallback_to_baseline: bool
    version: int  # the registered compressed version, or the parent when the baseline won
    registered: bool
    explanation: str
    parent_run_id: str
    rows: list[dict[str, Any]]
    skipped: dict[str, str]
    # Registered with the same ONNX bytes as this earlier version (tag chassis.identical_to).
    identical_to: int | None = None

    @classmethod
    def of(
        cls,
        model_name: str,
        parent_version: int,
        measured: list[Measurement],
        selection: Selection,
        parent_run_id: str,
        registered: RegisteredVersion | None,
        skipped: dict[str, str],
    ) -> "CompressionOutcome":
        return cls(
            model_name=model_name,
            parent_version=parent_version,
            selected=selection.selected,
            fallback_to_baseline=selection.fallback_to_baseline,
            version=registered.version if registered else parent_version,
            registered=registered is not None,
            explanation=selection.explanation,
            parent_run_id=parent_run_id,
            rows=table_rows(measured, selection),
            skipped=skipped,
            identical_to=registered.identical_to if registered else None,
        )


@described
@flow(name="compress", flow_run_name="compress {model_name} v{version}", log_prints=True)
def compress(
    model_name: ModelNameParameter,
    version: VersionParameter,
    policy: CompressionPolicyParameter = None,
) -> CompressionOutcome:
    """Build int8, pruned and distilled candidates of a registered version, measure each as
    ONNX on the test split (accuracy, macro-F1, agreement, p50/p99 latency at batch 1 and 64,
    size, parameters), select the best one within tolerance, log one MLflow child run per
    candidate, and register the winner with its recipe. If no candidate passes, the baseline
    stays selected and nothing new is registered.
    """
    # Each raises before any work on a bad value, so nothing can be registered.
    compression = policy or CompressionPolicy()
    selection_policy = compression.selection()
    options = compression.build_options()
    measure_settings = compression.measurement()
    settings = ChassisSettings()
    registry = Registry.from_settings(settings)
    flow_run_id = str(flow_run.id or "")

    workdir = settings.home / "work" / uuid.uuid4().hex
    try:
        loaded, dataset = load_parent(registry, model_name, version, workdir / "parent")
        setup = classifier_setup(loaded, dataset)
        built = build_candidates(setup, options, workdir / "candidates")
        measured, quality = measure_candidates(
            built, dataset, setup.n_classes, measure_settings, setup.task
        )
        selection = select(
            measured, quality.primary_metric, selection_policy, quality.greater_is_better
        )
        if setup.task == CLASSIFICATION and dataset.text_encoder is None:
            propose(measured, quality, dataset, loaded, measure_settings.threads)
        logged = log_compression(
            loaded=loaded,
            measured=measured,
            selection=selection,
            policy=selection_policy,
            options=options,
            settings=settings,
            flow_run_id=flow_run_id,
            skipped=built.skipped,
            tracking=Tracking.from_settings(settings),
        )
        registered = None
        if selection.selected != BASELINE:
            registered = register_selected(
                registry, loaded, measured, selection, logged, flow_run_id
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    outcome = CompressionOutcome.of(
        model_name, version, measured, selection, logged.parent_run_id, registered, built.skipped
    )
    publish_compression_artifacts(outcome, selection)
    return outcome


def publish_compression_artifacts(outcome: CompressionOutcome, selection: Selection) -> None:
    publish_table(
        outcome.rows,
        "compression-candidates",
        outcome.model_name,
        description=f"Compression candidates of {outcome.model_name} v{outcome.parent_version}",
    )
    if outcome.registered:
        result = f"registered as **version {outcome.version}**"
    else:
        result = f"nothing new registered; **v{outcome.parent_version}** stays as it is"
    lines = [
        f"# Compression of {outcome.model_name} v{outcome.parent_version}",
        "",
        f"Selected **{outcome.selected}**: {result}.",
        "",
        selection.explanation,
        "",
        "| candidate | passed | score | reason |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {v.name}{' (selected)' if v.name == outcome.selected else ''} | "
        f"{'yes' if v.passed else 'no'} | {v.score:.3f} | {v.reason} |"
        for v in selection.verdicts
    ]
    if outcome.skipped:
        lines += ["", "Skipped: " + "; ".join(f"{k}: {v}" for k, v in outcome.skipped.items())]
    publish_markdown(
        "\n".join(lines),
        "compression-summary",
        outcome.model_name,
        description=f"Why {outcome.selected} was selected",
    )
