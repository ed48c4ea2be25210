"""The admin API's request bodies, checked by schema before anything changes.

Strict types: `true` is not a number, `1.5` is not a version, a string is not a share. A
refusal is a 4xx naming the field, never a 500 with an exception's text.
"""

from typing import Annotated, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError

from chassis.errors import RequestError
from chassis.serving.state import Mode

# StrictFloat takes 10 as 10.0 but refuses true and "10".
Percent = Annotated[StrictFloat, Field(ge=0, le=100)]


class RolloutBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode = "canary"
    candidate_version: Annotated[StrictInt, Field(ge=1)] | None = None
    percent: Percent = 0.0
    mirror_percent: Percent = 0.0


class SwitchBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mirror_percent: Percent = 0.0


Body = TypeVar("Body", bound=BaseModel)


def parse_body(raw: bytes, schema: type[Body]) -> Body:
    """`raw` as `schema`; an empty body is the schema's defaults."""
    try:
        document: object = orjson.loads(raw) if raw.strip() else {}

    except orjson.JSONDecodeError as error:
        raise RequestError(400, f"malformed JSON: {error}") from None
    if not isinstance(document, dict):
        raise RequestError(422, f"body must be a JSON object, got {type(document).__name__}")
    try:
        return schema.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc']) or 'body'}: {issue['msg']}"
            f" (got {issue['input']!r})"
            for issue in error.errors(include_url=False)
        )
        raise RequestError(422, problems) from None
