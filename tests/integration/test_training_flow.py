"""The training slice and release flow, run in process against a real Prefect API and a
real MLflow store (SQLite and a local artifact folder, fresh for each test)."""

import hashlib
from pathlib import Path

import mlflow
import mlflow.artifacts
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.settings import PREFECT_API_URL

from chassis.errors import DatasetError, DataValidationError, SpecError
from chassis.settings import ChassisSettings
from flows.release import release
from flows.training import train
from tests.fixtures.registries import home_registry


def stored_model_bytes(name: str, version: int) -> bytes:
    location = home_registry().version_artifact_uri(name, version)
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/model.onnx")
    return Path(local).read_bytes()


def latest_artifact(key: str):
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    assert found, f"no Prefect artifact with key {key}"
    # `created` is Optional in the client's model; every stored artifact has it.
    return max(found, key=lambda artifact: artifact.created)  # pyright: ignore[reportArgumentType, reportCallIssue]


def test_release_registers_digits_with_sha256_and_lineage(chassis_home):
    from chassis.compression.policy import CompressionPolicy
    from chassis.rollout.policy import RolloutPolicy

    fast = RolloutPolicy(steps=[50, 100], step_seconds=20)
    # Ranked by size (exact bytes; latency would leave the pick to timing noise), a
    # compressed candidate always beats the baseline: every one of them is a fraction of its
    # size, and on digits each keeps the baseline's accuracy within the 1% tolerance.
    by_size = CompressionPolicy(objective="size")
    outcome = release(epochs=4, rollout_policy=fast, compression_policy=by_size)
    training = outcome.training
    assert training.model_name == "digits-mlp" and training.version == 1
    assert training.metrics["test_accuracy"] > 0.85
    assert training.metrics["parity_max_abs_diff"] < 1e-4

    tags = home_registry().version_tags("digits-mlp", 1)
    assert tags["chassis.spec"] == "chassis.specs.digits:spec"
    assert tags["chassis.run_id"] == training.run_id
    assert len(tags["chassis.dataset_fingerprint"]) == 64
    assert tags["chassis.flow_run_id"]
    # The recorded digest is the digest of the bytes the artifact store really holds.
    assert (
        tags["chassis.onnx_sha256"]
        == hashlib.sha256(stored_model_bytes("digits-mlp", 1)).hexdigest()
    )

    run = home_registry().client.get_run(training.run_id)
    assert run.data.params["dataset_fingerprint"] == tags["chassis.dataset_fingerprint"]
    assert {"test_accuracy", "test_macro_f1", "test_recall_class_9"} <= set(run.data.metrics)
    assert run.info.artifact_uri is not None and run.inputs is not None
    assert run.info.artifact_uri.startswith((chassis_home / "artifacts").as_uri())
    assert {i.dataset.name for i in run.inputs.dataset_inputs} >= {"digits-mlp-train-train"}

    summary = latest_artifact("training-summary-digits-mlp")
    assert "digits-mlp version 1 registered" in summary.data
    metrics_table = latest_artifact("training-metrics-digits-mlp")
    assert "test_accuracy" in str(metrics_table.data)
    assert "release" in latest_artifact("release-summary-digits-mlp").data.lower()

    # The whole loop on the embedded default: the compressed candidate is registered as v2
    # with its lineage, the baseline became champion and v2 was rolled out against it.
    compressed = outcome.compression
    assert compressed is not None
    assert compressed.registered and not compressed.fallback_to_baseline, compressed.explanation
    assert outcome.candidate_version == compressed.version == 2
    assert outcome.rollout is not None and outcome.rollout.promoted
    assert home_registry().current_aliases("digits-mlp") == {"champion": 2, "previous": 1}
    compressed_tags = home_registry().version_tags("digits-mlp", 2)
    assert compressed_tags["chassis.compression.parent_version"] == "1"
    assert (
        compressed_tags["chassis.onnx_sha256"]
        == hashlib.sha256(stored_model_bytes("digits-mlp", 2)).hexdigest()
    )
    # The link names the Prefect server this run used (the harness's port), not 4200.
    harness_ui = PREFECT_API_URL.value().removesuffix("/api")
    assert outcome.prefect_flow_run_url.startswith(f"{harness_ui}/runs/flow-run/")


