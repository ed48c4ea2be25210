"""The one module that writes MLflow runs: experiments, params, metrics, datasets, models.

Everything goes through a `Tracking` built from settings with an explicit MLflow client
(never a process-wide URI, never the fluent API's active run). The model registry
(versions, aliases) is `chassis.registry`'s alone. Links into the UIs are built here too:
MLflow pages (`MlflowLinks`) and Prefect flow runs for audit records (`flow_run_url`).
"""

import json
import tempfile
import time
import warnings
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow import MlflowClient
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import DatasetInput, InputTag, LoggedModelOutput, Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.onnx import save_model as save_onnx_model
from mlflow.tracking.context.registry import resolve_tags
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_PARENT_RUN_ID

from chassis.digests import sha256_file
from chassis.errors import RegistryError
from chassis.mlflow_links import MlflowLinks
from chassis.onnx_signature import onnx_signature
from chassis.registry.connection import mlflow_client
from chassis.registry.failures import naming
from chassis.registry.fetch import download
from chassis.registry.tags import EXPERIMENT_KIND, TAG_CANDIDATE, TAG_EXPERIMENT_KIND
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
    # Each extra model file's digest as the artifact store holds it, by its path in the
    # model's folder (extra_files/<name>): what loads will verify.
    stored_file_sha256: dict[str, str]


@dataclass(frozen=True)
class LoggedModel:
    """An ONNX model logged on a run, and its digest as the artifact store holds it."""

    model_uri: str  # its artifact location, what a version is registered from
    model_id: str
    stored_onnx_sha256: str


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
    # Digests of the files stored with the model, by path in its folder (as for training).
    stored_file_sha256: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LoggedCompression:
    parent_run_id: str
    experiment_id: str
    candidates: dict[str, LoggedCandidate]


def onnx_pip_requirements() -> list[str]:
    """Explicit requirements: MLflow's inference of them costs ~7 s per logged model."""
    return [
        f"onnx=={installed_version('onnx')}",
        f"onnxruntime=={installed_version('onnxruntime')}",
    ]


@dataclass(frozen=True)
class StoredArtifact:
    """A file logged to an MLflow run: where it is stored, and the run it belongs to."""

    uri: str  # in the artifact store (file://, s3://): what a program reads
    experiment_id: str
    run_id: str
    path: str  # inside the run's artifacts

    def ui_url(self, settings: ChassisSettings) -> str:
        """The run's artifact page in the MLflow UI with this file open: a browser cannot
        open the store's file:// or s3:// URI from a web page, and the page shows an HTML
        report in place."""
        return MlflowLinks.of(settings).artifact(self.experiment_id, self.run_id, self.path)

    def file_url(self, settings: ChassisSettings) -> str:
        """The file's bytes from the tracking server, for a page to embed (an image)."""
        return MlflowLinks.of(settings).artifact_file(self.run_id, self.path)


# The per-column results of a drift check, stored with its run (read back for the plot).
DRIFT_COLUMNS_FILE = "drift/columns.json"


@dataclass(frozen=True)
class MonitoringRecord:
    """An earlier drift check as its run in `<model>-monitoring` holds it."""

    run_id: str
    started: datetime
    metrics: dict[str, float]
    params: dict[str, str]
    # The per-column results (`DRIFT_COLUMNS_FILE`); None for a check that stored none
    # (made by an older Chassis).
    columns: list[dict[str, Any]] | None


