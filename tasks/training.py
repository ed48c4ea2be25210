"""Tasks of the training slice: spec, data checks, training, evaluation, ONNX, MLflow."""

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from prefect import get_run_logger, task

from chassis import data as core_data
from chassis import expectations, onnx_export, progress, torch_program
from chassis.aliases import CHAMPION
from chassis.errors import ProgramError, RegistryError, SpecError
from chassis.evaluation import QualityReport, quality_report
from chassis.evaluation_split import write_evaluation_split
from chassis.lineage import same_model_as_champion
from chassis.model_import import imported_module, imported_onnx
from chassis.modelspec import MODEL_FORMS, Dataset, ModelForm, ModelSpec, load_spec
from chassis.reference_sample import reference_sample
from chassis.registry import RegisteredVersion, Registry
from chassis.registry.tags import (
    TAG_ONNX_SHA256,
    TAG_PROGRAM_MISSING,
    TAG_RUN_ID,
    TAG_UNCHANGED_FROM,
    VERIFIED_FILES,
)
from chassis.runtime import create_session, run_batches
from chassis.settings import ChassisSettings
from chassis.suite_scaffold import scaffold_training_suite
from chassis.task import CLASSIFICATION, REGRESSION, Task
from chassis.text_input import TOKENIZER_FILE_NAME
from chassis.tracking import LoggedRun, Tracking
from chassis.training import VALIDATION_METRIC, TrainedModel, train_model
from chassis.weights import save_weights
from tasks.artifacts import publish_markdown
from tasks.options import NO_CACHE_TASK, REMOTE_READ_TASK


@task(name="resolve-spec", **NO_CACHE_TASK)
def resolve_spec(
    reference: str, forms: tuple[ModelForm, ...] = ("train", "torch", "onnx")
) -> ModelSpec:
    spec = load_spec(reference)
    if spec.form not in forms:
        raise SpecError(
            f"spec {reference} gives {MODEL_FORMS[spec.form]}; this flow takes "
            + " or ".join(MODEL_FORMS[form] for form in forms)
        )
    get_run_logger().info(
        "spec %s -> registered model %r (%s)", reference, spec.name, MODEL_FORMS[spec.form]
    )
    return spec


@task(name="load-dataset", **NO_CACHE_TASK)
def load_dataset(spec: ModelSpec) -> Dataset:
    dataset = core_data.load_dataset(spec.load_data, spec.name, spec.task, spec.text_input)
    get_run_logger().info(
        "%s%s dataset: %d train / %d validation / %d test rows, %d features, label %r",
        spec.task,
        " (text)" if spec.text_input is not None else "",
        len(dataset.train),
        len(dataset.validation),
        len(dataset.test),
        len(dataset.feature_columns),
        dataset.label_column,
    )
    return dataset


@task(name="validate-training-data", **NO_CACHE_TASK)
def validate_training_data(
    spec: ModelSpec, dataset: Dataset, settings: ChassisSettings
) -> expectations.SuiteResult:
    """Run the spec's Great Expectations suite on the train split; fail naming every miss."""
    if spec.expectation_suite:
        path = expectations.resolve_suite_path(spec.expectation_suite, settings.expectations_dir)
        suite = expectations.load_suite(path)
    else:
        # No suite committed: check the structural draft so the data is at least well-formed.
        document = scaffold_training_suite(dataset, f"{spec.name}.training (draft)", spec.task)
        document["expectations"] = [
            e for e in document["expectations"] if e["type"] != "expect_column_values_to_be_between"
        ]
        suite = expectations.build_suite(document, "generated draft")
    result = expectations.validate_frame(dataset.train, suite)
    publish_markdown(
        result.to_markdown(f"Training data of {spec.name}: {result.suite_name}"),
        "training-data-validation",
        spec.name,
        description="Great Expectations results on the training split",
    )
    expectations.raise_for_failures(result, f"training data of {spec.name}")
    get_run_logger().info(
        "suite %s: %d expectations passed", result.suite_name, len(result.results)
    )
    return result


