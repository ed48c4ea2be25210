"""Live accuracy judged against a version's accuracy gate: the gate from the gate policy,
the verdict from a Wilson upper bound on enough feedback, and the feedback files read back
from the prediction log's store."""

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from chassis.drift_policy import DriftPolicy
from chassis.gates import GatePolicy, Measurements
from chassis.live_accuracy import accuracy_gate, judge_live_accuracy
from chassis.prediction_window import read_feedback
from chassis.serving.feedback import Joined
from chassis.serving.prediction_log import PredictionLogger
from chassis.settings import ChassisSettings
from chassis.storage import BlobStore


def measured(accuracy: float, task: str = "classification") -> Measurements:
    metrics = {"accuracy": accuracy} if task == "classification" else {"rmse": 1.0}
    return Measurements(1, metrics, {}, 1.0, 100, None, task=task)  # type: ignore[arg-type]


def test_the_gate_is_what_a_challenger_against_the_version_would_need():
    assert accuracy_gate(measured(0.96), GatePolicy()) == pytest.approx(0.95)  # -0.01 absolute
    # Every bound the gates set must hold: the highest floor is the gate.
    relative = GatePolicy(
        min_absolute_change_vs_champion=-0.2, min_relative_change_vs_champion=-0.1
    )
    assert accuracy_gate(measured(0.9), relative) == pytest.approx(0.81)
    floor = GatePolicy(quality_floor=0.97)
    assert accuracy_gate(measured(0.96), floor) == pytest.approx(0.97)
    assert accuracy_gate(
        measured(0.96), GatePolicy(quality_metric="macro_f1", quality_floor=0.99)
    ) == (
        pytest.approx(0.95)  # a macro-F1 floor says nothing of accuracy
    )
    assert accuracy_gate(measured(0.0, "regression"), GatePolicy()) is None


def feedback(version: int, right: int, wrong: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model_version": [version] * (right + wrong),
            "prediction": [1] * (right + wrong),
            "label": [1] * right + [0] * wrong,
        }
    )


def test_a_version_is_below_its_gate_only_when_its_upper_bound_is_on_enough_rows():
    frame = pd.concat(
        [
            feedback(1, 80, 20),  # 80 % on 100 rows: upper bound ~86 % < 95 %
            feedback(2, 95, 5),  # 95 % at a 95 % gate: meets it
            feedback(3, 0, 20),  # every label wrong, but 20 rows
            feedback(4, 50, 50),  # no gate recorded
        ]
    )
    gates = {1: 0.95, 2: 0.95, 3: 0.95, 4: None}
    judged = judge_live_accuracy(frame, gates, DriftPolicy(), regressor=False)
    assert [(v.version, v.rows, v.verdict) for v in judged] == [
        (1, 100, "below-gate"),
        (2, 100, "meets-gate"),
        (3, 20, "too-few-rows"),
        (4, 100, "no-gate"),
    ]
    first = judged[0]
    assert first.accuracy == 0.8 and first.upper_bound == pytest.approx(0.8575, abs=1e-4)
    assert first.sentence() == (
        "v1: live accuracy 80.0% on 100 feedback rows (upper bound 85.7%, gate 95.0%): below-gate"
    )
    # A stricter false-alarm rate widens the bound: 80 % on 100 rows then meets a 88 % gate.
    strict = DriftPolicy(accuracy_false_alarm_rate=0.0001)
    assert judge_live_accuracy(feedback(1, 80, 20), {1: 0.88}, strict, False)[0].verdict == (
        "meets-gate"
    )


def test_a_regressor_gets_its_mean_absolute_error_and_no_verdict():
    frame = pd.DataFrame({"model_version": [1, 1], "prediction": [2.0, 5.0], "label": [3.0, 1.0]})
    [judged] = judge_live_accuracy(frame, {1: None}, DriftPolicy(), regressor=True)
    assert (judged.mean_absolute_error, judged.verdict, judged.accuracy) == (
        2.5,
        "not-judged",
        None,
    )


def test_feedback_written_by_the_gateway_is_read_back_by_its_window(tmp_path: Path):
    store = BlobStore(ChassisSettings(), str(tmp_path))
    log = PredictionLogger("m", ["a"], store.write, replica="0a1b2c3d")
    served = datetime.now(UTC).timestamp() - 120
    log.record_feedback(
        [Joined("0a1b2c3d-0-0", 1, 2, 2, served, 0), Joined("0a1b2c3d-1-0", 2, 1, 0, served, 0)]
    )
    log.flush()
    [name] = store.list("m/feedback")
    assert name.startswith("m/feedback/date=")
    now = datetime.now(UTC)
    window = read_feedback(store, "m", now - timedelta(minutes=5), now + timedelta(seconds=1))
    assert window.frame[
        ["prediction_id", "model_version", "prediction", "label"]
    ].values.tolist() == [
        ["0a1b2c3d-0-0", 1, 2, 2],
        ["0a1b2c3d-1-0", 2, 1, 0],
    ]
    assert window.frame["served_at"].iloc[0] < window.frame["labelled_at"].iloc[0]
    # Feedback is judged by when it arrived: a window that ended before it holds none.
    earlier = read_feedback(store, "m", now - timedelta(minutes=5), now - timedelta(minutes=1))
    assert earlier.frame.empty
    # The prediction log's own window does not read feedback files as served rows.
    assert pd.read_parquet(io.BytesIO(store.read(name))).shape[0] == 2
