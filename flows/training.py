"""The training slice: validated data -> baseline -> ONNX (parity checked) -> MLflow version."""

import json
import shutil
import uuid
from pathlib import Path
from typing import Annotated

from prefect import flow
from prefect.artifacts import create_link_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from chassis import data as core_data
from chassis.data import class_count
from chassis.evaluation import METRIC_LABELS, QualityReport
from chassis.lineage import git_commit, trained_version_tags
from chassis.mlflow_links import MlflowLinks
from chassis.modelspec import Dataset, ModelForm, ModelSpec
from chassis.onnx_export import ExportedModel
from chassis.registry import RegisteredVersion, Registry
from chassis.registry.tags import TAG_TEXT_INPUT
from chassis.settings import DEFAULT_SPEC, ChassisSettings
from chassis.task import CLASSIFICATION
from chassis.tracking import LoggedRun, Tracking
from flows.run_form import described
from flows.run_names import by_spec
from tasks.artifacts import artifact_key, publish_markdown, publish_table
from tasks.training import (
    NO_PROGRAM_FOR_ONNX,
    NewModel,
    ProgramExport,
    evaluate,
    export_onnx,
    export_torch_program,
    import_onnx_file,
    import_torch_module,
    load_dataset,
    log_to_mlflow,
    register_version,
    resolve_spec,
    train_baseline,
    unchanged_from_champion,
    validate_training_data,
)

SpecParameter = Annotated[
    str,
    Field(
        description="Model spec as package.module:attribute, e.g. chassis.specs.digits:spec "
        "or chassis.specs.wine:spec, or your own.",
        min_length=1,
    ),
]
EpochsParameter = Annotated[
    int | None,
    Field(ge=1, le=10_000, description="Training epochs; empty uses the spec's own setting."),
]
SeedParameter = Annotated[
    int, Field(ge=0, description="Seed for weight init and batch order: same seed, same model.")
]
ToleranceParameter = Annotated[
    float | None,
    Field(
        gt=0,
        le=1,
        description="Largest allowed |torch - ONNX Runtime| on the test split; empty uses "
        "CHASSIS_PARITY_TOLERANCE (default 1e-4).",
    ),
]


class TrainingOutcome(BaseModel):
    """What the training slice registered, and where to look at it."""

    model_name: str
    version: int
    run_id: str
    experiment_id: str
    onnx_sha256: str
    dataset_fingerprint: str
    metrics: dict[str, float]
    mlflow_version_url: str
    mlflow_run_url: str
    mlflow_experiment_url: str  # the experiment's runs table, where this run sits among others
    # False when the ONNX bytes equal an existing version's and skip_if_unchanged was set:
    # then `version` is that existing version and `no_change` says why nothing was registered.
    registered: bool = True
    no_change: str | None = None
    # Registered with the same ONNX bytes as this earlier version (tag chassis.identical_to).
    identical_to: int | None = None


ImportSpecParameter = Annotated[
    str,
    Field(
        description="Model spec as package.module:attribute whose model is already trained: "
        "load_model (a torch module) or onnx_file (an ONNX file).",
        min_length=1,
    ),
]
SkipIfUnchangedParameter = Annotated[
    bool,
    Field(
        description="Register nothing when the ONNX bytes equal the champion's (or those of "
        "the version the champion was compressed from): the run reports no change. The "
        "release flow sets it; on its own, train registers what it trained."
    ),
]


@described
@flow(name="train", flow_run_name=by_spec("train"), log_prints=True)
def train(
    spec: SpecParameter = DEFAULT_SPEC,
    epochs: EpochsParameter = None,
    seed: SeedParameter = 0,
    parity_tolerance: ToleranceParameter = None,
    skip_if_unchanged: SkipIfUnchangedParameter = False,
) -> TrainingOutcome:
    """Train a spec's baseline and register it in MLflow with its ONNX model and lineage.

    Steps: import the spec; check the dataset's structure; run the Great Expectations suite
    on the train split; train with fixed seeds; evaluate on the test split; export ONNX and
    check parity with torch; log everything to MLflow; register a version tagged with the
    spec, dataset fingerprint, run id, git commit and the ONNX file's sha256. Any failure
    stops the run before registration, so nothing half-made reaches the registry. With
    skip_if_unchanged, bytes equal to the champion's register nothing and say so. A spec
    that imports its model (load_model, onnx_file) is imported instead of trained.
    """
    return register_from_spec(spec, epochs, seed, parity_tolerance, skip_if_unchanged)


