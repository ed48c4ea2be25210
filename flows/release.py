"""The release loop, the main job: train, gate, and hand the version its alias.

Stages today: data suite -> training -> ONNX with parity -> registration -> gates (vs
baseline and champion) -> alias (the first version becomes champion; later ones become the
challenger that a rollout promotes). Compression and the staged rollout join as stages.
"""

from typing import Annotated, Literal

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from chassis import tracking
from chassis.aliases import CHAMPION
from chassis.evaluation import METRIC_LABELS
from chassis.gates import GatePolicy
from chassis.markdown import Markdown, cell, code, link, table
from chassis.registry import AliasChange, Registry
from chassis.rollout.policy import RolloutPolicy
from chassis.settings import DEFAULT_SPEC, ChassisSettings
from flows.compression import CompressionOutcome, CompressionPolicyParameter, compress
from flows.promotion import AliasOutcome, GatesOutcome, alias_outcome, gates
from flows.rollout import RolloutOutcome, rollout
from flows.run_form import described
from flows.run_names import by_spec, rename_run
from flows.training import (
    EpochsParameter,
    SeedParameter,
    SpecParameter,
    ToleranceParameter,
    TrainingOutcome,
    train,
)
from tasks.artifacts import publish_markdown
from tasks.promotion import promote_champion, set_challenger


class ReleaseOutcome(BaseModel):
    training: TrainingOutcome
    compression: CompressionOutcome | None
    candidate_version: int  # with no_change: the existing version the new bytes equal
    gates: GatesOutcome | None  # None with no_change: nothing new to gate
    alias: AliasOutcome | None  # None with no_change: no alias moved
    rollout: RolloutOutcome | None
    prefect_flow_run_url: str
    # Set when the trained model's ONNX bytes equal the champion's (or the bytes the champion
    # was compressed from): the release ends here, successfully, with nothing registered.
    no_change: str | None = None


@described
@flow(name="release", flow_run_name=by_spec("release"), log_prints=True)
def release(
    spec: SpecParameter = DEFAULT_SPEC,
    epochs: EpochsParameter = None,
    seed: SeedParameter = 0,
    parity_tolerance: ToleranceParameter = None,
    thresholds: Annotated[
        GatePolicy | None,
        Field(description="Gate thresholds of the candidate (defaults when empty)."),
    ] = None,
    rollout_strategy: Annotated[
        Literal["canary", "blue-green", "none"],
        Field(description="How a challenger reaches traffic; none leaves it as challenger."),
    ] = "canary",
    rollout_policy: Annotated[
        RolloutPolicy | None,
        Field(description="Rollout analysis thresholds and step schedule (defaults when empty)."),
    ] = None,
    compression: Annotated[
        Literal["on", "off"],
        Field(
            description="on: build int8, pruned and distilled candidates and release the "
            "best one within tolerance; off: release the trained baseline itself."
        ),
    ] = "on",
    compression_policy: CompressionPolicyParameter = None,
) -> ReleaseOutcome:
    """Take a spec from data to a registered, gated MLflow version with an alias.

    Validates the training data (Great Expectations), trains and evaluates the baseline,
    exports ONNX with a parity check, registers a version with lineage and sha256 tags,
    runs the model gates (stored with the version; a failure stops the release), then makes
    the version the champion if there is none yet; otherwise it becomes the challenger and
    is rolled out through the gateway (canary or blue-green) with automatic analysis:
    promoted on success, rolled back (and this run failed) otherwise.

    A trained model whose ONNX bytes equal the champion's (or the bytes the champion was
    compressed from) is no change: the run ends successfully saying so, with nothing
    registered, gated or rolled out, and no alias moved.
    """
    settings = ChassisSettings()
    run_url = tracking.flow_run_url(settings, flow_run.id)
    training = train(
        spec=spec,
        epochs=epochs,
        seed=seed,
        parity_tolerance=parity_tolerance,
        skip_if_unchanged=True,
    )
    if not training.registered:
        return release_without_change(training, run_url)
    model = training.model_name
    candidate = training.version
    compressed = None
    if compression == "on":
        compressed = compress(model_name=model, version=training.version, policy=compression_policy)
        candidate = compressed.version
    rename_run(f"release {model} v{candidate}")
    registry = Registry.from_settings(settings)
    champion = registry.current_aliases(model).get(CHAMPION)
    champion, gate_outcome, change = gate_and_place(
        registry, model, candidate, training.version, champion, thresholds, run_url
    )
    alias = alias_outcome(change)
    staged = None
    if champion is not None and rollout_strategy != "none":
        staged = rollout(
            model_name=model, version=candidate, strategy=rollout_strategy, policy=rollout_policy
        )
    publish_release_summary(
        training, compressed, candidate, registry.current_aliases(model), staged
    )
    return ReleaseOutcome(
        training=training,
        compression=compressed,
        candidate_version=candidate,
        gates=gate_outcome,
        alias=alias,
        rollout=staged,
        prefect_flow_run_url=run_url,
    )


