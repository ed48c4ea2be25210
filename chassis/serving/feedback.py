"""Ground truth: prediction ids, the window of recent predictions, and feedback on them.

Every row a gateway answers gets an id, `<replica>-<request>-<row>`: the replica's random
8-hex tag (new at every start), the model's request number on that replica and the
row's index in the request. The id names where its prediction is kept, so joining feedback
needs no search: the request number is a slot in a ring of the last `window_requests`
requests of the model, checked against the number stored there (a slot that holds a later
request means the prediction has left the window). The request path pays one list write and
one string per row; nothing is hashed, signed or copied.

Feedback is judged here, whole or not at all: a body with one bad item is refused and
nothing of it counts. Each refusal is a `FeedbackRefused` with its HTTP status and a
`reason` (the label of chassis_feedback_refused_total): `malformed` (400/422: not the body's
shape), `unknown_id` (404: never issued here), `too_late` (410: issued here, but out of the
window), `duplicate` (409: this prediction has feedback already), `bad_label` (422: not a
label the model could answer).
"""

import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, cast

import orjson

from chassis.errors import FeedbackRefused
from chassis.task import REGRESSION, Task

# What one piece of feedback counts as: a classifier's answer was right or wrong; a
# regressor's is scored by its absolute error.
Outcome = Literal["correct", "wrong", "scored"]
# Items in one batch body: as many as a predict request has rows, by default.
MAX_ITEMS = 1024


def refusal_body(refused: FeedbackRefused) -> bytes:
    """A refusal's JSON: the usual error and status, with the reason and the item."""
    return orjson.dumps(
        {
            "error": refused.message,
            "status": refused.status,
            "reason": refused.reason,
            "index": refused.index,
        }
    )


def replica_tag() -> str:
    """A replica's part of its ids: 32 random bits, new at every start, so ids of two
    replicas (or of one replica before and after a restart) never collide."""
    return os.urandom(4).hex()


# One request's answers as a slot keeps them: (number, version, time, *answers). A plain
# tuple: building it costs a fifth of an object with __init__, on every request; a flat one
# of atoms: the collector untracks it at the first collection it survives (a list, or a
# nested tuple, kept it tracked for longer: 100,000 requests' worth reached the old
# generation, and each full collection walked them, a 0.2 s pause every ~30,000 requests).
Slot = tuple[int | float, ...]
SLOT_ANSWERS = 3  # where a slot's answers start


class Found(NamedTuple):
    """The prediction an id names (built on the feedback path only)."""

    number: int
    row: int
    version: int
    prediction: int | float
    at: float


@dataclass(frozen=True)
class Joined:
    """A piece of feedback joined with the prediction it is about."""

    prediction_id: str
    version: int
    prediction: int | float
    label: int | float
    served_at: float  # when it was answered (the window's clock: Unix time)
    row: int


