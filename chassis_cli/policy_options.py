"""Command-line options generated from a policy model, so each setting is defined once.

Every field of the model becomes `--field-name` with the field's description and default
in its help. A value outside its field's range is refused as a bad argument (exit 2) with
the range in the message; only the options a user gives are passed on, and the model then
validates them together (so a cross-field problem is reported by the model's own check).
"""

import argparse
import math
import types
import typing
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel
from pydantic.fields import FieldInfo


def _base_type(annotation: Any) -> Any:
    """`float` from `Annotated[float, ...] | None`, `list[float]` as is."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _base_type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(kinds[0])
    return annotation


def _constraints(field: FieldInfo) -> list[Any]:
    """The field's bounds, also those inside `Annotated[float, Field(...)] | None`."""
    found = list(field.metadata)

    def walk(annotation: Any) -> None:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            for extra in typing.get_args(annotation)[1:]:
                found.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
            walk(typing.get_args(annotation)[0])
        elif origin in (typing.Union, types.UnionType):
            for member in typing.get_args(annotation):
                walk(member)

    walk(field.annotation)
    return found


def _shown_bound(value: float) -> str:
    return f"{value:g}"


def range_problem(value: float, constraints: list[Any]) -> str | None:
    """Why `value` is outside the range the constraints set, in words; None when inside."""
    lower = next((c for c in constraints if isinstance(c, Ge | Gt)), None)
    upper = next((c for c in constraints if isinstance(c, Le | Lt)), None)
    finite = any(getattr(c, "allow_inf_nan", True) is False for c in constraints)
    low = None if lower is None else float(getattr(lower, "ge", getattr(lower, "gt", 0)))
    high = None if upper is None else float(getattr(upper, "le", getattr(upper, "lt", 0)))
    inside = not math.isnan(value) and not (finite and math.isinf(value))
    if low is not None:
        inside = inside and (value >= low if isinstance(lower, Ge) else value > low)
    if high is not None:
        inside = inside and (value <= high if isinstance(upper, Le) else value < high)
    if inside:
        return None
    if low is not None and high is not None:
        left = "[" if isinstance(lower, Ge) else "("
        right = "]" if isinstance(upper, Le) else ")"
        return f"must be in {left}{_shown_bound(low)}, {_shown_bound(high)}{right}"
    if low is not None:
        op = ">=" if isinstance(lower, Ge) else ">"
        return f"must be {'a finite number ' if finite else ''}{op} {_shown_bound(low)}"
    if high is not None:
        op = "<=" if isinstance(upper, Le) else "<"
        return f"must be {'a finite number ' if finite else ''}{op} {_shown_bound(high)}"
    return "must be a finite number"


def _number(kind: type, constraints: list[Any]) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if isinstance(value, float) and math.isnan(value):
            raise argparse.ArgumentTypeError("expected a number, got NaN")
        problem = range_problem(value, constraints)
        if problem:
            raise argparse.ArgumentTypeError(f"{problem}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _float_list(constraints: list[Any]) -> Any:
    def parse(text: str) -> list[float]:
        try:
            values = [float(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected numbers separated by commas, like 10,25,50,100, got {text!r}"
            ) from None
        for value in values:
            problem = range_problem(value, constraints)
            if problem:
                raise argparse.ArgumentTypeError(f"each value {problem}, got {value:g}")
        return values

    return parse


def _mapping(value_kind: type) -> Any:
    def parse(text: str) -> dict[str, Any]:
        pairs: dict[str, Any] = {}
        for part in (p for p in text.split(",") if p.strip()):
            key, equals, value = part.partition("=")
            if not equals or not key.strip():
                raise argparse.ArgumentTypeError(
                    f"expected COLUMN=VALUE pairs separated by commas, got {text!r}"
                )
            try:
                pairs[key.strip()] = value_kind(value.strip())
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"{key.strip()}: expected a number, got {value.strip()!r}"
                ) from None
        return pairs

    return parse


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "none"
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _default_text(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    prefix = model.model_config.get("env_prefix")
    default = _shown(field.get_default(call_default_factory=True))
    if isinstance(prefix, str) and prefix:  # a settings model: the environment comes first
        return f"{prefix}{name}".upper() + f" or {default}"
    return default


def add_model_options(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    dest_prefix: str,
    aliases: dict[str, list[str]] | None = None,
) -> None:
    group = parser.add_argument_group(f"{model.__name__} (see docs/architecture.md)")
    for name, field in model.model_fields.items():
        flags = [f"--{name.replace('_', '-')}", *(aliases or {}).get(name, [])]
        kind = _base_type(field.annotation)
        description = (field.description or "").rstrip(".")
        # argparse formats help with %: a literal one (as in "1%") must be doubled.
        help_text = f"{description} (default: {_default_text(model, name, field)})".replace(
            "%", "%%"
        )
        dest = f"{dest_prefix}{name}"
        constraints = _constraints(field)
        origin = typing.get_origin(kind)
        if kind is bool:
            group.add_argument(
                *flags, dest=dest, action=argparse.BooleanOptionalAction, help=help_text
            )
        elif origin is Literal:
            choices = [str(c) for c in typing.get_args(kind)]
            group.add_argument(*flags, dest=dest, choices=choices, help=help_text)
        elif origin is list and typing.get_origin(_base_type(typing.get_args(kind)[0])) is Literal:
            choices = [str(c) for c in typing.get_args(_base_type(typing.get_args(kind)[0]))]
            group.add_argument(
                *flags, dest=dest, nargs="+", choices=choices, metavar="NAME", help=help_text
            )
        elif origin is list:
            item = typing.get_args(kind)[0]
            group.add_argument(
                *flags,
                dest=dest,
                type=_float_list(_constraints(FieldInfo.from_annotation(item))),
                metavar="P1,P2,...",
                help=help_text,
            )
        elif origin is dict:
            value_kind = _base_type(typing.get_args(kind)[1])
            group.add_argument(
                *flags,
                dest=dest,
                type=_mapping(value_kind),
                metavar="COLUMN=VALUE,...",
                help=help_text,
            )
        elif kind is str:
            group.add_argument(*flags, dest=dest, metavar=name.upper(), help=help_text)
        else:
            group.add_argument(
                *flags,
                dest=dest,
                type=_number(kind, constraints),
                metavar=name.upper(),
                help=help_text,
            )


def given_values(args: argparse.Namespace, dest_prefix: str) -> dict[str, Any]:
    """The options the user gave (unset options keep the model's defaults)."""
    return {
        key.removeprefix(dest_prefix): value
        for key, value in vars(args).items()
        if key.startswith(dest_prefix) and value is not None
    }
