"""A dynamic-int8 graph scales a call's activations over all its rows, so a row's answer
depends on the rows run with it; the gateway calls such a graph one row at a time, so a
request's answer never depends on which requests were batched with it."""

from pathlib import Path
from typing import cast

import numpy as np

from chassis.compression.quantize import quantize_dynamic_int8
from chassis.registry import Registry
from chassis.runtime import create_session, first_output
from chassis.serving.gateway import Gateway, GatewayConfig, row_by_row
from tests.fixtures.import_specs import linear_onnx


def test_row_by_row_answers_a_batch_as_each_row_alone(tmp_path: Path) -> None:
    float_graph = linear_onnx(tmp_path / "float.onnx", width=16, outputs=4)
    int8 = quantize_dynamic_int8(float_graph, tmp_path / "int8.onnx", per_channel=False)
    session = create_session(int8)

    def call(rows: np.ndarray) -> np.ndarray:
        return first_output(session, {"input": rows})

    rng = np.random.default_rng(0)
    small = rng.normal(size=(1, 16)).astype(np.float32)
    loud = (rng.normal(size=(1, 16)) * 1000).astype(np.float32)  # widens the batch's scale
    batch = np.concatenate([small, loud])
    alone = call(small)
    # Batched with the loud row, the small row's answer moves: the effect being guarded.
    assert not np.allclose(call(batch)[0], alone[0], atol=1e-3)
    answered = row_by_row(call)(batch)
    assert answered.shape == (2, 4)
    assert np.array_equal(answered[0], alone[0]) and np.array_equal(answered[1], call(loud)[0])


def test_the_gateway_runs_a_dynamic_int8_version_one_request_a_call(tmp_path: Path) -> None:
    float_graph = linear_onnx(tmp_path / "float.onnx", width=16, outputs=4)
    int8 = quantize_dynamic_int8(float_graph, tmp_path / "int8.onnx", per_channel=False)
    config = GatewayConfig(tmp_path / "state", tmp_path / "cache", max_batch=64)
    gateway = Gateway(cast(Registry, None), config, ["m"])  # _open given names asks no registry
    names = [f"f{i}" for i in range(16)]
    served = gateway._open("m", 2, int8, "0" * 64, names, "classification")
    # Requests are not stacked into one call: each waits only for its own rows.
    assert served.batcher.max_batch == 1
    assert (
        gateway._open("m", 1, float_graph, "0" * 64, names, "classification").batcher.max_batch
        == 64
    )
    rows = np.random.default_rng(1).normal(size=(3, 16)).astype(np.float32)
    rows[1] *= 1000
    session = create_session(int8)
    alone = np.concatenate([first_output(session, {"input": rows[i : i + 1]}) for i in range(3)])
    assert np.array_equal(served.batcher.run(rows), alone)