@task(name="train-baseline", **NO_CACHE_TASK)
def train_baseline(
    spec: ModelSpec, dataset: Dataset, epochs: int | None, seed: int
) -> TrainedModel:
    logger = get_run_logger()
    config = spec.training
    overrides: dict[str, int] = {"seed": seed}
    if epochs is not None:
        overrides["epochs"] = epochs
    config = type(config)(**{**config.__dict__, **overrides})

    metric = VALIDATION_METRIC[spec.task]
    assert spec.build_model is not None, "only a build_model spec is trained"
    # Epochs, their loss and validation metric: on the CLI's display, else as paced log lines.
    with progress.log_fallback(logger):
        trained = train_model(spec.build_model, dataset, config, spec.task)
    logger.info(
        "best epoch %d, validation %s %.4f", trained.best_epoch, metric, trained.best_validation
    )
    return trained


@task(name="export-onnx", **NO_CACHE_TASK)
def export_onnx(
    trained: TrainedModel, dataset: Dataset, workdir: Path, tolerance: float
) -> onnx_export.ExportedModel:
    parity_inputs = core_data.features(dataset.test, dataset)
    exported = onnx_export.export_and_verify(
        trained.module,
        trained.n_features,
        parity_inputs,
        workdir / "model.onnx",
        tolerance,
        trained.task,
    )
    get_run_logger().info(
        "ONNX %d bytes, sha256 %s, parity max |diff| %.2e (tolerance %.0e)",
        exported.size_bytes,
        exported.sha256[:12],
        exported.parity_max_abs_diff,
        tolerance,
    )
    return exported


@dataclass(frozen=True)
class ProgramExport:
    """The torch program written for a version, or why there is none (a version without
    one still serves, gates and rolls back; only pruning and distillation need it)."""

    path: Path | None
    missing_reason: str = ""

    def version_tags(self) -> dict[str, str]:
        return {} if self.path is not None else {TAG_PROGRAM_MISSING: self.missing_reason}


@task(name="export-torch-program", **NO_CACHE_TASK)
def export_torch_program(trained: TrainedModel, dataset: Dataset, workdir: Path) -> ProgramExport:
    """The trained module as data (chassis.torch_program), checked to rebuild and answer
    like the module before it is kept."""
    example = torch.from_numpy(core_data.features(dataset.test.head(8), dataset))
    try:
        document = torch_program.capture(trained.module, example)
    except ProgramError as error:
        get_run_logger().warning(
            "no torch program stored (pruning and distillation of this version will say so): %s",
            error,
        )
        return ProgramExport(None, str(error))
    path = workdir / "program.json"
    torch_program.save(document, path)
    get_run_logger().info(
        "torch program: %d layers, %d graph nodes", len(document["layers"]), len(document["nodes"])
    )
    return ProgramExport(path)


@task(name="import-torch-module", **NO_CACHE_TASK)
def import_torch_module(spec: ModelSpec, dataset: Dataset) -> TrainedModel:
    """The spec's `load_model()` module, trained elsewhere, checked against the dataset."""
    imported = imported_module(spec, dataset)
    get_run_logger().info(
        "imported %s (%s): %d parameters, %d outputs, validation %s %.4f",
        type(imported.module).__name__,
        imported.task,
        imported.parameter_count,
        imported.n_outputs,
        imported.validation_metric,
        imported.best_validation,
    )
    return imported


@task(name="import-onnx-file", **NO_CACHE_TASK)
def import_onnx_file(spec: ModelSpec, dataset: Dataset, workdir: Path) -> onnx_export.ExportedModel:
    """The spec's ONNX file, exported elsewhere, checked and kept byte for byte."""
    imported = imported_onnx(spec, dataset, workdir / "model.onnx")
    get_run_logger().info(
        "imported %s: %d bytes, sha256 %s, opset %d",
        spec.onnx_path(),
        imported.size_bytes,
        imported.sha256[:12],
        imported.opset,
    )
    return imported


