"""A regressor released end to end and served: the bundled diabetes spec through the release
flow (train, compress, gates, aliases) on a real Prefect API and MLflow registry, then
`chassis serve` answering its predicted values over HTTP, then its compressed challenger
canaried through a gateway, agreement judged by relative difference."""

import json

import httpx
import numpy as np

from chassis.compression.policy import CompressionPolicy
from chassis.data import features, load_dataset
from chassis.runtime import create_session, run_batches
from chassis.specs.diabetes import spec as diabetes
from flows.release import release
from flows.rollout import rollout
from tests.fixtures.gateway import GatewayProcess
from tests.fixtures.registries import home_registry

SPEC = "chassis.specs.diabetes:spec"
MODEL = "diabetes-mlp"


def test_a_regression_spec_is_released_gated_and_served_with_its_predicted_values(
    chassis_home, tmp_path
):
    # Selected by size: at a few microseconds a call, a busy machine's timing noise can make
    # every candidate look slower than the baseline (a CI run chose the baseline so).
    by_size = CompressionPolicy(objective="size")
    outcome = release(spec=SPEC, rollout_strategy="none", compression_policy=by_size)

    # Trained and evaluated as a regressor: its metrics, in the target's units.
    metrics = outcome.training.metrics
    assert {"test_rmse", "test_mae", "test_r2"} <= set(metrics)
    assert "test_accuracy" not in metrics
    assert 30 < metrics["test_rmse"] < 80 and metrics["test_r2"] > 0.2
    registry = home_registry()
    trained = registry.version_tags(MODEL, 1)
    assert (trained["chassis.task"], trained["chassis.n_outputs"]) == ("regression", "1")
    assert "chassis.n_classes" not in trained

    # Compressed (selected on RMSE), gated on RMSE against its baseline, and placed: the
    # baseline is the first champion, the compressed version its challenger.
    assert outcome.compression is not None and outcome.candidate_version == 2
    assert registry.version_tags(MODEL, 2)["chassis.task"] == "regression"
    assert outcome.gates is not None and outcome.gates.passed
    gates = {g["gate"]: g for g in outcome.gates.report["gates"]}  # type: ignore[union-attr]
    assert gates["rmse vs baseline v1 relative change"]["passed"]
    assert "per-class recall floor" not in gates
    assert registry.current_aliases(MODEL) == {"champion": 1, "challenger": 2}

    # Served over HTTP: the champion's predicted values, equal to its ONNX graph's outputs.
    dataset = load_dataset(diabetes.load_data, diabetes.name, diabetes.task)
    rows = features(dataset.test, dataset)[:16]
    files = registry.fetch_version(MODEL, 1, tmp_path / "v1")
    expected = run_batches(create_session(files.onnx_path), rows)[:, 0]
    gateway = GatewayProcess(chassis_home, models=(MODEL,))
    gateway.start()
    try:
        response = httpx.post(
            f"{gateway.url}/v1/models/{MODEL}/predict",
            json={"instances": rows.tolist()},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        body = json.loads(response.content)
        assert body["model"] == MODEL and body["version"] == 1
        predictions = np.array(body["predictions"])
        assert predictions.shape == (16,)
        assert np.allclose(predictions, expected, rtol=1e-5)
        # Raw target units (disease progression, 25..346), not standardized ones.
        assert 25 < predictions.mean() < 346
        metrics_text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
        assert f'chassis_predicted_value_count{{model="{MODEL}",version="1"}} 16.0' in metrics_text
        assert "chassis_predicted_class_total{" not in metrics_text
    finally:
        gateway.stop()

    # The challenger canaried through a gateway started for the run (test rows replayed):
    # mirrored predictions agree when within the policy's relative difference.
    staged = rollout(model_name=MODEL, version=2)
    assert staged.promoted, staged.steps
    agreement = [row for row in staged.steps if row["check"] == "agreement with stable"]
    assert agreement and all(row["result"] == "ok" for row in agreement)
    assert agreement[0]["threshold"] == ">= 0.95 within relative difference 0.2"
    assert registry.current_aliases(MODEL)["champion"] == 2
