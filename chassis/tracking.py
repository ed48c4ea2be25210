"""The one module that writes MLflow runs: experiments, params, metrics, datasets, models.

The model registry (versions, aliases) is `chassis.registry`'s alone. Links to Prefect
flow runs for audit records are built here too (`flow_run_url`).
"""

import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chassis import attestation
from chassis.digests import sha256_file
from chassis.errors import RegistryError
from chassis.settings import ChassisSettings

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    experiment_id: str
    model_uri: str
    model_id: str | None
    stored_onnx_sha256: str
    stored_weights_sha256: str | None


def connect(settings: ChassisSettings) -> None:
    """Point MLflow at the configured stores. Called at entry points, never on import."""
    import mlflow

    # Creating or migrating the SQLite schema is routine; MLflow announces it at INFO.
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)
    settings.ensure_local_state()
    if settings.uses_s3():
        configure_s3_environment(settings)
        if (settings.artifact_root or "").startswith("s3://"):
            from chassis.storage import check_bucket

            check_bucket(settings, settings.artifact_root or "")
    mlflow.set_tracking_uri(settings.resolved_tracking_uri())
    mlflow.set_registry_uri(settings.resolved_registry_uri())
    # Gate verdicts written and checked from now on are signed with this installation's key.
    attestation.use_key(settings.resolved_registry_signing_key())


def bound_http_retries() -> None:
    """Cap MLflow's own HTTP retries (default 7, exponential: minutes per call) for
    processes that retry with their own deadlines: the gateway, which keeps serving and
    retries with backoff, and the rollout flow, which must notice its lease ending while the
    registry is down. A value the user set is kept."""
    import os

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def configure_s3_environment(settings: ChassisSettings) -> None:
    """MLflow's S3 artifact repository builds its own boto3 client from the environment."""
    from chassis.storage import apply_s3_environment

    apply_s3_environment(settings)


def ensure_experiment(name: str, settings: ChassisSettings) -> str:
    """The experiment's id, creating it with Chassis's artifact root when it is new."""
    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise RegistryError(
                f"MLflow experiment {name!r} is deleted; restore it in the MLflow UI or set "
                "CHASSIS_EXPERIMENT_NAME to another name"
            )
        return str(experiment.experiment_id)
    root = settings.resolved_artifact_root()
    location = f"{root.rstrip('/')}/{name}" if root else None
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except Exception:
        # Another process created it between our lookup and create.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def onnx_pip_requirements() -> list[str]:
    """Explicit requirements: MLflow's inference of them costs ~7 s per logged model."""
    from importlib.metadata import version

    return [f"onnx=={version('onnx')}", f"onnxruntime=={version('onnxruntime')}"]


def log_training_run(
    *,
    experiment_id: str,
    run_name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    onnx_path: Path,
    example_inputs: np.ndarray,
    example_outputs: np.ndarray,
    datasets: dict[str, "pd.DataFrame"],
    label_column: str,
    text_artifacts: dict[str, str],
    history: list[dict[str, float]] | None = None,
    model_files: list[Path] | None = None,
) -> LoggedRun:
    """One MLflow run holding everything needed to reproduce and trust the model."""
    import mlflow
    import mlflow.onnx
    import onnx
    from mlflow.models import infer_signature

    signature = infer_signature(example_inputs, example_outputs)
    with (
        warnings.catch_warnings(),
        mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run,
    ):
        # MLflow hints at every integer column of every logged dataset; pixel counts and
        # class labels are integers on purpose.
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        for row in history or []:
            mlflow.log_metrics(
                {k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"])
            )
        for split, frame in datasets.items():
            mlflow.log_input(
                mlflow.data.from_pandas(frame, name=f"{run_name}-{split}", targets=label_column),
                context=split,
            )
        for name, text in text_artifacts.items():
            mlflow.log_text(text, name)
        info = mlflow.onnx.log_model(
            onnx.load(str(onnx_path)),
            name="model",
            signature=signature,
            pip_requirements=onnx_pip_requirements(),
            onnx_execution_providers=["CPUExecutionProvider"],
            save_as_external_data=False,
            # Stored inside the model's folder, so a version's download URI holds them too.
            extra_files=[str(p) for p in model_files or []] or None,
        )
        stored_sha256 = stored_artifact_sha256(info.model_id, "model.onnx")
        mlflow.log_param("onnx_sha256", stored_sha256)
        weights_sha256 = None
        if any(p.name == "model.safetensors" for p in model_files or []):
            weights_sha256 = stored_artifact_sha256(info.model_id, "extra_files/model.safetensors")
    return LoggedRun(
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        model_uri=info.model_uri,
        model_id=getattr(info, "model_id", None),
        stored_onnx_sha256=stored_sha256,
        stored_weights_sha256=weights_sha256,
    )


def stored_artifact_sha256(model_id: str, relative_path: str) -> str:
    """Digest of a model file as the artifact store holds it: what loads will verify."""
    import mlflow

    location = mlflow.get_logged_model(model_id).artifact_location.rstrip("/")
    with tempfile.TemporaryDirectory() as folder:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{location}/{relative_path}", dst_path=folder
        )
        return sha256_file(Path(local))


