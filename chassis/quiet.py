"""Telemetry off and no network at runtime, applied once at each entry point.

Every library Chassis drives phones home or writes under HOME unless told otherwise. These
defaults are set with `setdefault`, so a user who exports a different value keeps it. They
must be applied before the libraries are imported: onnxruntime reads ORT_DISABLE_TELEMETRY
at import, Prefect reads PREFECT_HOME when its settings are first built.
"""

import logging
import os
from collections.abc import Mapping
from pathlib import Path

QUIET_ENVIRONMENT: Mapping[str, str] = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # A fresh temporary Prefect server takes ~20 s to start on a 2-core machine.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # Otherwise `mlflow server` forks about seven job-runner workers.
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    # onnxruntime tries to reach the network about 10 s after import without this.
    "ORT_DISABLE_TELEMETRY": "1",
    "GX_ANALYTICS_ENABLED": "false",
    # Great Expectations draws tqdm progress bars for every metric it computes.
    "TQDM_DISABLE": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GIT_PYTHON_REFRESH": "quiet",
}


def apply_quiet_environment(prefect_home: Path | None = None) -> None:
    """Switch telemetry off for every library and point Prefect at Chassis's state folder."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if prefect_home is not None:
        os.environ.setdefault("PREFECT_HOME", str(prefect_home))


# Great Expectations logs routine work at INFO: the temporary docs folder of every ephemeral
# context ("Created temporary directory ... for ephemeral docs site"), i.e. of every
# validation Chassis runs, which reached the terminal and the run log of each drift check.
# The module that logs it sets its own logger to INFO when imported, so the parent's level
# does not reach it: each such logger is named here.
GREAT_EXPECTATIONS_LOGGERS = (
    "great_expectations",
    "great_expectations.data_context.types.base",
)


def quiet_great_expectations() -> None:
    """Warnings and errors only from Great Expectations; call it after importing it (its
    modules set their levels on import)."""
    for name in GREAT_EXPECTATIONS_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
