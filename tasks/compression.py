"""Tasks of the compression stage: load the parent version, build, measure, select, record."""

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from chassis import data as core_data
from chassis import progress
from chassis.compression.candidates import BASELINE, LATENCY_VS_BASELINE_COLUMN
from chassis.compression.cascade_proposal import CascadeProposal, propose_cascade
from chassis.compression.classification import (
    BuildResult,
    ClassifierSetup,
    CompressionOptions,
    build_classifier_candidates,
)
from chassis.compression.lineage import compressed_version_tags, run_lineage
from chassis.compression.measure import (
    Measurement,
    MeasureSettings,
    QualityTask,
    measure_all,
    quality_task,
)
from chassis.compression.policy import TEXT_TIMED_BATCH_SIZES
from chassis.compression.select import Selection, SelectionPolicy, select_candidate
from chassis.errors import ChassisError, CompressionError
from chassis.modelspec import Dataset
from chassis.registry import RegisteredVersion, Registry
from chassis.registry.tags import TAG_PARENT_VERSION, VERIFIED_FILES
from chassis.runtime import TOKEN_BATCH_ROWS, onnx_input_name
from chassis.settings import ChassisSettings
from chassis.task import CLASSIFICATION, Task
from chassis.tracking import CandidateRun, LoggedCompression, Tracking
from chassis.version_loader import LoadedVersion, load_version
from tasks.artifacts import publish_markdown
from tasks.options import NO_CACHE_TASK, REMOTE_READ_TASK


@task(name="load-parent-version", **REMOTE_READ_TASK)
def load_parent(
    registry: Registry, model_name: str, version: int, workdir: Path
) -> tuple[LoadedVersion, Dataset]:
    """The registered version (sha256 verified), its torch twin, and its spec's dataset."""
    loaded = load_version(registry, model_name, version, workdir)
    if loaded.n_classes is None and loaded.task == CLASSIFICATION:
        raise CompressionError(f"{loaded.label} records no class count; it is not a classifier")
    if loaded.module is None and TAG_PARENT_VERSION in loaded.files.tags:
        raise CompressionError(
            f"{loaded.label} was compressed already (from v{loaded.files.tags[TAG_PARENT_VERSION]}"
            "); compress the version it was made from"
        )
    if loaded.module is None:
        get_run_logger().warning("int8 candidates only: %s", loaded.no_module_reason)
    spec = loaded.spec()
    dataset = core_data.load_dataset(spec.load_data, spec.name, loaded.task, spec.text_input)
    encoder = loaded.files.text_encoder()
    if encoder is not None:  # the version reads text through its own tokenizer
        dataset = replace(dataset, text_encoder=encoder)
    get_run_logger().info(
        "parent %s v%d (%s, %s), sha256 verified",
        model_name,
        version,
        loaded.spec_reference,
        loaded.task,
    )
    return loaded, dataset


def classifier_setup(loaded: LoadedVersion, dataset: Dataset) -> ClassifierSetup:
    task = loaded.task
    return ClassifierSetup(
        baseline=loaded.module,
        baseline_onnx=loaded.files.onnx_path,
        n_features=core_data.input_width(dataset),
        n_classes=loaded.n_classes,
        x_train=core_data.features(dataset.train, dataset),
        y_train=core_data.truth(dataset.train, dataset, task),
        x_val=core_data.features(dataset.validation, dataset),
        y_val=core_data.truth(dataset.validation, dataset, task),
        build_student=loaded.spec().build_student,
        no_module_reason=loaded.no_module_reason,
        task=task,
    )


@task(name="build-candidates", **NO_CACHE_TASK)
def build_candidates(
    setup: ClassifierSetup, options: CompressionOptions, workdir: Path
) -> BuildResult:
    logger = get_run_logger()
    with progress.log_fallback(logger):
        built = build_classifier_candidates(setup, options, workdir)
    for candidate in built.candidates:
        logger.info("candidate %s: %s", candidate.name, json.dumps(candidate.recipe))
    for name, reason in built.skipped.items():
        logger.warning("candidate %s skipped: %s", name, reason)
    return built


