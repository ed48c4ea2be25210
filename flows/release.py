"""The release loop, the main job. It grows stage by stage; today: train and register."""

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel

from chassis.settings import DEFAULT_SPEC, ChassisSettings
from flows.training import (
    EpochsParameter,
    SeedParameter,
    SpecParameter,
    ToleranceParameter,
    TrainingOutcome,
    train,
)
from tasks.artifacts import publish_markdown


class ReleaseOutcome(BaseModel):
    training: TrainingOutcome
    prefect_flow_run_url: str


@flow(name="release", log_prints=True)
def release(
    spec: SpecParameter = DEFAULT_SPEC,
    epochs: EpochsParameter = None,
    seed: SeedParameter = 0,
    parity_tolerance: ToleranceParameter = None,
) -> ReleaseOutcome:
    """Take a spec from data to a registered, verified MLflow model version.

    Stages so far: validate the training data (Great Expectations), train the baseline,
    evaluate it, export ONNX with a parity check, log to MLflow and register a version with
    lineage and sha256 tags. Compression, gates, promotion and rollout join as later stages.
    """
    training = train(spec=spec, epochs=epochs, seed=seed, parity_tolerance=parity_tolerance)
    settings = ChassisSettings()
    run_url = f"{settings.prefect_ui_url()}/runs/flow-run/{flow_run.id}"
    publish_markdown(
        f"""# Release of {training.model_name}

| stage | result |
|---|---|
| training data suite | passed |
| baseline | test accuracy {training.metrics['test_accuracy']:.4f}, macro-F1 {training.metrics['test_macro_f1']:.4f} |
| ONNX parity | max abs diff {training.metrics['parity_max_abs_diff']:.2e} |
| registry | [{training.model_name} v{training.version}]({training.mlflow_version_url}), sha256 `{training.onnx_sha256[:16]}...` |
""",
        training.model_name, "release-summary",
        description=f"Release of {training.model_name} v{training.version}",
    )
    return ReleaseOutcome(training=training, prefect_flow_run_url=run_url)
