"""A dynamic-int8 graph scales a call's activations over all its rows, so a row's answer
depends on the rows run with it; the gateway calls such a graph one row at a time, so a
request's answer never depends on which requests were batched with it."""

from pathlib import Path

import numpy as np

from chassis.compression.quantize import quantize_dynamic_int8
from chassis.runtime import create_session, first_output
from chassis.serving.gateway import row_by_row
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
