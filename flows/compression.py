"""The compression stage: smaller, faster candidates of a registered version; the best one
that keeps quality within tolerance is registered as a new version."""

import shutil
import uuid
from typing import Annotated, Any, Literal

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from chassis import tracking
from chassis.compression.candidates import BASELINE, CANDIDATE_NAMES
from chassis.compression.classification import CompressionOptions
from chassis.compression.measure import MeasureSettings
from chassis.compression.select import Selection, SelectionPolicy
from chassis.settings import ChassisSettings
from tasks.artifacts import publish_markdown, publish_table
from tasks.compression import (
    build_candidates,
    classifier_setup,
    load_parent,
    log_compression,
    measure_candidates,
    register_selected,
    select,
    table_rows,
)

CandidateName = Literal[
    "baseline",
    "dynamic-int8",
    "static-int8",
    "pruned",
    "pruned+int8",
    "distilled",
    "distilled+int8",
]
ModelNameParameter = Annotated[
    str, Field(min_length=1, description="Registered-model name, e.g. digits-mlp.")
]
VersionParameter = Annotated[
    int, Field(ge=1, description="Version to compress; it must carry torch weights (trained).")
]
CompressionToleranceParameter = Annotated[
    float,
    Field(
        ge=0,
        lt=1,
        description="How much test accuracy a candidate may lose against the baseline: a "
        "fraction of it (relative, 0.01 = 1%) or accuracy points (absolute).",
    ),
]
ToleranceModeParameter = Annotated[
    Literal["relative", "absolute"],
    Field(description="relative: tolerance is a fraction of the baseline's accuracy."),
]
ObjectiveParameter = Annotated[
    Literal["latency", "size", "balanced"],
    Field(
        description="What the winner minimizes among passing candidates: batch-1 p50 latency, "
        "ONNX file size, or balanced (geometric mean of both ratios to the baseline)."
    ),
]
CandidatesParameter = Annotated[
    list[CandidateName] | None,
    Field(description="Candidates to build; empty builds all. The baseline is always one."),
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


@flow(name="compress", log_prints=True)
def compress(
    model_name: ModelNameParameter,
    version: VersionParameter,
    tolerance: CompressionToleranceParameter = 0.01,
    tolerance_mode: ToleranceModeParameter = "relative",
    objective: ObjectiveParameter = "balanced",
    candidates: CandidatesParameter = None,
    per_channel: Annotated[
        bool, Field(description="Static/dynamic int8: one scale per output channel.")
    ] = True,
    calibration_method: Annotated[
        Literal["minmax", "entropy", "percentile"],
        Field(description="How static int8 picks activation ranges from training rows."),
    ] = "minmax",
    prune_fraction: Annotated[
        float, Field(ge=0, lt=1, description="Share of each hidden layer's neurons removed.")
    ] = 0.5,
    finetune_epochs: Annotated[
        int, Field(ge=0, le=1000, description="Fine-tuning epochs after pruning.")
    ] = 10,
    temperature: Annotated[
        float, Field(gt=0, le=100, description="Distillation softmax temperature.")
    ] = 4.0,
    alpha: Annotated[
        float,
        Field(ge=0, le=1, description="Distillation weight of the soft (teacher) loss."),
    ] = 0.7,
    distill_epochs: Annotated[
        int, Field(ge=1, le=10_000, description="Epochs of student distillation.")
    ] = 40,
    threads: Annotated[
        int, Field(ge=1, le=64, description="ONNX Runtime intra-op threads when timing.")
    ] = 1,
    repeats: Annotated[
        int, Field(ge=1, le=100_000, description="Timed runs per candidate and batch size.")
    ] = 100,
) -> CompressionOutcome:
    """Build int8, pruned and distilled candidates of a registered version, measure each as
    ONNX on the test split (accuracy, macro-F1, agreement, p50/p99 latency at batch 1 and 64,
    size, parameters), select the best one within tolerance, log one MLflow child run per
    candidate, and register the winner with its recipe. If no candidate passes, the baseline
    stays selected and nothing new is registered.
    """
    # Both raise before any work on a bad value, so nothing can be registered.
    policy = SelectionPolicy(tolerance=tolerance, mode=tolerance_mode, objective=objective)
    options = CompressionOptions(
        candidates=tuple(candidates) if candidates else CANDIDATE_NAMES,
        per_channel=per_channel,
        calibration_method=calibration_method,
        prune_fraction=prune_fraction,
        finetune_epochs=finetune_epochs,
        temperature=temperature,
        alpha=alpha,
        distill_epochs=distill_epochs,
    )
    measure_settings = MeasureSettings(threads=threads, batch_sizes=(1, 64), repeats=repeats)
    settings = ChassisSettings()
    tracking.connect(settings)
    flow_run_id = str(flow_run.id or "")

    workdir = settings.home / "work" / uuid.uuid4().hex
    try:
        loaded, dataset = load_parent(model_name, version, workdir / "parent")
        setup = classifier_setup(loaded, dataset)
        built = build_candidates(setup, options, workdir / "candidates")
        measured, quality = measure_candidates(built, dataset, setup.n_classes, measure_settings)
        selection = select(measured, quality.primary_metric, policy)
        logged = log_compression(
            loaded=loaded,
            measured=measured,
            selection=selection,
            policy=policy,
            options=options,
            settings=settings,
            flow_run_id=flow_run_id,
            skipped=built.skipped,
        )
        registered = None
        if selection.selected != BASELINE:
            registered = register_selected(loaded, measured, selection, logged, flow_run_id)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    rows = table_rows(measured, selection)
    outcome = CompressionOutcome(
        model_name=model_name,
        parent_version=version,
        selected=selection.selected,
        fallback_to_baseline=selection.fallback_to_baseline,
        version=registered.version if registered else version,
        registered=registered is not None,
        explanation=selection.explanation,
        parent_run_id=logged.parent_run_id,
        rows=rows,
        skipped=built.skipped,
    )
    publish_compression_artifacts(outcome, selection)
    return outcome


def publish_compression_artifacts(outcome: CompressionOutcome, selection: Selection) -> None:
    publish_table(
        outcome.rows,
        outcome.model_name,
        "compression-candidates",
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
        outcome.model_name,
        "compression-summary",
        description=f"Why {outcome.selected} was selected",
    )
