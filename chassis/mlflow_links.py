"""Links into the MLflow UI: light (no MLflow import), so a task that only links to a page
(an alias change's artifact) does not load the tracking client."""

from dataclasses import dataclass
from urllib.parse import quote

from chassis.settings import ChassisSettings

MACHINE_LEARNING_VIEW = "workflowType=machine_learning"


@dataclass(frozen=True)
class MlflowLinks:
    """Every MLflow UI link Chassis prints or writes, each opening the machine-learning view
    of the UI a person looks at (`ChassisSettings.mlflow_ui_url`)."""

    ui: str  # the MLflow UI's address, no trailing slash

    @classmethod
    def of(cls, settings: ChassisSettings) -> "MlflowLinks":
        return cls(settings.mlflow_ui_url().rstrip("/"))

    def experiment(self, experiment_id: str) -> str:
        """The experiment's runs table."""
        return self._page(f"experiments/{_segment(experiment_id)}")

    def run(self, experiment_id: str, run_id: str) -> str:
        return self._page(f"experiments/{_segment(experiment_id)}/runs/{_segment(run_id)}")

    def artifact(self, experiment_id: str, run_id: str, path: str) -> str:
        """The run's artifact page with the file at `path` (inside the run's artifacts) open."""
        run = f"experiments/{_segment(experiment_id)}/runs/{_segment(run_id)}"
        return self._page(f"{run}/artifactPath/{quote(path, safe='/')}")

    def artifact_file(self, run_id: str, path: str) -> str:
        """The file itself as the tracking server serves it (its `get-artifact` route, the
        one the UI's own viewer reads): what a web page embeds, e.g. an image in a Prefect
        artifact. It works for every artifact store the server can read (a folder, S3, or
        its proxied mlflow-artifacts root), where `/api/2.0/mlflow-artifacts/` serves only
        the proxied one."""
        return f"{self.ui}/get-artifact?path={quote(path, safe='/')}&run_uuid={_segment(run_id)}"

    def registered_model(self, name: str) -> str:
        return self._page(f"models/{_segment(name)}")

    def model_version(self, name: str, version: int) -> str:
        return self._page(f"models/{_segment(name)}/versions/{version}")

    def _page(self, route: str) -> str:
        # The UI routes after `#`, and reads the view from the query inside the fragment.
        return f"{self.ui}/#/{route}?{MACHINE_LEARNING_VIEW}"


def _segment(text: str) -> str:
    """One path segment of a route, as the UI itself encodes names (a model name may hold
    `/`, spaces or `?`)."""
    return quote(str(text), safe="")
