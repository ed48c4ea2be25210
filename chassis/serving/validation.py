"""Request bodies checked against the model's input signature before anything runs.

Every refusal is a `RequestError` with a 4xx status and a message naming the problem;
nothing here can raise anything else for bad input.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RequestError(Exception):
    status: int
    message: str


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1 << 20
    max_rows: int = 1024


def parse_instances(body: bytes, content_type: str, n_features: int, limits: Limits) -> np.ndarray:
    """`{"instances": [[f1, ..., fn], ...]}` -> float32 array of shape (rows, n_features)."""
    import orjson

    if not content_type.split(";")[0].strip().lower() == "application/json":
        raise RequestError(
            415, f"content type must be application/json, got {content_type or 'none'!r}"
        )
    if len(body) > limits.max_body_bytes:
        raise RequestError(
            413, f"body of {len(body)} bytes exceeds the {limits.max_body_bytes}-byte limit"
        )
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RequestError(400, f"malformed JSON: {error}") from None
    if not isinstance(document, dict) or "instances" not in document:
        raise RequestError(422, 'body must be a JSON object with an "instances" list of rows')
    rows = document["instances"]
    if not isinstance(rows, list):
        raise RequestError(422, '"instances" must be a list of rows')
    if not rows:
        raise RequestError(422, '"instances" is empty: send at least one row')
    if len(rows) > limits.max_rows:
        raise RequestError(413, f"{len(rows)} rows exceed the {limits.max_rows}-row limit")
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != n_features:
            size = len(row) if isinstance(row, list) else type(row).__name__
            raise RequestError(
                422, f"row {index} must be a list of {n_features} numbers, got {size}"
            )
    try:
        # No dtype here: numpy would quietly turn "1.5" or null into numbers.
        array = np.asarray(rows)
    except (TypeError, ValueError):
        raise RequestError(422, "rows must all be flat lists of numbers") from None
    if array.dtype.kind not in "iuf":
        raise RequestError(
            422, "every feature value must be a number (no strings, booleans, nulls or lists)"
        )
    # float32 is what the model takes; a value beyond its range becomes inf here and is
    # refused with the NaN/inf check, in one pass.
    values = array.astype(np.float32)
    finite = np.isfinite(values)
    if not finite.all():
        bad_row = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise RequestError(422, f"row {bad_row} contains NaN, infinity or a value beyond float32")
    return values
