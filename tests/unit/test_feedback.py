"""Ground truth: prediction ids, the window that joins feedback with its prediction, label
checks, the feedback route (in process, no server), its metrics and the feedback files."""

import asyncio
import gc
import io
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from chassis.errors import FeedbackRefused
from chassis.serving.asgi import GatewayApp
from chassis.serving.feedback import (
    MAX_ITEMS,
    LiveScores,
    PredictionWindow,
    check_label,
    outcome_of,
    parse_feedback,
)
from chassis.serving.gateway import Gateway
from chassis.serving.prediction_log import PredictionLogger
from chassis.serving.state import RolloutState
from tests.unit.test_serving_text import (
    MODEL,
    Version,
    post,
    predict,
    run,
    serving,
)

REPLICA = "0a1b2c3d"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- ids and the window ------------------------------------------------------------------


def added(window: PredictionWindow, version: int, predictions: list[int]) -> list[str]:
    return window.ids(window.add(version, predictions), len(predictions))


def test_each_row_gets_its_own_id_naming_replica_request_and_row():
    window = PredictionWindow(REPLICA, 8, 60)
    first = window.add(1, [2])
    second = window.add(1, [0, 1, 1])
    assert window.ids(first, 1) == [f"{REPLICA}-0-0"]
    assert window.ids(second, 3) == [f"{REPLICA}-1-0", f"{REPLICA}-1-1", f"{REPLICA}-1-2"]
    # The answer's bytes hold the same ids (one row without a JSON encoder).
    assert orjson.loads(window.ids_json(first, 1)) == window.ids(first, 1)
    assert orjson.loads(window.ids_json(second, 3)) == window.ids(second, 3)
    found = window.find(f"{REPLICA}-1-2")
    assert (found.version, found.prediction, found.row) == (1, 1, 2)


@pytest.mark.parametrize(
    ("prediction_id", "message"),
    [
        ("not-an-id", "not a prediction id"),
        ("0a1b2c3d-x-0", "not a prediction id"),
        ("0a1b2c3d-0", "not a prediction id"),
        ("ffffffff-0-0", "not answered by this replica (0a1b2c3d); answered by replica ffffffff"),
        ("0a1b2c3d-7-0", "no such prediction was made"),
        ("0a1b2c3d-0-1", "its request had 1 row(s)"),
    ],
    ids=["garbage", "number", "parts", "other-replica", "never-issued", "row-beyond"],
)
def test_an_id_never_issued_here_is_unknown_saying_why(prediction_id: str, message: str):
    window = PredictionWindow(REPLICA, 8, 60)
    window.add(1, [0])
    with pytest.raises(FeedbackRefused) as refused:
        window.find(prediction_id)
    assert (refused.value.status, refused.value.reason) == (404, "unknown_id")
    assert message in refused.value.message


def test_an_id_pushed_out_by_later_requests_is_too_late_not_unknown():
    window = PredictionWindow(REPLICA, 4, 60)
    [old] = added(window, 1, [0])
    for _ in range(4):
        window.add(1, [1])
    with pytest.raises(FeedbackRefused) as refused:
        window.find(old)
    assert (refused.value.status, refused.value.reason) == (410, "too_late")
    assert "the last 4 requests and 60 s; 4 requests since" in refused.value.message
    window.find(added(window, 1, [1])[0])  # a recent one is still found


def test_an_id_older_than_the_window_seconds_is_too_late():
    clock = Clock()
    window = PredictionWindow(REPLICA, 100, 60, clock)
    [answered] = added(window, 1, [0])
    clock.now += 60
    assert window.find(answered).row == 0  # exactly at the edge: still in
    clock.now += 1
    with pytest.raises(FeedbackRefused) as refused:
        window.find(answered)
    assert (refused.value.status, refused.value.reason) == (410, "too_late")
    assert "answered 61 s ago" in refused.value.message


def test_the_window_holds_at_most_its_capacity_of_requests():
    window = PredictionWindow(REPLICA, 3, 60)
    for number in range(10):
        window.add(1, [number])
    assert len(window.slots) == 3
    assert sorted(kept[0] for kept in window.slots if kept) == [7, 8, 9]


def test_kept_answers_leave_the_collector_after_one_collection():
    # A window holds 100,000 requests by default: kept as tracked objects they reached the
    # old generation and made every full collection walk them (a 0.2 s pause).
    window = PredictionWindow(REPLICA, 10, 60)
    for labels in ([3], [1, 2], [0.5]):
        window.add(1, labels)
    gc.collect()
    kept = [slot for slot in window.slots if slot is not None]
    assert len(kept) == 3 and not any(gc.is_tracked(slot) for slot in kept)
    assert window.find(f"{REPLICA}-1-1").prediction == 2


def test_feedback_marks_are_forgotten_once_their_requests_leave_the_window():
    window = PredictionWindow(REPLICA, 2, 60)
    window.mark(window.find(added(window, 1, [0])[0]))
    for _ in range(3):
        window.mark(window.find(added(window, 1, [0])[0]))
    assert sorted(window.labelled) == [2, 3]  # bounded like the window itself


