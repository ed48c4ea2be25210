"""`chassis`: run the release loop and its parts from a terminal.

This module only assembles the command modules' parsers and turns what a handler raises into
one line and an exit code; each command's work is in its own module, given a `Context`.
"""

import argparse
import sys
from collections.abc import Sequence

from chassis import __version__
from chassis.errors import ChassisError
from chassis_cli.compress import add_compress_parser
from chassis_cli.context import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    Context,
    Handler,
    UsageError,
)
from chassis_cli.parsing import ChassisArgumentParser
from chassis_cli.registry_commands import add_registry_parsers
from chassis_cli.release_commands import add_release_parsers
from chassis_cli.rollout_commands import add_rollout_parsers
from chassis_cli.serve import add_serve_parser
from chassis_cli.ui import add_ui_parser
from chassis_cli.webhook_relay import add_webhook_relay_parser


def build_parser() -> argparse.ArgumentParser:
    parser = ChassisArgumentParser(
        prog="chassis",
        description="Take a trained PyTorch model to production safely: validated data, "
        "ONNX export with parity checks, MLflow registration with lineage, as Prefect flows.",
        epilog="Settings come from CHASSIS_* environment variables; state lives in ./.chassis "
        "by default. Run `chassis COMMAND --help` for each command's options.",
    )
    parser.add_argument("--version", action="version", version=f"chassis {__version__}")
    # Subparsers are created with the parser's own class, so every command shows its defaults.
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_release_parsers(commands)
    add_registry_parsers(commands)
    add_serve_parser(commands)
    add_webhook_relay_parser(commands)
    add_rollout_parsers(commands)
    add_compress_parser(commands)
    add_ui_parser(commands)
    for command in commands.choices.values():
        # A UsageError a handler raises is reported with its own command's usage line.
        command.set_defaults(command_parser=command)
    return parser


def main(argv: Sequence[str] | None = None, context: Context | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args, context or Context())
    except UsageError as error:
        command_parser: argparse.ArgumentParser = args.command_parser
        command_parser.error(str(error))  # exits 2, like argparse's own refusals
    except ChassisError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # anything else is a Chassis bug; still one line, still non-zero
        cause = parameter_error(error) or f"unexpected {type(error).__name__}: {error}"
        print(f"error: {cause}", file=sys.stderr)
        return EXIT_FAILURE


def parameter_error(error: Exception) -> str | None:
    """Prefect's parameter validation errors, as one line."""
    if type(error).__name__ == "ParameterTypeError":
        return "invalid flow parameter: " + " ".join(str(error).split())
    return None


if __name__ == "__main__":
    sys.exit(main())
