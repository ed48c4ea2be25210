"""The argument parser every `chassis` command is built with: each default shown in `--help`."""

import argparse
import copy
from typing import Any


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Every option's default shows in `--help`, as `(default: X)`.

    Like argparse.ArgumentDefaultsHelpFormatter, with two differences: an option without a
    help text still shows its default (argparse prints nothing for those), and a help text
    that already states its default in words, e.g. "(default: CHASSIS_GATEWAY_URL)", is left
    as written. Options whose default is None or False (flags) have no value to show.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not shows_default(action) or "(default" in text:
            return text
        return f"{text} (default: %(default)s)".strip()

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and shows_default(action):
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)


def shows_default(action: argparse.Action) -> bool:
    return (
        bool(action.option_strings)
        and action.help is not argparse.SUPPRESS
        and action.default is not argparse.SUPPRESS
        and action.default is not None
        and action.default is not False
    )


class ChassisArgumentParser(argparse.ArgumentParser):
    """`chassis` and each of its commands: every default shown in `--help`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """`--json` for a command that reads or decides: its result as one JSON document."""
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the result as one JSON document on stdout (fields: README, "
        "Machine-readable output); progress and logs go to stderr; on failure the document "
        'is {"error": ..., "kind": ...}',
    )