# ---- bodies and labels -------------------------------------------------------------------


def test_one_feedback_and_a_batch_parse_to_id_label_pairs():
    assert parse_feedback(b'{"id": "a-1-0", "label": 3}', "application/json") == [("a-1-0", 3)]
    batch = b'{"feedback": [{"id": "a-1-0", "label": 3}, {"label": 2.5, "id": "b"}]}'
    assert parse_feedback(batch, "application/json; charset=utf-8") == [("a-1-0", 3), ("b", 2.5)]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b'{"id": "x", "label": 1', "application/json", 400, "malformed JSON"),
        (b'{"id": "x", "label": 1}', "text/plain", 415, "application/json"),
        (b"[1, 2]", "application/json", 422, "body must be a JSON object"),
        (b'{"label": 1}', "application/json", 422, "missing 'id'"),
        (b'{"id": "x"}', "application/json", 422, "missing 'label'"),
        (b'{"id": 7, "label": 1}', "application/json", 422, '"id" must be a string, got 7'),
        (b'{"id": "x", "label": 1, "weight": 2}', "application/json", 422, "['weight']"),
        (b'{"feedback": []}', "application/json", 422, "non-empty list"),
        (b'{"feedback": [{"id": "x"}], "id": "y"}', "application/json", 422, "comes alone"),
        (
            b'{"feedback": [{"id": "x", "label": 1}, 5]}',
            "application/json",
            422,
            "feedback[1]: an item must be an object",
        ),
        (
            orjson.dumps({"feedback": [{"id": "x", "label": 1}] * (MAX_ITEMS + 1)}),
            "application/json",
            413,
            f"{MAX_ITEMS}-item limit",
        ),
    ],
    ids=[
        "truncated",
        "content-type",
        "not-object",
        "no-id",
        "no-label",
        "id-number",
        "extra-field",
        "empty-batch",
        "mixed",
        "item-not-object",
        "too-many",
    ],
)
def test_a_malformed_body_is_refused_naming_the_problem(
    body: bytes, content_type: str, status: int, message: str
):
    with pytest.raises(FeedbackRefused) as refused:
        parse_feedback(body, content_type)
    assert (refused.value.status, refused.value.reason) == (status, "malformed")
    assert message in refused.value.message


@pytest.mark.parametrize(
    ("label", "task", "classes", "message"),
    [
        (3, "classification", 3, "label 3 is not a class of this model (0..2)"),
        (-1, "classification", 3, "label -1 is not a class of this model (0..2)"),
        (1.0, "classification", 3, "an integer 0..2 (this model is a classifier), got 1.0"),
        ("cat", "classification", 3, 'got "cat"'),
        (True, "classification", 3, "got true"),
        (None, "classification", 3, "got null"),
        (
            "2.5",
            "regression",
            None,
            'label must be a number (this model is a regressor), got "2.5"',
        ),
        (False, "regression", None, "got false"),
        ([1], "regression", None, "got [1]"),
    ],
)
def test_a_label_the_model_could_not_answer_is_refused(
    label: object, task: Any, classes: int | None, message: str
):
    with pytest.raises(FeedbackRefused) as refused:
        check_label(label, task, classes)
    assert (refused.value.status, refused.value.reason) == (422, "bad_label")
    assert message in refused.value.message


def test_good_labels_pass_as_the_model_answers_them():
    assert check_label(2, "classification", 3) == 2
    assert check_label(0, "classification", None) == 0
    assert check_label(3, "regression", None) == 3.0
    assert check_label(-2.5, "regression", None) == -2.5


def test_outcomes_and_the_rolling_live_window():
    assert outcome_of("classification", 2, 2) == ("correct", 1.0)
    assert outcome_of("classification", 2, 1) == ("wrong", 0.0)
    assert outcome_of("regression", 2.5, 4.0) == ("scored", 1.5)
    scores = LiveScores(3)
    for hit in (0, 1, 1, 1):
        scores.add(hit)
    assert (scores.rows, scores.mean) == (3, 1.0)  # the oldest (a miss) left the window
    scores.add(0)
    assert scores.mean == pytest.approx(2 / 3)


# ---- the route, in process ---------------------------------------------------------------


def feedback(app: GatewayApp, body: object, content_type: str | None = None):
    headers = {"content-type": content_type} if content_type else None
    return post(app, f"/v1/models/{MODEL}/feedback", body, headers)


def metrics_text(gateway: Gateway) -> str:
    return gateway.metrics.render().decode()


def served_text_model(tmp_path: Path, **config: Any) -> tuple[Gateway, GatewayApp, dict]:
    files: dict[str, bytes] = {}

    def prediction_log(model: str, features: list[str], task: Any, text: bool) -> PredictionLogger:
        return PredictionLogger(model, features, files.__setitem__, task=task, text=text)

    version = Version(tmp_path / "v1", ["good", "great", "bad", "awful", "film"], max_length=6)
    gateway, app = serving(
        tmp_path,
        {1: version},
        RolloutState(model=MODEL, stable_version=1),
        prediction_log=prediction_log,
        **config,
    )
    gateway.accuracy_gates[(MODEL, 1)] = 0.9
    return gateway, app, files