# MLflow 3's UI shows every page in one of two views, GenAI (traces, token usage) or
# machine learning (runs, metrics, models), chosen by the workflow-type toggle of its
# sidebar. The toggle is kept in the browser (local storage) and starts at GenAI; the
# experiment's kind tag does not move it (seen in MLflow 3.17's UI). A link that names the
# view in its query opens that view whatever the toggle says.
@dataclass(frozen=True)
class Tracking:
    """Writes MLflow runs of one installation through its own client."""

    client: MlflowClient
    artifact_root: str | None

    @classmethod
    def from_settings(cls, settings: ChassisSettings) -> "Tracking":
        return cls(mlflow_client(settings), settings.resolved_artifact_root())

    @naming("opening the MLflow experiment {name!r}")
    def ensure_experiment(self, name: str) -> str:
        """The experiment's id, creating it with Chassis's artifact root when it is new.

        Its kind is set (MLflow 3 opens an experiment of no kind as a GenAI one): when it is
        created, and on an existing one that has none (made by an older Chassis). A kind
        someone chose is left alone."""
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                raise RegistryError(
                    f"MLflow experiment {name!r} is deleted; restore it in the MLflow UI or set "
                    "CHASSIS_EXPERIMENT_NAME to another name"
                )
            experiment_id = str(experiment.experiment_id)
            if TAG_EXPERIMENT_KIND not in experiment.tags:
                self.client.set_experiment_tag(experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND)
            return experiment_id
        root = self.artifact_root
        location = f"{root.rstrip('/')}/{name}" if root else None
        try:
            return str(
                self.client.create_experiment(
                    name,
                    artifact_location=location,
                    tags={TAG_EXPERIMENT_KIND: EXPERIMENT_KIND},
                )
            )
        except Exception:
            # Another process created it between our lookup and create.
            if self.client.get_experiment_by_name(name) is None:
                raise
            return self.ensure_experiment(name)

    @naming("logging the training run {run_name!r}")
    def log_training_run(
        self,
        *,
        experiment_id: str,
        run_name: str,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, str],
        onnx_path: Path,
        datasets: dict[str, "pd.DataFrame"],
        label_column: str,
        text_artifacts: dict[str, str],
        history: list[dict[str, float]] | None = None,
        model_files: list[Path] | None = None,
    ) -> LoggedRun:
        """One MLflow run holding everything needed to reproduce and trust the model."""
        with self._run(experiment_id, run_name, tags) as run_id:
            self._log(run_id, params, metrics)
            for row in history or []:
                step = int(row["epoch"])
                self._log(run_id, {}, {k: v for k, v in row.items() if k != "epoch"}, step)
            with warnings.catch_warnings():
                # MLflow hints at every integer column of every logged dataset; pixel counts
                # and class labels are integers on purpose.
                warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
                # The client logs dataset entities; MLflow's only way from a pandas dataset
                # to one is this method (its fluent log_input calls it too).
                inputs = [
                    DatasetInput(
                        from_pandas(
                            frame, name=f"{run_name}-{split}", targets=label_column
                        )._to_mlflow_entity(),  # pyright: ignore[reportPrivateUsage]
                        tags=[InputTag(key=MLFLOW_DATASET_CONTEXT, value=split)],
                    )
                    for split, frame in datasets.items()
                ]
            if inputs:
                self.client.log_inputs(run_id, datasets=inputs)
            for name, text in text_artifacts.items():
                self.client.log_text(run_id, text, name)
            model = self._log_onnx_model(
                experiment_id,
                run_id,
                onnx_path,
                params,
                # Stored inside the model's folder, so a version's download URI holds them too.
                extra_files=[str(p) for p in model_files or []] or None,
            )
            stored_file_sha256 = {
                f"extra_files/{path.name}": self.stored_artifact_sha256(
                    model.model_id, f"extra_files/{path.name}"
                )
                for path in model_files or []
            }
        return LoggedRun(
            run_id=run_id,
            experiment_id=experiment_id,
            model_uri=model.model_uri,
            model_id=model.model_id,
            stored_onnx_sha256=model.stored_onnx_sha256,
            stored_file_sha256=stored_file_sha256,
        )

    @naming("reading {relative_path} of logged model {model_id}")
    def stored_artifact_sha256(self, model_id: str, relative_path: str) -> str:
        """Digest of a model file as the artifact store holds it: what loads will verify."""
        location = str(self.client.get_logged_model(model_id).artifact_location).rstrip("/")
        with tempfile.TemporaryDirectory() as folder:
            return sha256_file(download(self.client, f"{location}/{relative_path}", Path(folder)))

    @naming("logging {artifact_file} to run {run_id}")
    def log_text_to_run(self, run_id: str, text: str, artifact_file: str) -> str:
        """Attach a text artifact to an existing run; returns its artifact URI."""
        self.client.log_text(run_id, text, artifact_file)
        return f"{str(self.client.get_run(run_id).info.artifact_uri).rstrip('/')}/{artifact_file}"

    @naming("tagging run {run_id} with {key}")
    def set_run_tag(self, run_id: str, key: str, value: str) -> None:
        self.client.set_tag(run_id, key, value)

    @naming("logging the compression runs {run_name!r}")
    def log_compression_runs(
        self,
        *,
        experiment_id: str,
        run_name: str,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, str],
        text_artifacts: dict[str, str],
        candidates: list[CandidateRun],
        model_candidate: str | None,
        model_files: list[Path] | None = None,
    ) -> LoggedCompression:
        """A parent run for the compression stage with one nested run per candidate.

        Every child holds its metrics and its ONNX file (under `onnx/`). `model_candidate` is
        also logged as an MLflow model so it can be registered, with `model_files` beside it
        (a text model's tokenizer); their digests are read back from the store, as for
        training runs.
        """
        logged: dict[str, LoggedCandidate] = {}
        with self._run(experiment_id, run_name, tags) as parent_id:
            self._log(parent_id, params, metrics)
            for name, text in text_artifacts.items():
                self.client.log_text(parent_id, text, name)
            for candidate in candidates:
                child_tags = {
                    **candidate.tags,
                    TAG_CANDIDATE: candidate.name,
                    MLFLOW_PARENT_RUN_ID: parent_id,
                }
                with self._run(
                    experiment_id, f"{run_name}-{candidate.name}", child_tags
                ) as child_id:
                    self._log(child_id, candidate.params, candidate.metrics)
                    self.client.log_artifact(child_id, str(candidate.onnx_path), "onnx")
                    model = None
                    stored_files: dict[str, str] = {}
                    if candidate.name == model_candidate:
                        extra = [str(path) for path in model_files or []]
                        model = self._log_onnx_model(
                            experiment_id,
                            child_id,
                            candidate.onnx_path,
                            candidate.params,
                            **({"extra_files": extra} if extra else {}),
                        )
                        stored_files = {
                            f"extra_files/{path.name}": self.stored_artifact_sha256(
                                model.model_id, f"extra_files/{path.name}"
                            )
                            for path in model_files or []
                        }
                logged[candidate.name] = LoggedCandidate(
                    candidate.name,
                    child_id,
                    model.model_uri if model else None,
                    model.model_id if model else None,
                    model.stored_onnx_sha256 if model else None,
                    stored_files,
                )
        return LoggedCompression(parent_id, experiment_id, logged)

    @naming("logging the monitoring run of {model}")
    def log_monitoring_run(
        self,
        model: str,
        *,
        metrics: dict[str, float],
        params: dict[str, Any],
        html: Path,
        columns: list[dict[str, Any]] | None = None,
    ) -> "StoredArtifact":
        """One run per drift check in `<model>-monitoring`, holding the report and the
        per-column results (`columns`, read back by later checks for their plot)."""
        experiment_id = self.ensure_experiment(monitoring_experiment(model))
        with self._run(experiment_id, f"drift-{model}", {}) as run_id:
            self._log(run_id, params, metrics)
            self.client.log_artifact(run_id, str(html), "drift")
            if columns is not None:
                self.client.log_text(run_id, json.dumps(columns), DRIFT_COLUMNS_FILE)
        artifact_uri = str(self.client.get_run(run_id).info.artifact_uri)
        path = f"drift/{html.name}"
        return StoredArtifact(f"{artifact_uri.rstrip('/')}/{path}", experiment_id, run_id, path)

    @naming("logging the diagnosis of {model}")
    def log_diagnosis_run(
        self, model: str, *, report: str, params: dict[str, Any], metrics: dict[str, float]
    ) -> "StoredArtifact":
        """One run per diagnosis in `<model>-monitoring`, beside the drift checks, holding
        the report as diagnosis/report.md."""
        experiment_id = self.ensure_experiment(monitoring_experiment(model))
        with self._run(experiment_id, f"diagnose-{model}", {}) as run_id:
            self._log(run_id, params, metrics)
            self.client.log_text(run_id, report, "diagnosis/report.md")
        artifact_uri = str(self.client.get_run(run_id).info.artifact_uri)
        path = "diagnosis/report.md"
        return StoredArtifact(f"{artifact_uri.rstrip('/')}/{path}", experiment_id, run_id, path)

    @naming("reading the earlier drift checks of {model}")
    def monitoring_history(
        self, model: str, limit: int, exclude_run_id: str | None = None
    ) -> list[MonitoringRecord]:
        """The latest `limit` finished drift checks of `model` (oldest first), without
        `exclude_run_id` (the check being plotted)."""
        experiment = self.client.get_experiment_by_name(monitoring_experiment(model))
        if experiment is None:
            return []
        runs = self.client.search_runs(
            [str(experiment.experiment_id)],
            # Drift checks only: diagnoses share the experiment (log_diagnosis_run).
            filter_string="attributes.status = 'FINISHED' and attributes.run_name LIKE 'drift-%'",
            order_by=["attributes.start_time DESC"],
            max_results=limit + 1,
        )
        records = [
            MonitoringRecord(
                str(run.info.run_id),
                datetime.fromtimestamp(int(run.info.start_time) / 1000, UTC),
                {str(k): float(v) for k, v in run.data.metrics.items()},
                {str(k): str(v) for k, v in run.data.params.items()},
                self._stored_columns(str(run.info.run_id)),
            )
            for run in runs
            if str(run.info.run_id) != exclude_run_id
        ]
        return records[:limit][::-1]

    def _stored_columns(self, run_id: str) -> list[dict[str, Any]] | None:
        with tempfile.TemporaryDirectory() as folder:
            try:
                path = self.client.download_artifacts(run_id, DRIFT_COLUMNS_FILE, folder)
            except (MlflowException, OSError):
                return None  # a check made before the per-column file was stored
            rows: list[dict[str, Any]] = json.loads(Path(path).read_text())
            return rows

    @naming("logging {path} to run {run_id}")
    def log_file_to_run(self, run_id: str, path: Path, folder: str) -> StoredArtifact:
        """Attach a file to an existing run under `folder`."""
        self.client.log_artifact(run_id, str(path), folder)
        run = self.client.get_run(run_id)
        stored = f"{folder}/{path.name}"
        uri = f"{str(run.info.artifact_uri).rstrip('/')}/{stored}"
        return StoredArtifact(uri, str(run.info.experiment_id), run_id, stored)

    @contextmanager
    def _run(
        self, experiment_id: str, run_name: str, tags: dict[str, str]
    ) -> Generator[str, None, None]:
        """A run that ends FINISHED, or FAILED if its body raised (as the fluent start_run does)."""
        run = self.client.create_run(experiment_id, tags=resolve_tags(tags), run_name=run_name)
        run_id = str(run.info.run_id)
        try:
            yield run_id
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")
            raise
        self.client.set_terminated(run_id, "FINISHED")

    def _log(
        self, run_id: str, params: dict[str, Any], metrics: dict[str, float], step: int = 0
    ) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(key, float(value), now, step) for key, value in metrics.items()],
            params=[Param(key, str(value)) for key, value in params.items()],
        )

    def _log_onnx_model(
        self,
        experiment_id: str,
        run_id: str,
        onnx_path: Path,
        params: dict[str, Any],
        **save_options: Any,
    ) -> LoggedModel:
        """The run's `model`: created as a logged model, saved locally in MLflow's ONNX format
        with its signature read from the graph (chassis.onnx_signature), uploaded, finalized;
        its stored digest is recorded as the run's `onnx_sha256` param."""
        created = self.client.create_logged_model(
            experiment_id,
            name="model",
            source_run_id=run_id,
            params={key: str(value) for key, value in params.items()},
        )
        model_id = str(created.model_id)
        import onnx  # here: a second of import that only logging a model needs

        try:
            self.client.log_outputs(run_id, [LoggedModelOutput(model_id, step=0)])
            with tempfile.TemporaryDirectory() as folder:
                local = Path(folder) / "model"
                save_onnx_model(
                    onnx.load(str(onnx_path)),
                    str(local),
                    mlflow_model=Model(
                        artifact_path=created.artifact_location,
                        model_uuid=model_id,
                        run_id=run_id,
                        model_id=model_id,
                    ),
                    pip_requirements=onnx_pip_requirements(),
                    onnx_execution_providers=["CPUExecutionProvider"],
                    save_as_external_data=False,
                    signature=onnx_signature(onnx_path),
                    **save_options,
                )
                self.client.log_model_artifacts(model_id, str(local))
        except BaseException:
            self.client.finalize_logged_model(model_id, "FAILED")
            raise
        self.client.finalize_logged_model(model_id, "READY")
        stored = self.stored_artifact_sha256(model_id, "model.onnx")
        self.client.log_param(run_id, "onnx_sha256", stored)
        # The version is registered from where the files are stored, not `models:/<id>`:
        # MLflow's registry stores resolve that URI through the process-wide tracking URI
        # (a TODO in their create_model_version), which Chassis never sets.
        return LoggedModel(str(created.artifact_location), model_id, stored)


def monitoring_experiment(model: str) -> str:
    """The experiment holding one run per drift check of `model`."""
    return f"{model}-monitoring"


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