@task(name="measure-candidates", **NO_CACHE_TASK)
def measure_candidates(
    built: BuildResult,
    dataset: Dataset,
    n_classes: int | None,
    settings: MeasureSettings,
    task: Task = CLASSIFICATION,
) -> tuple[list[Measurement], QualityTask]:
    """Every candidate on the test split through ONNX Runtime, with identical settings."""
    quality = quality_task(task, core_data.truth(dataset.test, dataset, task), n_classes)
    feeds = {
        onnx_input_name(built.candidates[0].onnx_path): core_data.features(dataset.test, dataset)
    }
    if dataset.text_encoder is not None:
        settings = replace(
            settings, batch_sizes=TEXT_TIMED_BATCH_SIZES, inference_batch=TOKEN_BATCH_ROWS
        )
    logger = get_run_logger()
    with progress.log_fallback(logger):
        measured = measure_all(built.candidates, feeds, quality, settings, BASELINE)
    for m in measured:
        logger.info(
            "%s: %s, b1 p50 %.3f ms, %d bytes",
            m.name,
            ", ".join(f"{k} {v:.4f}" for k, v in m.quality.items()),
            m.latency_ms.get("b1_p50", float("nan")),
            m.size_bytes,
        )
    return measured, quality


@task(name="select-candidate", **NO_CACHE_TASK)
def select(
    measured: list[Measurement],
    primary_metric: str,
    policy: SelectionPolicy,
    greater_is_better: bool = True,
) -> Selection:
    selection = select_candidate(measured, BASELINE, primary_metric, policy, greater_is_better)
    get_run_logger().info(selection.explanation)
    return selection


@task(name="propose-cascade", **NO_CACHE_TASK)
def propose(
    measured: list[Measurement],
    quality: QualityTask,
    dataset: Dataset,
    parent: LoadedVersion,
    threads: int,
) -> CascadeProposal | None:
    """A classifier's cascade proposal (chassis/compression/cascade_proposal.py): advice,
    logged and shown; a failure to make one never fails the compression."""
    logger = get_run_logger()
    try:
        proposal = propose_cascade(
            measured,
            BASELINE,
            parent.files.version,
            (
                core_data.features(dataset.validation, dataset),
                core_data.truth(dataset.validation, dataset, CLASSIFICATION),
            ),
            core_data.features(dataset.test, dataset),
            quality,
            threads,
        )
    except ChassisError as error:
        logger.warning("no cascade proposed: %s", error)
        return None
    if proposal is None:
        logger.info(
            "no cascade proposed: no candidate is smaller than the baseline and not slower "
            "on one row"
        )
        return None
    logger.info("proposed %s", proposal.describe())
    publish_markdown(
        f"# Cascade proposal for {parent.label}\n\n{proposal.describe()}.\n\nRegister it once "
        f"the small tier is a version: `chassis cascade --model {parent.files.name} --small "
        f"VERSION --full {parent.files.version}`.",
        "compression-cascade",
        parent.files.name,
        description=f"Cascade proposal for {parent.label}",
    )
    return proposal


def table_rows(measured: list[Measurement], selection: Selection) -> list[dict[str, Any]]:
    verdicts = {v.name: v for v in selection.verdicts}
    rows = []
    for m in measured:
        verdict = verdicts[m.name]
        row: dict[str, Any] = {
            "candidate": m.name,
            "selected": "yes" if m.name == selection.selected else "",
            "passed": "yes" if verdict.passed else "no",
        }
        row.update({k: round(v, 6) for k, v in m.quality.items()})
        row.update({f"{k}_ms": round(v, 4) for k, v in m.latency_ms.items()})
        ratio = m.latency_vs_baseline
        row[LATENCY_VS_BASELINE_COLUMN] = (
            "reference"
            if ratio is None
            else f"{ratio.median:.2f}x (95% {ratio.low:.2f}-{ratio.high:.2f})"
        )
        row.update(
            {
                "size_bytes": m.size_bytes,
                "parameters": m.parameter_count,
                "score": round(verdict.score, 4),
                "reason": verdict.reason,
            }
        )
        rows.append(row)
    return rows


