"""Request bodies checked against the model's input signature before anything runs.

Every refusal is a `RequestError` with a 4xx status and a message naming the problem;
nothing here can raise anything else for bad input.
"""

import warnings
from dataclasses import dataclass
from typing import cast

import numpy as np
import orjson

from chassis.errors import RequestError, TextRefused

# A value beyond float32's range is refused by the finiteness check right after the cast, so
# numpy's overflow warning would only put noise in the gateway's log for a request already
# answered with a 422. A filter scoped to this module costs nothing per request, unlike an
# `np.errstate` block around each cast.
warnings.filterwarnings(
    "ignore", message="overflow encountered in cast", category=RuntimeWarning, module=__name__
)


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1 << 20
    max_rows: int = 1024


def parse_instances(
    body: bytes, content_type: str, n_features: int, limits: Limits, missing: bool = False
) -> np.ndarray:
    """`{"instances": [[f1, ..., fn], ...]}` -> float32 array of shape (rows, n_features).

    `missing`: a null value is taken as a missing one (NaN), for the model's sanitization
    to fill or refuse (serving/sanitizer.py); without it a null is refused here."""
    if (
        content_type != "application/json"
        and content_type.split(";")[0].strip().lower() != "application/json"
    ):
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
    values = _well_formed_rows(body, document, n_features, limits.max_rows)
    if values is not None:
        return values
    # Something is off: the strict checks below find what, and say it.
    if not isinstance(document, dict) or "instances" not in document:
        raise RequestError(422, 'body must be a JSON object with an "instances" list of rows')
    rows = cast(object, document["instances"])  # JSON, checked from here on
    if not isinstance(rows, list):
        raise RequestError(422, '"instances" must be a list of rows')
    rows = cast(list[object], rows)
    if not rows:
        raise RequestError(422, '"instances" is empty: send at least one row')
    if len(rows) > limits.max_rows:
        raise RequestError(413, f"{len(rows)} rows exceed the {limits.max_rows}-row limit")
    if any(isinstance(row, str) for row in rows):
        raise RequestError(
            422,
            f"this model reads rows of {n_features} numbers, not texts: send "
            '{"instances": [[f1, ..., fn], ...]}',
        )
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
    if missing and array.dtype.kind == "O" and array.ndim == 2:
        array = _with_missing(array)
    if array.dtype.kind not in "iuf":
        raise RequestError(
            422, "every feature value must be a number (no strings, booleans, nulls or lists)"
        )
    if array.ndim != 2:
        # Rows of n lists each (one level too deep) have the right length and numbers only,
        # so only the rank shows them: refused here, they never reach a batch they would fail.
        nested = next(
            i
            for i, row in enumerate(rows)
            if any(isinstance(v, list) for v in cast(list[object], row))
        )
        raise RequestError(
            422,
            f"row {nested} must be a flat list of {n_features} numbers, got nested lists "
            f"(the instances have {array.ndim} dimensions, not 2)",
        )
    # float32 is what the model takes; a value beyond its range becomes inf here and is
    # refused with the NaN/inf check, in one pass.
    values = array.astype(np.float32)
    # With `missing`, NaN can only be a null (JSON has no NaN): only infinity is refused.
    finite = ~np.isinf(values) if missing else np.isfinite(values)
    if not finite.all():
        bad_row = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise RequestError(422, f"row {bad_row} contains NaN, infinity or a value beyond float32")
    return values


def _with_missing(array: np.ndarray) -> np.ndarray:
    """Rows of numbers and nulls as float64 with NaN for each null; anything else (a
    string, a boolean, a list) is left as it is, for the caller's refusal to name."""
    flat = array.ravel()
    if not all(v is None or type(v) is int or type(v) is float for v in flat):
        return array
    try:
        values = np.array([np.nan if v is None else v for v in flat], dtype=np.float64)
    except OverflowError:  # an integer beyond float64: refused as beyond float32 would be
        return np.full(array.shape, np.inf)
    return values.reshape(array.shape)


def _well_formed_rows(
    body: bytes, document: object, n_features: int, max_rows: int
) -> np.ndarray | None:
    """The float32 rows of a body that needs no error message, in one numpy conversion;
    None for anything else (the strict checks then name the problem).

    The strict checks cost more than the model for a one-row request (numpy infers a dtype,
    then converts, then checks finiteness). Converting straight to float32 is safe when the
    document holds nothing but numbers and lists: numpy would turn "1.5" into a number and
    true into 1.0. The body proves it cheaply: exactly two quotes means the "instances" key
    is the only string, and every JSON literal (true, false, null) has a "u" or an "l",
    neither of which a number, the key or the structure can contain.
    """
    # find, not `in`: bytes.__contains__ first tries its argument as an int and builds a
    # TypeError it then throws away.
    if body.count(b'"') != 2 or body.find(b"u") >= 0 or body.find(b"l") >= 0:
        return None
    rows = cast(object, document.get("instances")) if isinstance(document, dict) else None

    if type(rows) is not list or not rows or len(rows) > max_rows:
        return None
    try:
        values = np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError):  # ragged rows, an empty object as a value
        return None
    if values.ndim != 2 or values.shape[1] != n_features:
        return None
    # JSON has no NaN or infinity: only a value beyond float32's range becomes inf here.
    # The flags as bytes, searched for a 0 (False): a third of `.all()`'s cost, which sets
    # up numpy's reduction machinery for 64 values.
    if np.isfinite(values).tobytes().find(0) >= 0:
        return None
    return values


def parse_texts(body: bytes, content_type: str, limits: Limits) -> list[str]:
    """`{"instances": ["a text", ...]}` -> the texts, each a string with something besides
    whitespace in it. How many tokens a text has depends on the version that reads it
    (a canary's two versions may tokenize differently), so its length is checked there."""
    document = _json_document(body, content_type, limits)
    texts = cast(object, document.get("instances")) if isinstance(document, dict) else None
    if texts is None:
        raise RequestError(422, 'body must be a JSON object with an "instances" list of texts')
    if not isinstance(texts, list):
        raise TextRefused("not_text", '"instances" must be a list of texts')
    texts = cast(list[object], texts)
    if not texts:
        raise RequestError(422, '"instances" is empty: send at least one text')
    if len(texts) > limits.max_rows:
        raise RequestError(413, f"{len(texts)} rows exceed the {limits.max_rows}-row limit")
    for index, text in enumerate(texts):
        if type(text) is not str:
            got = _json_kind(text)
            raise TextRefused(
                "not_text",
                f"row {index} must be a text (a JSON string): this model reads texts, "
                f'{{"instances": ["some text", ...]}}; got {got}',
            )
        if not text.strip():
            raise TextRefused("empty", f"row {index} is an empty text")
    return cast(list[str], texts)


def _json_document(body: bytes, content_type: str, limits: Limits) -> object:
    """The parsed body, after the content type and size checks every request has."""
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise RequestError(
            415, f"content type must be application/json, got {content_type or 'none'!r}"
        )
    if len(body) > limits.max_body_bytes:
        raise RequestError(
            413, f"body of {len(body)} bytes exceeds the {limits.max_body_bytes}-byte limit"
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RequestError(400, f"malformed JSON: {error}") from None


def _json_kind(value: object) -> str:
    """What a JSON value is, in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    return "an object"
