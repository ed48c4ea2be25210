"""The gateway answers a regressor with its predicted values: in the response, the metrics,
the prediction log and the mirrored comparison the rollout judges."""

import asyncio
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from chassis.registry import Registry
from chassis.serving import verified_cache
from chassis.serving.batching import MicroBatcher
from chassis.serving.gateway import Gateway, GatewayConfig, ServedModel, ServedVersion
from chassis.serving.prediction_log import PredictionLogger
from chassis.serving.state import RolloutState


def regressor(version: int, scale: float) -> ServedVersion:
    def predict(rows: np.ndarray) -> np.ndarray:
        return (rows.sum(axis=1, keepdims=True) * scale).astype(np.float32)

    return ServedVersion(version, 2, "0" * 64, MicroBatcher(predict), ["a", "b"], task="regression")


def test_a_regressor_is_answered_with_values_logged_measured_and_compared(tmp_path: Path):
    files: dict[str, bytes] = {}
    built: list[tuple[str, str]] = []

    def prediction_log(model: str, features: list[str], task: str, text: bool) -> PredictionLogger:
        built.append((model, task))
        return PredictionLogger(model, features, files.__setitem__, task=task)  # type: ignore[arg-type]

    async def scenario() -> tuple[int, list[int] | list[float]]:
        unused = Registry(MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/unused.db"), "k")
        config = GatewayConfig(
            tmp_path / "state", tmp_path / "cache", prediction_log=prediction_log
        )
        gateway = Gateway(unused, config, ["m"])
        gateway.loop = asyncio.get_running_loop()
        state = RolloutState(
            model="m", stable_version=1, candidate_version=2, mode="canary", mirror_percent=100
        )
        model = ServedModel("m", state, {1: regressor(1, 1.0), 2: regressor(2, 1.05)})
        gateway._serve("m", model)
        answer = await gateway.predict("m", np.array([[100.0, 50.0], [2.0, 2.0]], np.float32), None)
        await asyncio.gather(*gateway.background)
        gateway.logs["m"].flush()
        text = gateway.metrics.render().decode()
        assert 'chassis_predicted_value_count{model="m",version="1"} 2.0' in text
        assert 'chassis_predicted_value_sum{model="m",version="1"} 154.0' in text
        assert "chassis_predicted_class_total{" not in text  # no classes for a regressor
        # Every mirrored row of v2 differs from v1's by 5 %: bucket 0.0526 (2^-4.25), not
        # the one below (0.0442).
        assert (
            'chassis_shadow_relative_difference_bucket{le="0.04419417382415922",model="m",'
            'version="2"} 0.0' in text
        )
        assert (
            'chassis_shadow_relative_difference_bucket{le="0.052556025953357156",model="m",'
            'version="2"} 2.0' in text
        )
        return answer.version, answer.predictions

    version, predictions = asyncio.run(scenario())
    assert built == [("m", "regression")]
    # The canary's share is 0 %: stable v1 answers, v2 runs mirrored.
    assert (version, predictions) == (1, [150.0, 4.0])
    (payload,) = files.values()
    frame = pd.read_parquet(io.BytesIO(payload))
    assert frame["prediction"].dtype == np.float64
    assert np.allclose(frame["prediction"], predictions)


def test_a_verified_copy_remembers_its_task_and_an_older_copy_is_a_classifier(tmp_path: Path):
    directory = tmp_path / "m" / "v1"
    directory.mkdir(parents=True)
    onnx = directory / "model.onnx"
    onnx.write_bytes(b"bytes")
    from chassis.digests import sha256_file

    digest = sha256_file(onnx)
    verified_cache.remember(directory, onnx, digest, ["a"], "regression")
    assert verified_cache.recall(tmp_path, "m", 1).task == "regression"  # type: ignore[union-attr]
    manifest = json.loads((directory / verified_cache.MANIFEST).read_text())
    del manifest["task"]
    (directory / verified_cache.MANIFEST).write_text(json.dumps(manifest))
    assert verified_cache.recall(tmp_path, "m", 1).task == "classification"  # type: ignore[union-attr]