@described
@flow(name="import-model", flow_run_name=by_spec("import"), log_prints=True)
def import_model(
    spec: ImportSpecParameter,
    parity_tolerance: ToleranceParameter = None,
    skip_if_unchanged: SkipIfUnchangedParameter = False,
) -> TrainingOutcome:
    """Register a model trained elsewhere: a torch module (the spec's load_model) or an
    ONNX file (its onnx_file), kept as it is, with the dataset gates and drift need.

    Steps: import the spec; check the dataset and run its data suite; check the model
    against the dataset (input width, one score per class, finite answers); export a torch
    module to ONNX with a parity check and store its torch program, or keep the ONNX file
    byte for byte; evaluate on the test split; log to MLflow; register a version with its
    lineage. Nothing is registered when a check fails.
    """
    return register_from_spec(
        spec, None, 0, parity_tolerance, skip_if_unchanged, forms=("torch", "onnx")
    )


def register_from_spec(
    spec: str,
    epochs: int | None,
    seed: int,
    parity_tolerance: float | None,
    skip_if_unchanged: bool,
    forms: tuple[ModelForm, ...] = ("train", "torch", "onnx"),
) -> TrainingOutcome:
    """What train and import-model share: the spec's model, checked, made into a version."""
    settings = ChassisSettings()
    tolerance = parity_tolerance or settings.parity_tolerance
    registry = Registry.from_settings(settings)
    tracking = Tracking.from_settings(settings)

    model_spec = resolve_spec(spec, forms)
    dataset = load_dataset(model_spec)
    suite_result = validate_training_data(model_spec, dataset, settings)

    workdir = settings.home / "work" / uuid.uuid4().hex
    try:
        new = make_model(model_spec, dataset, workdir, epochs, seed, tolerance)
        report = evaluate(new, dataset)
        fingerprint = core_data.fingerprint(dataset)
        lineage = lineage_tags(spec, fingerprint, new, dataset) | new.program.version_tags()
        logged = log_to_mlflow(
            spec_reference=spec,
            spec=model_spec,
            dataset=dataset,
            new=new,
            report=report,
            suite_result=suite_result,
            fingerprint=fingerprint,
            settings=settings,
            lineage_tags=lineage,
            seed=seed,
            epochs=epochs or model_spec.training.epochs,
            tracking=tracking,
        )
        unchanged = None
        if skip_if_unchanged:
            sha256 = logged.stored_onnx_sha256
            unchanged = unchanged_from_champion(
                registry, tracking, model_spec.name, logged.run_id, sha256
            )
        registered = None
        if unchanged is None:
            registered = register_version(registry, spec, model_spec, logged, report, lineage)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    outcome = training_outcome(
        settings, model_spec.name, logged, fingerprint, report, new.exported, registered, unchanged
    )
    publish_training_artifacts(outcome, model_spec.form, new, registered)
    return outcome


def make_model(
    spec: ModelSpec,
    dataset: Dataset,
    workdir: Path,
    epochs: int | None,
    seed: int,
    tolerance: float,
) -> NewModel:
    """The model a version is made of: trained here (build_model), or imported (a torch
    module from load_model, kept as it is; an ONNX file, kept byte for byte)."""
    if spec.form == "onnx":
        exported = import_onnx_file(spec, dataset, workdir)
        no_program = ProgramExport(None, NO_PROGRAM_FOR_ONNX)
        classes = class_count(dataset) if spec.task == CLASSIFICATION else None
        return NewModel(
            exported, no_program, core_data.input_width(dataset), classes, task=spec.task
        )
    if spec.form == "train":
        trained = train_baseline(spec, dataset, epochs, seed)
    else:
        trained = import_torch_module(spec, dataset)
    exported = export_onnx(trained, dataset, workdir, tolerance)
    program = export_torch_program(trained, dataset, workdir)
    return NewModel(exported, program, trained.n_features, trained.n_classes, trained, trained.task)


