"""`chassis release | train | import | specs | versions | scaffold-suite`: the release loop
on a spec, its training slice (or import), and what a user reads or drafts around it."""

import argparse
import sys
from typing import TYPE_CHECKING, Any, cast

from chassis.errors import ChassisError
from chassis.rollout.policy import RolloutPolicy, policy_from
from chassis_cli.argtypes import non_negative_int, positive_int, tolerance
from chassis_cli.context import Context
from chassis_cli.parsing import add_json_option
from chassis_cli.policy_options import add_model_options, given_values

if TYPE_CHECKING:
    from chassis.modelspec import ModelSpec
    from chassis.settings import ChassisSettings
    from flows.release import ReleaseOutcome
    from flows.training import TrainingOutcome

ROLLOUT_POLICY = "rollout_policy_"


def add_release_parsers(commands: Any) -> None:
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
    # The canary's thresholds, as `chassis rollout` takes them: a model whose answers take
    # tens of milliseconds (a transformer) needs its own latency budget, for one.
    add_model_options(
        release, RolloutPolicy, ROLLOUT_POLICY, aliases={"shadow_first": ["--shadow"]}
    )
    add_json_option(release)
    release.set_defaults(handler=run_release)

    train = commands.add_parser(
        "train",
        help="run only the training slice and register a version",
        description="Run the train flow alone (what release does first).",
    )
    add_training_options(train)
    add_json_option(train)
    train.set_defaults(handler=run_train)

    imported = commands.add_parser(
        "import",
        help="register a model trained elsewhere (a torch module or an ONNX file)",
        description="Run the import-model flow: check a model trained elsewhere against its "
        "spec's dataset and register it as a version, with no training. The spec gives "
        "load_model (returns a trained torch.nn.Module, kept with your preprocessing inside "
        "it) or onnx_file (an ONNX file, kept byte for byte), plus load_data. Then gate, "
        "compress and roll it out like any version (chassis gates / compress / rollout), or "
        "run chassis release with the same spec to do it all.",
    )
    imported.add_argument(
        "--spec",
        required=True,
        help="the import spec as package.module:attribute (see README: Bring your own model)",
    )
    imported.add_argument(
        "--parity-tolerance",
        type=tolerance,
        help="max |torch - ONNX Runtime| allowed for a torch module (default: "
        "CHASSIS_PARITY_TOLERANCE, 1e-4)",
    )
    add_json_option(imported)
    imported.set_defaults(handler=run_import)

    specs = commands.add_parser(
        "specs",
        help="list the bundled model specs",
        description="List the specs that ship with Chassis and work offline.",
    )
    add_json_option(specs)
    specs.set_defaults(handler=run_specs)

    versions = commands.add_parser(
        "versions",
        help="list registered versions of a model with their lineage tags",
        description="List a registered model's versions from the MLflow registry.",
    )
    versions.add_argument("--model", required=True, help="registered-model name, e.g. digits-mlp")
    add_json_option(versions)
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


def training_arguments(args: argparse.Namespace, settings: "ChassisSettings") -> dict[str, Any]:
    spec = args.spec or settings.default_spec
    checked_spec(spec)  # fail in a second on a bad spec, before Prefect starts its server
    return {
        "spec": spec,
        "epochs": args.epochs,
        "seed": args.seed,
        "parity_tolerance": args.parity_tolerance,
    }


def checked_spec(reference: str) -> "ModelSpec":
    """The spec, imported, and its ONNX file and tokenizer checked when it names them: what
    fails without loading data fails before Prefect starts its server."""
    from chassis.modelspec import load_spec

    spec = load_spec(reference)
    if spec.form == "onnx":
        from chassis.model_import import checked_onnx_file

        checked_onnx_file(spec)
    if spec.text_input is not None:
        from chassis.errors import SpecError

        try:
            spec.text_input.encoder()  # the tokenizer file exists and is a tokenizer
        except SpecError as error:
            raise SpecError(f"spec {reference!r}: {error}") from None
    return spec