def log_text_to_run(run_id: str, text: str, artifact_file: str) -> str:
    """Attach a text artifact to an existing run; returns its artifact URI."""
    import mlflow

    client = mlflow.MlflowClient()
    client.log_text(run_id, text, artifact_file)
    return f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{artifact_file}"


@dataclass(frozen=True)
class CandidateRun:
    """One compression candidate to log as a child run."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    onnx_path: Path


@dataclass(frozen=True)
class LoggedCandidate:
    name: str
    run_id: str
    model_uri: str | None  # set for the candidate logged as an MLflow model (to register)
    model_id: str | None
    stored_onnx_sha256: str | None


@dataclass(frozen=True)
class LoggedCompression:
    parent_run_id: str
    experiment_id: str
    candidates: dict[str, LoggedCandidate]


def log_compression_runs(
    *,
    experiment_id: str,
    run_name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    text_artifacts: dict[str, str],
    candidates: list[CandidateRun],
    model_candidate: str | None,
) -> LoggedCompression:
    """A parent run for the compression stage with one nested run per candidate.

    Every child holds its metrics and its ONNX file (under `onnx/`). `model_candidate` is
    also logged as an MLflow model so it can be registered; its digest is read back from the
    store, as for training runs.
    """
    import mlflow
    import mlflow.onnx
    import onnx

    logged: dict[str, LoggedCandidate] = {}
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as parent:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        for name, text in text_artifacts.items():
            mlflow.log_text(text, name)
        for candidate in candidates:
            with mlflow.start_run(
                experiment_id=experiment_id,
                run_name=f"{run_name}-{candidate.name}",
                nested=True,
                tags={**candidate.tags, "chassis.compression.candidate": candidate.name},
            ) as child:
                mlflow.log_params(candidate.params)
                mlflow.log_metrics(candidate.metrics)
                mlflow.log_artifact(str(candidate.onnx_path), artifact_path="onnx")
                model_uri = model_id = stored = None
                if candidate.name == model_candidate:
                    info = mlflow.onnx.log_model(
                        onnx.load(str(candidate.onnx_path)),
                        name="model",
                        pip_requirements=onnx_pip_requirements(),
                        onnx_execution_providers=["CPUExecutionProvider"],
                        save_as_external_data=False,
                    )
                    model_uri, model_id = info.model_uri, info.model_id
                    stored = stored_artifact_sha256(info.model_id, "model.onnx")
                    mlflow.log_param("onnx_sha256", stored)
            logged[candidate.name] = LoggedCandidate(
                candidate.name, child.info.run_id, model_uri, model_id, stored
            )
    return LoggedCompression(parent.info.run_id, experiment_id, logged)


def log_monitoring_run(
    model: str,
    settings: ChassisSettings,
    *,
    metrics: dict[str, float],
    params: dict[str, Any],
    html: Path,
) -> str:
    """One run per drift check in `<model>-monitoring`; returns the report's artifact URI."""
    import mlflow

    experiment_id = ensure_experiment(f"{model}-monitoring", settings)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"drift-{model}") as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(html), "drift")
    return f"{run.info.artifact_uri.rstrip('/')}/drift/{html.name}"


def prefect_ui_url(settings: ChassisSettings) -> str:
    """The UI of the Prefect server this process talks to, for links in audit records and
    artifacts: PREFECT_UI_URL if set, else PREFECT_API_URL without `/api` (Prefect's own
    inference). Only with no API URL configured (an ephemeral server that is gone when the
    run ends) does it fall back to Chassis's `chassis ui` address."""
    # Imported here: the core modules stay importable without loading Prefect.
    from prefect.settings import get_current_settings

    current = get_current_settings()
    if current.ui_url:
        return current.ui_url.rstrip("/")
    api = str(current.api.url or "").rstrip("/")
    if api:
        return api.removesuffix("/api")
    return settings.prefect_ui_url()


def flow_run_url(settings: ChassisSettings, run_id: object) -> str:
    """The link to a flow run on the Prefect server in effect (see `prefect_ui_url`)."""
    return f"{prefect_ui_url(settings)}/runs/flow-run/{run_id}"
