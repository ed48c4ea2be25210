"""The compress flow on a freshly trained version, against a real Prefect API and MLflow."""

import hashlib
import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from chassis.compression.policy import CompressionPolicy
from chassis.errors import ChassisError
from flows.compression import compress
from flows.training import train
from tests.fixtures.registries import home_registry, version_signature


def latest_artifact(key: str):
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    assert found, f"no Prefect artifact with key {key}"
    # `created` is Optional in the client's model; every stored artifact has it.
    return max(found, key=lambda artifact: artifact.created)  # pyright: ignore[reportArgumentType, reportCallIssue]


def test_compress_registers_the_best_candidate_with_its_recipe(chassis_home, tmp_path):
    trained = train(spec="tests.fixtures.specs:good", epochs=20)
    outcome = compress(
        model_name=trained.model_name,
        version=trained.version,
        policy=CompressionPolicy(
            tolerance=0.02,
            objective="size",
            candidates=["dynamic-int8", "static-int8", "pruned", "pruned+int8"],
            prune_fraction=0.5,
            finetune_epochs=5,
            repeats=5,
        ),
    )
    names = [row["candidate"] for row in outcome.rows]
    assert names == ["baseline", "dynamic-int8", "static-int8", "pruned", "pruned+int8"]
    assert [row["candidate"] for row in outcome.rows if row["selected"]] == [outcome.selected]

    # Selection respects the tolerance: the winner is within 2% of the baseline's accuracy.
    accuracy = {row["candidate"]: row["accuracy"] for row in outcome.rows}
    assert accuracy[outcome.selected] >= accuracy["baseline"] * 0.98 - 1e-9
    for row in outcome.rows:
        assert (row["passed"] == "yes") == (
            accuracy[row["candidate"]] >= accuracy["baseline"] * 0.98 - 1e-9
        )

    # One nested MLflow run per candidate, each with its metrics and ONNX file.
    client = home_registry().client
    children = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.mlflow.parentRunId = '{outcome.parent_run_id}'",
    )
    assert sorted(r.data.tags["chassis.compression.candidate"] for r in children) == sorted(names)
    for run in children:
        assert "size_bytes" in run.data.metrics and "latency_b64_p99_ms" in run.data.metrics
        files = [a.path for a in home_registry().client.list_artifacts(run.info.run_id, "onnx")]
        assert files and files[0].endswith(".onnx")

    table = latest_artifact("compression-candidates-test-blobs")
    assert "pruned+int8" in str(table.data)
    summary = latest_artifact("compression-summary-test-blobs")
    assert f"Selected **{outcome.selected}**" in summary.data

    assert not outcome.fallback_to_baseline  # blobs survive int8: something smaller passes
    assert outcome.registered and outcome.version == trained.version + 1
    tags = home_registry().version_tags(trained.model_name, outcome.version)
    assert tags["chassis.compression.parent_version"] == str(trained.version)
    assert tags["chassis.compression.candidate"] == outcome.selected
    assert "quantization" in json.loads(tags["chassis.compression.recipe"]) or "pruning" in (
        json.loads(tags["chassis.compression.recipe"])
    )
    parent_tags = home_registry().version_tags(trained.model_name, trained.version)
    for tag in ("chassis.spec", "chassis.dataset_fingerprint", "chassis.n_features"):
        assert tags[tag] == parent_tags[tag]
    child = next(
        r for r in children if r.data.tags["chassis.compression.candidate"] == outcome.selected
    )
    assert tags["chassis.run_id"] == child.info.run_id
    # fetch_version verifies the recorded sha256 against the stored bytes.
    files = home_registry().fetch_version(trained.model_name, outcome.version, tmp_path / "v")
    assert (
        tags["chassis.onnx_sha256"]
        == hashlib.sha256(Path(files.onnx_path).read_bytes()).hexdigest()
    )
    assert files.weights_path is None
    # The served (compressed) version shows the same schema in MLflow as its baseline.
    signature = version_signature(trained.model_name, outcome.version)
    assert signature == version_signature(trained.model_name, trained.version)
    assert [(i["name"], i["tensor-spec"]) for i in signature["inputs"]] == [
        ("features", {"dtype": "float32", "shape": [-1, 4]})
    ]


def test_over_compression_leaves_the_baseline_selected(chassis_home):
    trained = train(spec="tests.fixtures.specs:good", epochs=20)
    outcome = compress(
        model_name=trained.model_name,
        version=trained.version,
        policy=CompressionPolicy(
            tolerance=0.0,
            candidates=["pruned"],
            prune_fraction=0.99,
            finetune_epochs=0,
            repeats=3,
        ),
    )
    pruned = next(row for row in outcome.rows if row["candidate"] == "pruned")
    if (
        pruned["accuracy"]
        < next(r for r in outcome.rows if r["candidate"] == "baseline")["accuracy"]
    ):
        assert outcome.selected == "baseline" and outcome.fallback_to_baseline
        assert not outcome.registered and outcome.version == trained.version
        assert "No compressed candidate passed" in outcome.explanation
        assert home_registry().list_versions(trained.model_name) == [trained.version]
    else:
        pytest.fail("a 1-neuron model without fine-tuning should lose accuracy")


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"tolerance": 1.5}, "tolerance"),
        ({"tolerance": -0.1}, "tolerance"),
        ({"objective": "speed"}, "objective"),
        ({"tolerance_mode": "percent"}, "tolerance_mode"),
    ],
    ids=["tolerance-too-big", "tolerance-negative", "unknown-objective", "unknown-mode"],
)
def test_bad_parameters_fail_before_anything_is_registered(chassis_home, parameters, message):
    trained = train(spec="tests.fixtures.specs:good", epochs=2)
    with pytest.raises(Exception, match=message) as raised:
        # As a deployment or the run form passes it: the policy's fields as a mapping.
        compress(model_name=trained.model_name, version=trained.version, policy=parameters)
    assert type(raised.value).__name__ in ("ParameterTypeError", "SelectionPolicyError")
    assert home_registry().list_versions(trained.model_name) == [trained.version]


def test_unknown_version_is_a_clear_error(chassis_home):
    trained = train(spec="tests.fixtures.specs:good", epochs=2)
    with pytest.raises(ChassisError, match="has no version 7"):
        compress(model_name=trained.model_name, version=7)