def test_predict_answers_carry_ids_and_feedback_is_joined_counted_and_logged(tmp_path: Path):
    async def scenario():
        gateway, app, files = served_text_model(tmp_path)
        gateway.loop = asyncio.get_running_loop()
        status, answer = await predict(app, {"instances": ["a good film", "awful film"]})
        assert status == 200 and answer["predictions"] == [1, 0], answer
        good, bad = answer["ids"]
        one = await feedback(app, {"id": good, "label": 1})
        batch = await feedback(app, {"feedback": [{"id": bad, "label": 1}]})
        gateway.logs[MODEL].flush()
        return gateway, one, batch, files, answer["ids"]

    gateway, one, batch, files, ids = run(scenario)
    assert one == (
        200,
        {
            "model": MODEL,
            "accepted": 1,
            "feedback": [
                {"id": ids[0], "version": 1, "prediction": 1, "label": 1, "correct": True}
            ],
        },
    )
    assert batch[1]["feedback"][0]["correct"] is False
    text = metrics_text(gateway)
    for line in [
        f'chassis_feedback_total{{model="{MODEL}",outcome="correct",version="1"}} 1.0',
        f'chassis_feedback_total{{model="{MODEL}",outcome="wrong",version="1"}} 1.0',
        f'chassis_live_accuracy_ratio{{model="{MODEL}",version="1"}} 0.5',
        f'chassis_live_feedback_rows{{model="{MODEL}",version="1"}} 2.0',
        f'chassis_accuracy_gate_ratio{{model="{MODEL}",version="1"}} 0.9',
    ]:
        assert line in text, line
    # The prediction log names each row's id; the feedback files join id, version,
    # prediction and label.
    [served] = [
        pd.read_parquet(io.BytesIO(v)) for k, v in files.items() if k.startswith(f"{MODEL}/date=")
    ]
    assert served["prediction_id"].tolist() == ids
    feedback_files = [k for k in files if k.startswith(f"{MODEL}/feedback/date=")]
    frame = pd.concat(pd.read_parquet(io.BytesIO(files[k])) for k in feedback_files)
    assert frame[["prediction_id", "model_version", "prediction", "label"]].values.tolist() == [
        [ids[0], 1, 1, 1],
        [ids[1], 1, 0, 1],
    ]


def test_a_batch_with_one_bad_item_is_refused_whole_and_nothing_counts(tmp_path: Path):
    async def scenario():
        gateway, app, _ = served_text_model(tmp_path)
        gateway.loop = asyncio.get_running_loop()
        _, answer = await predict(app, {"instances": ["good", "bad"]})
        good, other = answer["ids"]
        items = [{"id": good, "label": 1}, {"id": other, "label": 7}]
        refused = await feedback(app, {"feedback": items})
        again = await feedback(app, {"id": good, "label": 1})  # the good one was not kept
        duplicate = await feedback(app, {"id": good, "label": 0})
        twice = await feedback(app, {"feedback": [{"id": other, "label": 0}] * 2})
        return gateway, refused, again, duplicate, twice

    gateway, refused, again, duplicate, twice = run(scenario)
    assert refused == (
        422,
        {
            "error": "feedback[1]: label 7 is not a class of this model (0..1)",
            "status": 422,
            "reason": "bad_label",
            "index": 1,
        },
    )
    assert again[0] == 200
    assert duplicate[0] == 409 and duplicate[1]["reason"] == "duplicate", duplicate
    assert twice[0] == 409 and twice[1]["index"] == 1, twice
    text = metrics_text(gateway)
    assert f'chassis_feedback_total{{model="{MODEL}",outcome="correct",version="1"}} 1.0' in text
    assert 'outcome="wrong"' not in text  # neither refused body counted its items
    for reason in ("bad_label", "duplicate"):
        assert f'chassis_feedback_refused_total{{model="{MODEL}",reason="{reason}"}}' in text


def test_every_bad_feedback_class_gets_its_4xx_through_the_route(tmp_path: Path):
    async def scenario():
        gateway, app, _ = served_text_model(tmp_path, feedback_window_requests=2)
        gateway.loop = asyncio.get_running_loop()
        [old] = (await predict(app, {"instances": ["good"]}))[1]["ids"]
        for _ in range(2):
            await predict(app, {"instances": ["bad"]})
        return [
            await feedback(app, {"id": old, "label": 1}),
            await feedback(app, {"id": f"{gateway.replica}-99-0", "label": 1}),
            await feedback(app, {"id": "nope", "label": 1}),
            await feedback(app, b'{"id": "x", '),
            await feedback(app, {"id": "x", "label": 1}, "text/plain"),
            await post(app, "/v1/models/nobody/feedback", {"id": "x", "label": 1}),
        ]

    answers = run(scenario)
    assert [(status, body.get("reason")) for status, body in answers] == [
        (410, "too_late"),
        (404, "unknown_id"),
        (404, "unknown_id"),
        (400, "malformed"),
        (415, "malformed"),
        (404, None),
    ]
    assert "no model named 'nobody'" in answers[-1][1]["error"]