@dataclass(frozen=True)
class NewModel:
    """What a new version is made of, whichever form its spec gives."""

    exported: onnx_export.ExportedModel  # the bytes that will be served
    program: ProgramExport
    n_features: int
    n_classes: int | None  # None for a regressor
    # The torch module, with its training summary when Chassis trained it; None for an
    # imported ONNX file.
    trained: TrainedModel | None = None
    task: Task = CLASSIFICATION

    def reference_predictions(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """A regressor's predicted values of its reference rows, from the bytes that will be
        served (drift on predictions); None for a classifier."""
        if self.task != REGRESSION:
            return None
        session = create_session(self.exported.path)
        return lambda x: run_batches(session, x)[:, 0]


NO_PROGRAM_FOR_ONNX = "imported as an ONNX file: there is no torch module to store"


@task(name="evaluate-test-split", **NO_CACHE_TASK)
def evaluate(new: NewModel, dataset: Dataset) -> QualityReport:
    """Test-split quality of the ONNX bytes that will be served."""
    x = core_data.features(dataset.test, dataset)
    y = core_data.truth(dataset.test, dataset, new.task)
    scores = run_batches(create_session(new.exported.path), x)
    report = quality_report(new.task, y, scores, new.n_classes)
    get_run_logger().info("test %s", report.summary())
    return report


@task(name="log-to-mlflow", **NO_CACHE_TASK)
def log_to_mlflow(
    *,
    spec_reference: str,
    spec: ModelSpec,
    dataset: Dataset,
    new: NewModel,
    report: QualityReport,
    suite_result: expectations.SuiteResult,
    fingerprint: str,
    settings: ChassisSettings,
    lineage_tags: dict[str, str],
    seed: int,
    epochs: int,
    tracking: Tracking,
) -> LoggedRun:
    experiment_id = tracking.ensure_experiment(settings.experiment_name or spec.name)
    exported, trained = new.exported, new.trained
    # The drift check compares served traffic with this sample of the training data.
    reference_path = exported.path.with_name("reference.parquet")
    reference_sample(dataset, predict=new.reference_predictions()).to_parquet(
        reference_path, index=False
    )
    # The version carries all it is judged and compressed with: its test rows, its weights
    # and its torch program (the module as data), so the spec's code may change later.
    evaluation_path = exported.path.with_name("evaluation.parquet")
    write_evaluation_split(dataset, evaluation_path)
    model_files = [reference_path, evaluation_path]
    if trained is not None:
        weights_path = exported.path.with_name("model.safetensors")
        save_weights(trained.module, weights_path)
        model_files.append(weights_path)
    if new.program.path is not None:
        model_files.append(new.program.path)
    if spec.text_input is not None:
        # A text version reads strings through this tokenizer wherever it is served or
        # judged: it is stored with it, verified like its ONNX bytes.
        tokenizer_path = exported.path.with_name(TOKENIZER_FILE_NAME)
        shutil.copyfile(spec.text_input.tokenizer_path(), tokenizer_path)
        model_files.append(tokenizer_path)
    params: dict[str, object] = {
        "spec": spec_reference,
        "model_form": spec.form,
        "task": new.task,
        "n_features": new.n_features,
        **({"n_classes": new.n_classes} if new.n_classes is not None else {}),
        "onnx_opset": exported.opset,
        "dataset_fingerprint": fingerprint,
    }
    metrics = {**report.as_metrics("test_"), "onnx_size_bytes": float(exported.size_bytes)}
    if exported.parity_max_abs_diff is not None:
        params["parity_tolerance"] = settings.parity_tolerance
        metrics["parity_max_abs_diff"] = exported.parity_max_abs_diff
    if trained is not None:
        params["parameter_count"] = trained.parameter_count
        validation = f"val_{trained.validation_metric}"
        metrics[validation if spec.form == "torch" else f"best_{validation}"] = (
            trained.best_validation
        )
    if spec.form == "train":
        assert trained is not None
        params |= {
            "epochs": epochs,
            "batch_size": spec.training.batch_size,
            "learning_rate": spec.training.learning_rate,
            "weight_decay": spec.training.weight_decay,
            "seed": seed,
        }
        metrics["best_epoch"] = float(trained.best_epoch)
    logged = tracking.log_training_run(
        experiment_id=experiment_id,
        run_name=f"{spec.name}-{'train' if spec.form == 'train' else 'import'}",
        params=params,
        metrics=metrics,
        tags={**lineage_tags, "chassis.stage": "train" if spec.form == "train" else "import"},
        onnx_path=exported.path,
        datasets=dataset.splits(),
        label_column=dataset.label_column,
        text_artifacts={
            "validation/training_data_suite.json": json.dumps(suite_result.to_dict(), indent=2),
            "validation/training_data_suite.md": suite_result.to_markdown("Training data"),
        },
        history=trained.history if trained is not None else None,
        model_files=model_files,
    )
    if logged.stored_onnx_sha256 != exported.sha256:
        get_run_logger().warning(
            "artifact store re-serialized the ONNX file; recording the stored digest %s",
            logged.stored_onnx_sha256[:12],
        )
    return logged


@task(name="register-version", **NO_CACHE_TASK)
def register_version(
    registry: Registry,
    spec_reference: str,
    spec: ModelSpec,
    logged: LoggedRun,
    report: QualityReport,
    tags: dict[str, str],
) -> RegisteredVersion:
    registered = registry.register_version(
        name=spec.name,
        model_uri=logged.model_uri,
        model_id=logged.model_id,
        run_id=logged.run_id,
        tags={
            **tags,
            TAG_ONNX_SHA256: logged.stored_onnx_sha256,
            TAG_RUN_ID: logged.run_id,
            **{
                VERIFIED_FILES[relative]: digest
                for relative, digest in logged.stored_file_sha256.items()
                if relative in VERIFIED_FILES
            },
        },
        description=spec.description,
        version_description=f"{'Trained by Chassis' if spec.form == 'train' else 'Imported'} "
        f"from {spec_reference}; test {report.summary()}.",
    )
    get_run_logger().info("registered %s version %d", registered.name, registered.version)
    if notice := registered.identical_notice():
        get_run_logger().warning(notice)
    return registered


@task(name="compare-with-champion", **REMOTE_READ_TASK)
def unchanged_from_champion(
    registry: Registry, tracking: Tracking, model_name: str, run_id: str, onnx_sha256: str
) -> tuple[int, str] | None:
    """The existing version whose ONNX bytes equal the new ones, if the champion is one, and
    why: the champion itself, or the version it was compressed from (the same trained model,
    which a release would only compress into the champion again). None when it changed.

    The release path asks before registering; the registry itself still registers identical
    bytes when asked to (an A/A benchmark does so on purpose). The MLflow run stays, tagged
    with the version it equals.
    """
    try:
        champion = registry.current_aliases(model_name).get(CHAMPION)
    except RegistryError:
        return None  # no registered model yet: the first release
    if champion is None:
        return None
    root, root_tags = registry.lineage_root(model_name, champion)
    champion_tags = registry.version_tags(model_name, champion)
    equal = same_model_as_champion(onnx_sha256, champion, champion_tags, root, root_tags)
    if equal is None:
        return None
    same, which = equal
    tracking.set_run_tag(run_id, TAG_UNCHANGED_FROM, str(same))
    why = (
        f"no change: the new ONNX bytes (sha256 {onnx_sha256[:16]}...) equal {model_name} "
        f"v{same}'s, {which}; nothing was registered"
    )
    get_run_logger().info(why)
    return same, why