def gate_and_place(
    registry: Registry,
    model: str,
    candidate: int,
    baseline: int,
    champion: int | None,
    thresholds: GatePolicy | None,
    run_url: str,
) -> tuple[int | None, GatesOutcome, AliasChange]:
    """Gate the candidate and give it its alias: champion when there is none, else
    challenger (returned with the champion it will be rolled out against). On a first
    release of a compressed candidate the uncompressed baseline becomes the champion, so
    the candidate is rolled out against something real instead of skipping the rollout."""
    if champion is None and candidate != baseline:
        baseline_gates = gates(model_name=model, version=baseline, thresholds=thresholds)
        promote_champion(
            registry,
            model,
            baseline,
            None,
            "first release: the uncompressed baseline becomes the champion",
            {"gate_report": baseline_gates.report_uri, "flow_run": run_url},
        )
        champion = baseline
    gate_outcome = gates(model_name=model, version=candidate, thresholds=thresholds)
    evidence = {"gate_report": gate_outcome.report_uri, "flow_run": run_url}
    if champion is None:
        change = promote_champion(
            registry,
            model,
            candidate,
            None,
            "first version to pass its gates: no champion to compare with",
            evidence,
        )
    else:
        change = set_challenger(
            registry,
            model,
            candidate,
            f"passed its gates against champion v{champion}; awaiting rollout",
            evidence,
        )
    return champion, gate_outcome, change


def release_without_change(training: TrainingOutcome, run_url: str) -> ReleaseOutcome:
    """The release of a model that equals the champion: nothing to register or roll out."""
    reason = training.no_change or f"equal to v{training.version}"
    print(f"release of {training.model_name}: {reason}")
    publish_markdown(
        "\n".join(
            [
                f"# Release of {cell(training.model_name)}: no change",
                "",
                f"{cell(reason[0].upper() + reason[1:])}.",
                "",
                "Nothing was registered, gated or rolled out; no alias moved. "
                f"The training run is in MLflow: {link(training.run_id, training.mlflow_run_url)}.",
            ]
        ),
        "release-summary",
        training.model_name,
        description=f"Release of {training.model_name}: no change from v{training.version}",
    )
    return ReleaseOutcome(
        training=training,
        compression=None,
        candidate_version=training.version,
        gates=None,
        alias=None,
        rollout=None,
        prefect_flow_run_url=run_url,
        no_change=reason,
    )


def publish_release_summary(
    training: TrainingOutcome,
    compressed: CompressionOutcome | None,
    candidate: int,
    aliases: dict[str, int],
    staged: RolloutOutcome | None,
) -> None:
    """The release at a glance; `aliases` are the model's aliases at its end (after the
    rollout: a promoted candidate is the champion, not the challenger it was)."""
    model = training.model_name
    metrics = training.metrics
    version = link(f"{model} v{training.version}", training.mlflow_version_url)
    rows: list[tuple[str, object]] = [
        ("training data suite", "passed"),
        (
            "baseline",
            ", ".join(
                f"test {shown} {metrics[f'test_{name}']:.4f}"
                for name, shown in METRIC_LABELS.items()
                if f"test_{name}" in metrics
            ),
        ),
        (
            "ONNX parity",
            f"max abs diff {metrics['parity_max_abs_diff']:.2e}"
            if "parity_max_abs_diff" in metrics
            else "not measured: an imported ONNX graph has no torch twin",
        ),
        ("registry", Markdown(f"{version}, sha256 {code(training.onnx_sha256[:16] + '...')}")),
        (
            "compression",
            "off"
            if compressed is None
            else f"selected {compressed.selected} -> v{candidate}: {compressed.explanation}",
        ),
        (f"gates of v{candidate}", "passed"),
        ("aliases", describe_aliases(aliases, candidate)),
    ]
    if staged is not None:
        rows.append(("rollout", describe_rollout(staged)))
    publish_markdown(
        f"# Release of {cell(model)} v{candidate}\n\n" + table(["stage", "result"], rows),
        "release-summary",
        model,
        description=f"Release of {model} v{candidate}",
    )


def describe_aliases(aliases: dict[str, int], candidate: int) -> str:
    """E.g. "v3 is @champion (@previous: v1)"; "v3 has no alias" when none points at it."""
    held = [f"@{a}" for a, v in sorted(aliases.items()) if v == candidate]
    others = ", ".join(f"@{a}: v{v}" for a, v in sorted(aliases.items()) if v != candidate)
    own = f"v{candidate} is {' and '.join(held)}" if held else f"v{candidate} has no alias"
    return f"{own} ({others})" if others else own


def describe_rollout(staged: RolloutOutcome) -> str:
    """The steps in the order they ran (the table has a row per check, so each step
    appears several times)."""
    steps = list(dict.fromkeys(row["step"] for row in staged.steps))
    result = "promoted to champion" if staged.promoted else "not promoted"
    return f"{staged.strategy}: {result} after {', '.join(steps)}"
