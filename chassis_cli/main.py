"""`chassis`: run the release loop and its parts from a terminal."""

import argparse
import copy
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from chassis import __version__
from chassis.errors import ChassisError
from chassis_cli.argtypes import non_negative_int, positive_int, tolerance

if TYPE_CHECKING:
    from chassis.settings import ChassisSettings

EXIT_FAILURE = 1
EXIT_USAGE = 2


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


def add_training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spec",
        help="model spec as package.module:attribute (default: CHASSIS_DEFAULT_SPEC, "
        "chassis.specs.digits:spec)",
    )
    parser.add_argument("--epochs", type=positive_int, help="training epochs (default: the spec's)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="training seed")
    parser.add_argument(
        "--parity-tolerance",
        type=tolerance,
        help="max |torch - ONNX Runtime| allowed (default: CHASSIS_PARITY_TOLERANCE, 1e-4)",
    )


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

    release = commands.add_parser(
        "release",
        help="run the release loop (the main job) on a spec",
        description="Run the release flow: data suite, training, evaluation, ONNX export with "
        "parity check, MLflow logging and registration of a new version.",
    )
    add_training_options(release)
    release.add_argument(
        "--compression",
        choices=("on", "off"),
        default="on",
        help="on: release the best compressed candidate within tolerance; "
        "off: release the trained baseline",
    )
    release.add_argument(
        "--rollout",
        choices=("canary", "blue-green", "none"),
        default="canary",
        help="how a challenger reaches traffic when a champion exists",
    )
    release.set_defaults(handler=run_release)

    train = commands.add_parser(
        "train",
        help="run only the training slice and register a version",
        description="Run the train flow alone (what release does first).",
    )
    add_training_options(train)
    train.set_defaults(handler=run_train)

    specs = commands.add_parser(
        "specs",
        help="list the bundled model specs",
        description="List the specs that ship with Chassis and work offline.",
    )
    specs.set_defaults(handler=run_specs)

    versions = commands.add_parser(
        "versions",
        help="list registered versions of a model with their lineage tags",
        description="List a registered model's versions from the MLflow registry.",
    )
    versions.add_argument("--model", required=True, help="registered-model name, e.g. digits-mlp")
    versions.set_defaults(handler=run_versions)

    scaffold = commands.add_parser(
        "scaffold-suite",
        help="draft a Great Expectations suite from a spec's training data",
        description="Write a draft training-data suite (columns, dtypes, ranges, nulls, label "
        "set, row-count floor) for review; commit it under expectations/.",
    )
    scaffold.add_argument("--spec", required=True, help="model spec as package.module:attribute")
    scaffold.add_argument("--output", help="file to write (default: print to stdout)")
    scaffold.add_argument(
        "--kind",
        choices=("training", "serving"),
        default="training",
        help="training: the train split with labels; serving: feature batches",
    )
    scaffold.set_defaults(handler=run_scaffold)

    from chassis_cli.registry_commands import add_registry_parsers

    add_registry_parsers(commands, run_flow)

    from chassis_cli.serve import add_serve_parser
    from chassis_cli.webhook_relay import add_webhook_relay_parser

    add_serve_parser(commands)
    add_webhook_relay_parser(commands)

    from chassis_cli.rollout_commands import add_rollout_parsers

    add_rollout_parsers(commands, run_flow)

    from chassis_cli.compress import add_compress_parser

    add_compress_parser(commands)

    ui = commands.add_parser(
        "ui",
        help="start the Prefect UI and the MLflow UI on loopback",
        description="Serve the Prefect UI and the MLflow UI over Chassis's local state until "
        "Ctrl-C, so the runs and versions `chassis release` made are visible.",
    )
    ui.set_defaults(handler=run_ui)
    return parser


def prepare(settings: "ChassisSettings") -> None:
    """Quiet, offline environment and local state folders, before heavy imports."""
    from chassis.quiet import apply_quiet_environment

    settings.ensure_local_state()
    apply_quiet_environment(settings.prefect_home)
    use_running_prefect_server(settings)


def use_running_prefect_server(settings: "ChassisSettings") -> None:
    """If `chassis ui` is serving Prefect, report runs to it so they appear live."""
    if os.environ.get("PREFECT_API_URL"):
        return
    url = f"{settings.prefect_ui_url()}/api"
    # No server: Prefect starts its own temporary one on the same database.
    if prefect_answers(url, timeout=0.5):
        os.environ["PREFECT_API_URL"] = url


def prefect_answers(api_url: str, timeout: float) -> bool:
    """Whether a Prefect API answers its health check at `api_url`."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def load_settings() -> "ChassisSettings":
    from pydantic import ValidationError

    from chassis.errors import SettingsError
    from chassis.settings import ChassisSettings

    try:
        return ChassisSettings()
    except ValidationError as error:
        problems = "; ".join(
            f"CHASSIS_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from None


def training_arguments(args: argparse.Namespace, settings: "ChassisSettings") -> dict[str, object]:
    from chassis.modelspec import load_spec

    spec = args.spec or settings.default_spec
    load_spec(spec)  # fail in a second on a bad spec, before Prefect starts its server
    return {
        "spec": spec,
        "epochs": args.epochs,
        "seed": args.seed,
        "parity_tolerance": args.parity_tolerance,
    }


def run_release(args: argparse.Namespace) -> int:
    from chassis_cli.display import print_release, progress

    settings = load_settings()
    prepare(settings)
    arguments = {
        **training_arguments(args, settings),
        "compression": args.compression,
        "rollout_strategy": args.rollout,
    }
    with progress("release"):
        from flows.release import release

        outcome = release(**arguments)
    print_release(outcome, settings)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from chassis_cli.display import print_training, progress

    settings = load_settings()
    prepare(settings)
    arguments = training_arguments(args, settings)
    with progress("train"):
        from flows.training import train

        outcome = train(**arguments)
    print_training(outcome, settings)
    return 0


FLOWS = {
    "gates": "flows.promotion:gates",
    "promote": "flows.promotion:promote",
    "rollback": "flows.promotion:rollback",
    "retire": "flows.promotion:retire",
    "rollout": "flows.rollout:rollout",
    "drift_check": "flows.monitoring:drift_check",
}


def run_flow(name: str, parameters: dict[str, object]) -> object:
    """Prepare the environment, then run a flow by name with a progress display."""
    import importlib

    from chassis_cli.display import progress

    settings = load_settings()
    prepare(settings)
    module, _, attribute = FLOWS[name].partition(":")
    with progress(name):
        flow = getattr(importlib.import_module(module), attribute)
        return flow(**parameters)


def run_specs(args: argparse.Namespace) -> int:
    from chassis.specs import BUNDLED_SPECS

    for key, reference in BUNDLED_SPECS.items():
        print(f"{key:10} {reference}")
    return 0


def run_versions(args: argparse.Namespace) -> int:
    from chassis_cli.display import print_versions

    settings = load_settings()
    prepare(settings)
    from chassis import registry, tracking

    tracking.connect(settings)
    print_versions(args.model, registry.describe_versions(args.model))
    return 0


def run_scaffold(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from chassis.data import load_dataset
    from chassis.modelspec import load_spec
    from chassis.suite_scaffold import scaffold_serving_suite, scaffold_training_suite

    spec = load_spec(args.spec)
    scaffold = scaffold_training_suite if args.kind == "training" else scaffold_serving_suite
    document = scaffold(load_dataset(spec.load_data, spec.name), f"{spec.name}.{args.kind}")
    text = json.dumps(document, indent=2) + "\n"
    if args.output:
        output = Path(args.output)
        if output.exists():
            raise ChassisError(f"{output} exists; remove it or choose another --output")
        output.write_text(text)
        print(f"wrote {len(document['expectations'])} expectations to {output}")
    else:
        sys.stdout.write(text)
    return 0


def run_ui(args: argparse.Namespace) -> int:
    from chassis_cli.ui import serve_uis

    settings = load_settings()
    prepare(settings)
    return serve_uis(settings)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ChassisError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
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
