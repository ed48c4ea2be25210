"""Command-line options generated from a settings model, so each threshold is defined once.

Every field of the model becomes `--field-name` with the field's description and default
in its help; only the options a user gives are passed on, and the model validates them
together (so a cross-field problem is reported like a single bad value).
"""

import argparse
import types
import typing
from typing import Any

from pydantic import BaseModel


def _float_list(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, like 10,25,50,100, got {text!r}"
        ) from None


def _number(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


def _base_type(annotation: Any) -> Any:
    """`float` from `Annotated[float, ...] | None`, `list[float]` as is."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _base_type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(kinds[0])
    return annotation


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(f"{v:g}" for v in value)
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


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
        help_text = f"{description} (default: {_shown(field.default)})"
        dest = f"{dest_prefix}{name}"
        if kind is bool:
            group.add_argument(
                *flags, dest=dest, action=argparse.BooleanOptionalAction, help=help_text
            )
        elif typing.get_origin(kind) is list:
            group.add_argument(
                *flags, dest=dest, type=_float_list, metavar="P1,P2,...", help=help_text
            )
        else:
            group.add_argument(
                *flags, dest=dest, type=_number(kind), metavar=name.upper(), help=help_text
            )


def given_values(args: argparse.Namespace, dest_prefix: str) -> dict[str, Any]:
    """The options the user gave (unset options keep the model's defaults)."""
    return {
        key.removeprefix(dest_prefix): value
        for key, value in vars(args).items()
        if key.startswith(dest_prefix) and value is not None
    }
