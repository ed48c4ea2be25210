"""The compression stage's cascade proposal: which candidate it picks as the small tier,
and that its measured figures follow the one rule."""

from pathlib import Path

import numpy as np

from chassis.cascade.rule import cascade_answer
from chassis.compression.cascade_proposal import propose_cascade, worth_it
from chassis.compression.latency import LatencyRatio
from chassis.compression.measure import Measurement, classification_task


def linear_onnx(path: Path, weights: np.ndarray) -> Path:
    """logits = x @ weights, a real ONNX classifier."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["logits"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, weights.shape[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, weights.shape[1]])],
        initializer=[numpy_helper.from_array(weights.astype(np.float32), "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def measurement(name: str, path: Path, size: int, ratio: float | None) -> Measurement:
    latency = None if ratio is None else LatencyRatio(ratio, ratio * 0.9, ratio * 0.95, 9)
    return Measurement(name, {}, {}, {}, size, 0, "", path, latency_vs_baseline=latency)


def test_the_smallest_candidate_not_slower_than_the_baseline_is_proposed(tmp_path) -> None:
    rng = np.random.default_rng(0)
    w_full = np.eye(4)[:, :3] * 6.0  # class = argmax of the first three features
    w_small = w_full / 6.0 + rng.normal(scale=0.3, size=(4, 3))  # less sure, sometimes wrong
    full = linear_onnx(tmp_path / "full.onnx", w_full)
    small = linear_onnx(tmp_path / "small.onnx", w_small)
    measured = [
        measurement("baseline", full, 1000, None),
        measurement("pruned", small, 600, 0.7),  # smaller and surely faster
        measurement("dynamic-int8", small, 300, 1.4),  # smallest, but surely slower
        measurement("distilled", small, 900, 0.8),
    ]
    assert worth_it(measured, "baseline") is measured[1]

    x_val = rng.normal(size=(400, 4)).astype(np.float32)
    y_val = x_val[:, :3].argmax(axis=1)
    x_test = rng.normal(size=(300, 4)).astype(np.float32)
    y_test = x_test[:, :3].argmax(axis=1)
    proposal = propose_cascade(
        measured, "baseline", 1, (x_val, y_val), x_test, classification_task(y_test, 3), rounds=1
    )
    assert proposal is not None and proposal.small == "pruned"
    small_logits = x_test @ w_small.astype(np.float32)
    answered = cascade_answer(small_logits, proposal.spec.temperature, proposal.spec.threshold)
    expected = np.where(answered, small_logits.argmax(axis=1), y_test)  # the full tier is right
    assert proposal.quality["escalation_share"] == 1.0 - answered.mean()
    assert proposal.quality["accuracy"] == (expected == y_test).mean()
    assert 0 < proposal.quality["escalation_share"] < 1
    assert proposal.spec.validation_accuracy_loss_pp <= 0.5 + 1e-9
    assert set(proposal.latency_ms) == {
        "cascade_mean",
        "cascade_p99",
        "baseline_mean",
        "baseline_p99",
    }


def test_no_proposal_when_no_candidate_is_worth_it(tmp_path) -> None:
    full = linear_onnx(tmp_path / "full.onnx", np.eye(4)[:, :3])
    measured = [
        measurement("baseline", full, 1000, None),
        measurement("dynamic-int8", full, 300, 1.4),
    ]
    assert worth_it(measured, "baseline") is None
