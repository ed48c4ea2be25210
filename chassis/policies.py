"""What every policy model shares: user-given values in, a policy or one clear error out.

A policy (gates, rollout, compression, drift, serving) is one pydantic model: the flow takes
it as a parameter, prefect.yaml's parameters validate against it, and the CLI builds its
options from its fields (chassis_cli/policy_options.py). Library callers and the CLI turn
values into a policy here, so a bad value is a `ChassisError` naming each field, never a
raw pydantic `ValidationError`.
"""

from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from chassis.errors import ChassisError

Policy = TypeVar("Policy", bound=BaseModel)


def describe_problems(error: ValidationError) -> str:
    """`field: problem; field: problem`, as a user reads it."""
    return "; ".join(
        # Cross-field messages name their fields themselves; others get the field's name.
        (f"{'.'.join(str(p) for p in e['loc'])}: " if e["loc"] else "")
        + e["msg"].removeprefix("Value error, ")
        for e in error.errors()
    )


def validated(
    model: type[Policy], values: Mapping[str, object], error: type[ChassisError], what: str
) -> Policy:
    """`model` from `values`; unknown or out-of-range fields raise `error` naming each."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as problems:
        raise error(f"invalid {what}: {describe_problems(problems)}") from None