def lineage_tags(spec: str, fingerprint: str, new: NewModel, dataset: Dataset) -> dict[str, str]:
    """The lineage a version trained in this flow run carries (its run carries it too)."""
    encoder = dataset.text_encoder
    text = {} if encoder is None else {TAG_TEXT_INPUT: json.dumps(encoder.settings())}
    return text | trained_version_tags(
        spec,
        fingerprint,
        str(flow_run.id or ""),
        new.n_features,
        new.n_classes,
        dataset.feature_columns,
        git_commit(),
        new.task,
    )


def training_outcome(
    settings: ChassisSettings,
    model_name: str,
    logged: LoggedRun,
    fingerprint: str,
    report: QualityReport,
    exported: ExportedModel,
    registered: RegisteredVersion | None,
    unchanged: tuple[int, str] | None,
) -> TrainingOutcome:
    """The registered version, or (nothing registered) the existing one it equals and why."""
    links = MlflowLinks.of(settings)
    if registered is not None:
        version, no_change = registered.version, None
    else:
        assert unchanged is not None  # registration is skipped only for unchanged bytes
        version, no_change = unchanged
    return TrainingOutcome(
        model_name=model_name,
        version=version,
        run_id=logged.run_id,
        experiment_id=logged.experiment_id,
        onnx_sha256=logged.stored_onnx_sha256,
        dataset_fingerprint=fingerprint,
        metrics=report.as_metrics("test_")
        | (
            {"parity_max_abs_diff": exported.parity_max_abs_diff}
            if exported.parity_max_abs_diff is not None
            else {}
        ),
        mlflow_version_url=links.model_version(model_name, version),
        mlflow_run_url=links.run(logged.experiment_id, logged.run_id),
        mlflow_experiment_url=links.experiment(logged.experiment_id),
        registered=registered is not None,
        no_change=no_change,
        identical_to=registered.identical_to if registered is not None else None,
    )


def publish_training_artifacts(
    outcome: TrainingOutcome, form: ModelForm, new: NewModel, registered: RegisteredVersion | None
) -> None:
    if registered is None:
        publish_markdown(
            f"# {outcome.model_name}: no change\n\n{outcome.no_change}.\n\n"
            f"MLflow run: [{outcome.run_id}]({outcome.mlflow_run_url})\n",
            "training-summary",
            outcome.model_name,
            description=f"Training of {outcome.model_name}: no change from v{outcome.version}",
        )
        return
    tags = registered.tags
    metrics = outcome.metrics
    publish_table(
        [{"metric": name, "value": round(value, 6)} for name, value in metrics.items()],
        "training-metrics",
        outcome.model_name,
        description=f"Test-split metrics of {outcome.model_name} v{outcome.version}",
    )
    lineage_rows = "\n".join(f"| `{k}` | `{v}` |" for k, v in sorted(tags.items()))
    test_rows = "\n".join(
        f"| test {label} | {metrics[f'test_{name}']:.4f} |"
        for name, label in METRIC_LABELS.items()
        if f"test_{name}" in metrics
    )
    parity = metrics.get("parity_max_abs_diff")
    parity_text = "not measured (no torch twin)" if parity is None else f"{parity:.2e}"
    made = {
        "train": f"trained by Chassis, best epoch {new.trained.best_epoch if new.trained else '-'}",
        "torch": "imported torch module (load_model)",
        "onnx": "imported ONNX file (onnx_file)",
    }[form]
    publish_markdown(
        f"""# {outcome.model_name} version {outcome.version} registered

| | |
|---|---|
{test_rows}
| ONNX parity max abs diff | {parity_text} |
| ONNX size | {new.exported.size_bytes:,} bytes |
| made by | {made} |
| MLflow run | [{outcome.run_id}]({outcome.mlflow_run_url}) |
| MLflow experiment | [its runs]({outcome.mlflow_experiment_url}) |
| MLflow version | [{outcome.model_name} v{outcome.version}]({outcome.mlflow_version_url}) |

## Lineage tags on the version

| tag | value |
|---|---|
{lineage_rows}
""",
        "training-summary",
        outcome.model_name,
        description=f"Training summary of {outcome.model_name} v{outcome.version}",
    )
    create_link_artifact(
        link=outcome.mlflow_version_url,
        link_text=f"{outcome.model_name} v{outcome.version} in MLflow",
        key=artifact_key("mlflow-version", outcome.model_name),
        description="The registered version in the MLflow UI",
    )
