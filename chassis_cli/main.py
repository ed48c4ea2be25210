"""`chassis`: run the release loop and its parts from a terminal.

This module only assembles the command modules' parsers and turns what a handler raises into
one line and an exit code; each command's work is in its own module, given a `Context`.
"""

import argparse
import contextlib
import difflib
import sys
from collections.abc import Sequence

from chassis import __version__
from chassis.errors import ChassisError
from chassis_cli.cascade_command import add_cascade_parser
from chassis_cli.compress import add_compress_parser
from chassis_cli.context import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    Context,
    Handler,
    UsageError,
)
from chassis_cli.diagnose_command import add_diagnose_parser
from chassis_cli.parsing import ChassisArgumentParser
from chassis_cli.registry_commands import add_registry_parsers
from chassis_cli.release_commands import add_release_parsers
from chassis_cli.rollout_commands import add_rollout_parsers
from chassis_cli.sanitize_command import add_sanitize_parser
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
    add_diagnose_parser(commands)
    add_sanitize_parser(commands)
    add_compress_parser(commands)
    add_cascade_parser(commands)
    add_ui_parser(commands)
    for command in commands.choices.values():
        # A UsageError a handler raises is reported with its own command's usage line.
        command.set_defaults(command_parser=command)
    return parser


def unrecognized(command: argparse.ArgumentParser, unknown: Sequence[str]) -> str:
    """argparse's message, with the closest option the command has for each unknown one."""
    known = [o for action in command._actions for o in action.option_strings]
    guesses = {
        given: close[0]
        for given in unknown
        if given.startswith("-")
        and (close := difflib.get_close_matches(given.split("=")[0], known, n=1, cutoff=0.6))
    }
    if len(guesses) == 1:
        hint = f" (did you mean {next(iter(guesses.values()))}?)"
    elif guesses:
        hint = f" (did you mean {', '.join(f'{o} for {g}' for g, o in guesses.items())}?)"
    else:
        hint = ""
    return f"unrecognized arguments: {' '.join(unknown)}{hint}"


def main(argv: Sequence[str] | None = None, context: Context | None = None) -> int:
    parser = build_parser()
    # Left to argparse, an option the command does not know is refused with the top-level
    # usage ("chassis [-h] [--version] COMMAND ..."), which does not list it: refused here
    # with the command's own usage, and the option it was probably meant to be.
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command_parser: argparse.ArgumentParser = args.command_parser
        command_parser.error(unrecognized(command_parser, unknown))
    handler: Handler = args.handler
    context = context or Context()
    context.argv = list(argv) if argv is not None else sys.argv[1:]
    context.as_json = bool(getattr(args, "json", False))
    context.stdout = sys.stdout
    try:
        # With --json, stdout carries the one document (Context.show writes it to the
        # stdout kept above); whatever else is printed meanwhile goes to stderr.
        with (
            contextlib.redirect_stdout(sys.stderr) if context.as_json else contextlib.nullcontext()
        ):
            return handler(args, context)
    except UsageError as error:
        failed_command: argparse.ArgumentParser = args.command_parser
        failed_command.error(str(error))  # exits 2, like argparse's own refusals
    except ChassisError as error:
        return fail(context, str(error), error_kind(error), EXIT_FAILURE)
    except KeyboardInterrupt:
        return fail(context, "interrupted", "interrupted", EXIT_INTERRUPTED)
    except Exception as error:  # anything else is a Chassis bug; still one line, still non-zero
        cause = parameter_error(error)
        if cause is not None:
            return fail(context, cause, "invalid_parameter", EXIT_FAILURE)
        return fail(
            context, f"unexpected {type(error).__name__}: {error}", "unexpected", EXIT_FAILURE
        )


def fail(context: Context, message: str, kind: str, code: int) -> int:
    """The one `error:` line on stderr (`interrupted` as it is); with --json, also the
    error document on stdout, so a script always has one document to parse."""
    print(message if kind == "interrupted" else f"error: {message}", file=sys.stderr)
    if context.as_json:
        from chassis_cli.documents import ErrorDocument

        context.stdout.write(ErrorDocument(error=message, kind=kind).to_json())
    return code


def error_kind(error: Exception) -> str:
    """`PromotionConflict` -> `promotion_conflict`: what a script branches on."""
    import re

    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(error).__name__).lower()


def parameter_error(error: Exception) -> str | None:
    """Prefect's parameter validation errors, as one line."""
    if type(error).__name__ == "ParameterTypeError":
        return "invalid flow parameter: " + " ".join(str(error).split())
    return None


if __name__ == "__main__":
    sys.exit(main())
