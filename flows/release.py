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
    metrics = training.metrics
    version_link = f"[{training.model_name} v{training.version}]({training.mlflow_version_url})"
    rows = [
        ("training data suite", "passed"),
        (
            "baseline",
            f"test accuracy {metrics['test_accuracy']:.4f}, "
            f"macro-F1 {metrics['test_macro_f1']:.4f}",
        ),
        ("ONNX parity", f"max abs diff {metrics['parity_max_abs_diff']:.2e}"),
        ("registry", f"{version_link}, sha256 `{training.onnx_sha256[:16]}...`"),
    ]
    publish_markdown(
        "\n".join(
            [f"# Release of {training.model_name}", "", "| stage | result |", "|---|---|"]
            + [f"| {stage} | {result} |" for stage, result in rows]
        ),
        training.model_name,
        "release-summary",
        description=f"Release of {training.model_name} v{training.version}",
    )
    return ReleaseOutcome(training=training, prefect_flow_run_url=run_url)