def test_same_seed_same_model_and_second_bundled_spec(chassis_home):
    first = train(spec="tests.fixtures.specs:good", seed=3)
    second = train(spec="tests.fixtures.specs:good", seed=3)
    assert (first.version, second.version) == (1, 2)
    assert first.dataset_fingerprint == second.dataset_fingerprint
    assert first.metrics == second.metrics
    wine = train(spec="chassis.specs.wine:spec", epochs=30)
    assert wine.model_name == "wine-mlp" and wine.metrics["test_accuracy"] > 0.8


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("tests.fixtures.specs:missing_label", DatasetError, "label column 'label' is missing"),
        ("tests.fixtures.specs:empty", DatasetError, "no rows"),
        ("tests.fixtures.specs:nan_features", DatasetError, "NaN or infinite"),
        ("tests.fixtures.specs:inf_features", DatasetError, "NaN or infinite"),
        ("tests.fixtures.specs:string_features", DatasetError, "non-numeric dtype"),
        ("tests.fixtures.specs:missing_builder", SpecError, "missing required part"),
        ("no_such_package.spec:spec", SpecError, "does not import"),
    ],
    ids=["missing-label", "empty", "nan", "inf", "wrong-dtype", "missing-part", "no-import"],
)
def test_bad_input_fails_the_flow_and_registers_nothing(chassis_home, spec, error, message):
    with pytest.raises(error, match=message):
        train(spec=spec)
    assert home_registry().client.search_registered_models() == []


def test_failing_expectation_suite_stops_before_registration(chassis_home, tmp_path):
    import json

    from chassis.suite_scaffold import scaffold_training_suite
    from tests.fixtures import specs

    document = scaffold_training_suite(specs.blob_dataset(), "strict")
    for expectation in document["expectations"]:
        if expectation["type"] == "expect_column_values_to_be_between":
            expectation["kwargs"]["max_value"] = 0  # blobs have positive values
    suite = tmp_path / "strict.json"
    suite.write_text(json.dumps(document))
    module = tmp_path / "strict_spec.py"
    module.write_text(
        "from tests.fixtures.specs import blob_dataset, make_spec\n"
        f"spec = make_spec('test-strict', blob_dataset, expectation_suite={str(suite)!r})\n"
    )
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(DataValidationError, match="expect_column_values_to_be_between"):
            train(spec="strict_spec:spec")
    finally:
        sys.path.remove(str(tmp_path))
    # This test's own store, read with an explicit client: a process-wide URI left by an
    # earlier test would make "nothing registered" true of the wrong registry.
    settings = ChassisSettings()
    store = mlflow.MlflowClient(
        tracking_uri=settings.resolved_tracking_uri(),
        registry_uri=settings.resolved_registry_uri(),
    )
    assert store.search_registered_models() == []
    assert store.search_model_versions() == []
    report = latest_artifact("training-data-validation-test-strict")
    assert "FAILED" in report.data


def test_registered_version_can_be_fetched_verified_and_rebuilt(chassis_home, tmp_path):
    import numpy as np

    from chassis import torch_program
    from chassis.errors import IntegrityError
    from chassis.runtime import create_session, run_batches
    from chassis.training import predict_logits, rebuild_classifier
    from chassis.weights import load_weights
    from tests.fixtures import specs

    outcome = train(spec="tests.fixtures.specs:good")
    files = home_registry().fetch_version(outcome.model_name, outcome.version, tmp_path / "a")
    assert files.weights_path is not None
    module = rebuild_classifier(
        specs.small_mlp,
        int(files.tags["chassis.n_features"]),
        int(files.tags["chassis.n_classes"]),
        load_weights(files.weights_path),
    )
    x = np.random.default_rng(1).normal(size=(9, 4)).astype(np.float32)
    onnx_logits = run_batches(create_session(files.onnx_path), x)
    assert np.abs(predict_logits(module, x) - onnx_logits).max() < 1e-4
    # The same module from the version's own program, with no spec code.
    assert files.program_path is not None and files.evaluation_path is not None
    from_program = torch_program.load(files.program_path, files.weights_path)
    assert np.abs(predict_logits(from_program, x) - onnx_logits).max() < 1e-4

    # An edited program is refused like any other file whose digest differs.
    stored = Path(home_registry().version_artifact_uri(outcome.model_name, outcome.version)[7:])
    program_file = stored / "extra_files" / "program.json"
    original = program_file.read_bytes()
    program_file.write_bytes(original.replace(b'"torch.relu"', b'"torch.sigmoid"'))
    assert program_file.read_bytes() != original
    with pytest.raises(IntegrityError, match=r"extra_files/program\.json does not match"):
        home_registry().fetch_version(outcome.model_name, outcome.version, tmp_path / "c")
    program_file.write_bytes(original)

    # Truncate the stored ONNX file: the next load must refuse it and name both digests.
    onnx_file = stored / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:100])
    with pytest.raises(IntegrityError, match=r"expected sha256 [0-9a-f]{64}, actual [0-9a-f]{64}"):
        home_registry().fetch_version(outcome.model_name, outcome.version, tmp_path / "b")
    assert not (tmp_path / "b" / "model.onnx").exists()