class PredictionWindow:
    """The recent predictions of one model on this replica, by id (see the module doc)."""

    def __init__(
        self,
        replica: str,
        capacity: int,
        seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if capacity < 1 or seconds <= 0:
            raise ValueError("a prediction window needs capacity >= 1 and seconds > 0")
        self.replica = replica
        self.prefix = f"{replica}-"
        self.prefix_bytes = self.prefix.encode()
        self.capacity = capacity
        self.seconds = seconds
        self.clock = clock
        self.slots: list[Slot | None] = [None] * capacity
        self.next = 0  # the number the next request gets
        # Rows with feedback already, by request number (kept for requests in the window).
        self.labelled: dict[int, set[int]] = {}

    def add(self, version: int, predictions: list[int] | list[float]) -> int:
        """Keep one request's answers; the request's number (its rows' ids: `ids`,
        `ids_json`). The hot path: no string is made here."""
        number = self.next
        self.next = number + 1
        self.slots[number % self.capacity] = (number, version, self.clock(), *predictions)
        return number

    def ids(self, number: int, rows: int) -> list[str]:
        """The ids of request `number`'s rows, in order."""
        base = f"{self.prefix}{number}-"
        return [base + str(row) for row in range(rows)]

    def ids_json(self, number: int, rows: int) -> bytes:
        """`ids` as a JSON array, for the answer's bytes (a one-row request's without a
        list or a JSON encoder: a third of the cost)."""
        if rows == 1:
            return b'["%s%d-0"]' % (self.prefix_bytes, number)
        return orjson.dumps(self.ids(number, rows))

    def has_feedback(self, found: Found) -> bool:
        rows = self.labelled.get(found.number)
        return rows is not None and found.row in rows

    def mark(self, found: Found) -> None:
        """`found` has its feedback: a second one is a duplicate."""
        self.labelled.setdefault(found.number, set()).add(found.row)
        if len(self.labelled) > self.capacity:  # forget the requests that left the window
            oldest = self.next - self.capacity
            for number in [n for n in self.labelled if n < oldest]:
                del self.labelled[number]

    def _window_text(self) -> str:
        return f"the last {self.capacity} requests and {self.seconds:g} s"

    def find(self, prediction_id: str) -> Found:
        """The request that answered `prediction_id` and the row; refused (unknown_id,
        too_late) naming why."""
        parsed = parse_id(prediction_id)
        if parsed is None:
            raise FeedbackRefused(
                404,
                "unknown_id",
                f"unknown id {prediction_id!r}: not a prediction id "
                "(ids look like '3f9a1c2e-436-0', as predict answers give them)",
            )
        replica, number, row = parsed
        if replica != self.replica:
            raise FeedbackRefused(
                404,
                "unknown_id",
                f"unknown id {prediction_id!r}: not answered by this replica ({self.replica}); "
                f"answered by replica {replica}, or before this gateway restarted",
            )
        if number >= self.next:
            raise FeedbackRefused(
                404, "unknown_id", f"unknown id {prediction_id!r}: no such prediction was made"
            )
        kept = self.slots[number % self.capacity]
        if kept is None or kept[0] != number:
            raise FeedbackRefused(
                410,
                "too_late",
                f"too late for id {prediction_id!r}: its prediction left the feedback window "
                f"({self._window_text()}; {self.next - 1 - number} requests since)",
            )
        version, at, rows = int(kept[1]), kept[2], len(kept) - SLOT_ANSWERS
        age = self.clock() - at
        if age > self.seconds:
            raise FeedbackRefused(
                410,
                "too_late",
                f"too late for id {prediction_id!r}: answered {age:.0f} s ago, the feedback "
                f"window keeps {self._window_text()}",
            )
        if row >= rows:
            raise FeedbackRefused(
                404, "unknown_id", f"unknown id {prediction_id!r}: its request had {rows} row(s)"
            )
        return Found(number, row, version, kept[SLOT_ANSWERS + row], at)


def parse_id(prediction_id: str) -> tuple[str, int, int] | None:
    """(replica tag, request number, row) of a well-formed id; None for anything else."""
    parts = prediction_id.split("-")
    if len(parts) != 3:
        return None
    replica, number_text, row_text = parts
    if not (
        f"{number_text}{row_text}".isascii()
        and number_text.isdecimal()
        and row_text.isdecimal()
        and len(replica) == 8
    ):
        return None
    return replica, int(number_text), int(row_text)


def answer_item(item: Joined) -> dict[str, object]:
    """One accepted item as the feedback answer shows it."""
    return {
        "id": item.prediction_id,
        "version": item.version,
        "prediction": item.prediction,
        "label": item.label,
        **(
            {"absolute_error": abs(float(item.prediction) - float(item.label))}
            if isinstance(item.label, float)
            else {"correct": item.prediction == item.label}
        ),
    }


def check_label(label: object, task: Task, classes: int | None) -> int | float:
    """A label the model could have answered: a classifier's class (an integer in
    0..classes-1), a regressor's finite number. Raises FeedbackRefused (bad_label)."""
    if task == REGRESSION:
        if isinstance(label, bool) or not isinstance(label, int | float):
            raise FeedbackRefused(
                422,
                "bad_label",
                f"label must be a number (this model is a regressor), got {_shown(label)}",
            )
        value = float(label)
        if not math.isfinite(value):
            raise FeedbackRefused(422, "bad_label", f"label must be finite, got {label}")
        return value
    span = f"0..{classes - 1}" if classes else "0 or more"
    if isinstance(label, bool) or not isinstance(label, int):
        raise FeedbackRefused(
            422,
            "bad_label",
            f"label must be a class, an integer {span} (this model is a classifier), "
            f"got {_shown(label)}",
        )
    if label < 0 or (classes is not None and label >= classes):
        raise FeedbackRefused(
            422, "bad_label", f"label {label} is not a class of this model ({span})"
        )
    return label


def _shown(value: object) -> str:
    text = orjson.dumps(value).decode() if _is_json(value) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_json(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict)


def parse_feedback(body: bytes, content_type: str) -> list[tuple[str, object]]:
    """`{"id": ..., "label": ...}` or `{"feedback": [{"id": ..., "label": ...}, ...]}` ->
    (id, label) pairs, in order. Labels are checked against the model later (check_label)."""
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise FeedbackRefused(
            415,
            "malformed",
            f"content type must be application/json, got {content_type or 'none'!r}",
        )
    try:
        document = cast(object, orjson.loads(body))
    except orjson.JSONDecodeError as error:
        raise FeedbackRefused(400, "malformed", f"malformed JSON: {error}") from None
    shape = (
        'send {"id": "<prediction id>", "label": <label>} or {"feedback": [{"id", "label"}, ...]}'
    )
    if not isinstance(document, dict):
        raise FeedbackRefused(422, "malformed", f"body must be a JSON object: {shape}")
    document = cast(dict[str, object], document)
    if "feedback" in document:
        items = document["feedback"]
        if set(document) != {"feedback"}:
            raise FeedbackRefused(422, "malformed", f'"feedback" comes alone: {shape}')
        if not isinstance(items, list) or not items:
            raise FeedbackRefused(422, "malformed", f'"feedback" must be a non-empty list: {shape}')
        items = cast(list[object], items)
        if len(items) > MAX_ITEMS:
            raise FeedbackRefused(
                413, "malformed", f"{len(items)} items exceed the {MAX_ITEMS}-item limit"
            )
        return [_item(item, shape, index) for index, item in enumerate(items)]
    return [_item(document, shape, None)]


def _item(item: object, shape: str, index: int | None) -> tuple[str, object]:
    if not isinstance(item, dict):
        raise FeedbackRefused(422, "malformed", f"an item must be an object: {shape}", index)
    item = cast(dict[str, object], item)
    missing = [key for key in ("id", "label") if key not in item]
    if missing:
        raise FeedbackRefused(
            422, "malformed", f"missing {' and '.join(repr(m) for m in missing)}: {shape}", index
        )
    extra = sorted(set(item) - {"id", "label"})
    if extra:
        raise FeedbackRefused(422, "malformed", f"unknown field(s) {extra}: {shape}", index)
    prediction_id = item["id"]
    if not isinstance(prediction_id, str):
        raise FeedbackRefused(
            422, "malformed", f'"id" must be a string, got {_shown(prediction_id)}', index
        )
    return prediction_id, item["label"]


@dataclass
class LiveScores:
    """The last `size` feedback rows of one version: a classifier's hits (1 right, 0
    wrong), a regressor's absolute errors; their running sum, for the gauges."""

    size: int
    values: deque[float] = field(default_factory=deque[float])
    total: float = 0.0

    def add(self, value: float) -> None:
        if len(self.values) == self.size:
            self.total -= self.values.popleft()
        self.values.append(value)
        self.total += value

    @property
    def rows(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return self.total / len(self.values) if self.values else math.nan


def outcome_of(task: Task, prediction: int | float, label: int | float) -> tuple[Outcome, float]:
    """What one joined feedback counts as, and its score: 1/0 for a classifier's right or
    wrong answer, the absolute error of a regressor's."""
    if task == REGRESSION:
        return "scored", abs(float(prediction) - float(label))
    return ("correct", 1.0) if prediction == label else ("wrong", 0.0)