@task(name="log-compression-runs", **NO_CACHE_TASK)
def log_compression(
    *,
    loaded: LoadedVersion,
    measured: list[Measurement],
    selection: Selection,
    policy: SelectionPolicy,
    options: CompressionOptions,
    settings: ChassisSettings,
    flow_run_id: str,
    skipped: dict[str, str],
    tracking: Tracking,
) -> LoggedCompression:
    experiment_id = tracking.ensure_experiment(settings.experiment_name or loaded.spec().name)
    lineage = run_lineage(loaded.spec_reference, flow_run_id, loaded.files.version)
    verdicts = {v.name: v for v in selection.verdicts}
    children = [
        CandidateRun(
            name=m.name,
            params={"recipe": json.dumps(m.recipe, sort_keys=True), "candidate": m.name},
            metrics={**m.metrics(), "passed": float(verdicts[m.name].passed)},
            tags={**lineage, "chassis.compression.selected": str(m.name == selection.selected)},
            onnx_path=m.onnx_path,
        )
        for m in measured
    ]
    logged = tracking.log_compression_runs(
        experiment_id=experiment_id,
        run_name=f"{loaded.spec().name}-v{loaded.files.version}-compress",
        params={
            "parent_version": loaded.files.version,
            "tolerance": policy.tolerance,
            "tolerance_mode": policy.mode,
            "objective": policy.objective,
            "candidates": ",".join(options.wanted()),
            "per_channel": options.per_channel,
            "calibration_method": options.calibration_method,
            "prune_fraction": options.prune_fraction,
            "temperature": options.temperature,
            "alpha": options.alpha,
            "selected": selection.selected,
        },
        metrics={"candidates_passed": float(sum(v.passed for v in selection.verdicts))},
        tags=lineage,
        text_artifacts={
            "compression/selection.md": selection.explanation,
            "compression/skipped.json": json.dumps(skipped, indent=2),
        },
        candidates=children,
        model_candidate=None if selection.selected == BASELINE else selection.selected,
        # A compressed text model reads strings through its parent's tokenizer.
        model_files=[loaded.files.tokenizer_path] if loaded.files.tokenizer_path else None,
    )
    get_run_logger().info(
        "logged parent run %s with %d candidate runs", logged.parent_run_id, len(children)
    )
    return logged


@task(name="register-compressed-version", **NO_CACHE_TASK)
def register_selected(
    registry: Registry,
    loaded: LoadedVersion,
    measured: list[Measurement],
    selection: Selection,
    logged: LoggedCompression,
    flow_run_id: str,
) -> RegisteredVersion:
    """Register the winner as a new version whose tags say how it was made and from what."""
    chosen = next(m for m in measured if m.name == selection.selected)
    run = logged.candidates[chosen.name]
    if run.model_uri is None or run.stored_onnx_sha256 is None:
        raise CompressionError(f"candidate {chosen.name!r} was not logged as a model")
    tags = compressed_version_tags(
        loaded.files.tags,
        loaded.files.version,
        run_id=run.run_id,
        onnx_sha256=run.stored_onnx_sha256,
        flow_run_id=flow_run_id,
        candidate=chosen.name,
        recipe=chosen.recipe,
    ) | {
        VERIFIED_FILES[relative]: digest
        for relative, digest in run.stored_file_sha256.items()
        if relative in VERIFIED_FILES
    }
    quality = ", ".join(f"{k} {v:.4f}" for k, v in chosen.quality.items())
    registered = registry.register_version(
        name=loaded.files.name,
        model_uri=run.model_uri,
        model_id=run.model_id,
        run_id=run.run_id,
        tags=tags,
        description=loaded.spec().description,
        version_description=f"Compressed by Chassis from v{loaded.files.version} "
        f"({chosen.name}); {quality}.",
    )
    get_run_logger().info(
        "registered %s version %d (%s of v%d)",
        registered.name,
        registered.version,
        chosen.name,
        loaded.files.version,
    )
    if notice := registered.identical_notice():
        get_run_logger().warning(notice)
    return registered
