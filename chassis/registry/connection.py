"""Building an explicit MLflow client from settings: no process-wide MLflow URI is set.

The tracking writer (`chassis.tracking.Tracking`) and the `Registry` are both built from the
same settings through `mlflow_client`, so they talk to the same stores.
"""

import logging
import os

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from chassis.errors import RegistryError
from chassis.settings import ChassisSettings
from chassis.storage import apply_s3_environment, check_bucket


def prepare_stores(settings: ChassisSettings) -> None:
    """Local state folders, and the S3 environment MLflow's artifact repository reads (it
    builds its own boto3 client from the environment: there is no client to hand it)."""
    # Creating or migrating the SQLite schema is routine; MLflow announces it at INFO.
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)
    settings.ensure_local_state()
    if settings.uses_s3():
        apply_s3_environment(settings)
        root = settings.artifact_root or ""
        if root.startswith("s3://"):
            check_bucket(settings, root)


def mlflow_client(settings: ChassisSettings) -> MlflowClient:
    """A client bound to the configured tracking and registry stores."""
    prepare_stores(settings)
    tracking_uri = settings.resolved_tracking_uri()
    try:
        return MlflowClient(
            tracking_uri=tracking_uri, registry_uri=settings.resolved_registry_uri()
        )
    except MlflowException as error:  # a store MLflow refuses to open (e.g. a file store)
        first = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        raise RegistryError(f"MLflow cannot use the stores at {tracking_uri}: {first}") from None


def bound_http_retries() -> None:
    """Cap MLflow's own HTTP retries (default 7, exponential: minutes per call) for
    processes that retry with their own deadlines: the gateway, which keeps serving and
    retries with backoff, and the rollout flow, which must notice its lease ending while the
    registry is down. A value the user set is kept."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