def run_release(args: argparse.Namespace, context: Context) -> int:
    from chassis_cli.display import print_release, progress
    from chassis_cli.documents import ReleaseDocument
    from chassis_cli.flow_console import failures_reported_by_the_cli

    settings = context.prepare()
    given = given_values(args, ROLLOUT_POLICY)
    arguments = {
        **training_arguments(args, settings),
        "compression": args.compression,
        "rollout_strategy": args.rollout,
        # Only what the user gave: the flow's own default policy otherwise.
        "rollout_policy": policy_from(given) if given else None,
    }
    with failures_reported_by_the_cli(), progress("release"):
        from flows.release import release

        outcome = release(**arguments)
    # `**arguments` could hold return_state, as far as the checker knows: it holds none.
    document = ReleaseDocument.of(cast("ReleaseOutcome", outcome))
    context.show(document, lambda: print_release(document, settings))
    return 0


def run_train(args: argparse.Namespace, context: Context) -> int:
    from chassis_cli.display import print_training, progress
    from chassis_cli.documents import TrainingDocument
    from chassis_cli.flow_console import failures_reported_by_the_cli

    settings = context.prepare()
    arguments = training_arguments(args, settings)
    with failures_reported_by_the_cli(), progress("train"):
        from flows.training import train

        outcome = train(**arguments)
    document = TrainingDocument.of(cast("TrainingOutcome", outcome))
    context.show(document, lambda: print_training(document, settings))
    return 0


def run_import(args: argparse.Namespace, context: Context) -> int:
    from chassis.errors import SpecError
    from chassis.modelspec import MODEL_FORMS
    from chassis_cli.display import print_training, progress
    from chassis_cli.documents import TrainingDocument
    from chassis_cli.flow_console import failures_reported_by_the_cli

    settings = context.prepare()
    spec = checked_spec(args.spec)  # fail in a second on a bad spec, before Prefect starts
    if spec.form == "train":
        raise SpecError(
            f"spec {args.spec} gives {MODEL_FORMS['train']}: it trains its model; use chassis "
            f"train or release, or give {MODEL_FORMS['torch']} or {MODEL_FORMS['onnx']}"
        )
    with failures_reported_by_the_cli(), progress("import"):
        from flows.training import import_model

        outcome = import_model(spec=args.spec, parity_tolerance=args.parity_tolerance)
    document = TrainingDocument.of(outcome)
    context.show(document, lambda: print_training(document, settings))
    return 0


def run_specs(args: argparse.Namespace, context: Context) -> int:
    from chassis.specs import BUNDLED_SPECS
    from chassis_cli.documents import SpecEntry, SpecsDocument

    document = SpecsDocument(
        specs=[SpecEntry(key=key, reference=ref) for key, ref in BUNDLED_SPECS.items()]
    )

    def human() -> None:
        for spec in document.specs:
            print(f"{spec.key:12} {spec.reference}")

    context.show(document, human)
    return 0


def run_versions(args: argparse.Namespace, context: Context) -> int:
    from chassis_cli.display import print_versions
    from chassis_cli.documents import VersionsDocument

    settings = context.prepare()
    from chassis.registry import Registry

    registry = Registry.from_settings(settings)
    document = VersionsDocument.of(args.model, registry.describe_versions(args.model))
    context.show(document, lambda: print_versions(document))
    return 0


def run_scaffold(args: argparse.Namespace, context: Context) -> int:
    import json
    from pathlib import Path

    output = Path(args.output) if args.output else None
    if output is not None and output.exists():  # said before seconds of loading the data
        raise ChassisError(f"{output} exists; remove it or choose another --output")

    from chassis.data import load_dataset
    from chassis.modelspec import load_spec
    from chassis.suite_scaffold import scaffold_serving_suite, scaffold_training_suite

    spec = load_spec(args.spec)
    dataset = load_dataset(spec.load_data, spec.name, spec.task, spec.text_input)
    if args.kind == "training":
        document = scaffold_training_suite(dataset, f"{spec.name}.training", spec.task)
    else:
        document = scaffold_serving_suite(dataset, f"{spec.name}.serving")
    text = json.dumps(document, indent=2) + "\n"
    if output is not None:
        output.write_text(text)
        print(f"wrote {len(document['expectations'])} expectations to {output}")
    else:
        sys.stdout.write(text)
    return 0
