"""`chassis cascade`: a cascade of two registered versions of a model, registered as
a new version (the small tier's bytes plus the cascade tag), gated like any other."""

import argparse
from typing import Any

from chassis.cascade.threshold import DEFAULT_MAX_ACCURACY_LOSS_PP
from chassis_cli.compress import wholenumber
from chassis_cli.context import Context
from chassis_cli.documents import Document
from chassis_cli.parsing import add_json_option


class CascadeDocument(Document):
    model: str
    version: int
    small_version: int
    full_version: int
    temperature: float
    threshold: float
    ece_before: float
    ece_after: float
    validation_escalation_share: float
    validation_accuracy_loss_pp: float
    validation_rows: int
    target: str


def add_cascade_parser(commands: Any) -> None:
    build = commands.add_parser(
        "cascade",
        help="build a calibrated cascade of a small and a full version, register it",
        description="Serve a model as a cascade: the small version answers a row when its "
        "calibrated confidence reaches the threshold, the full version answers the rest. "
        "This fits temperature scaling on the small tier's validation logits, chooses the "
        "lowest threshold meeting the target, and registers the cascade as a new version of "
        "the model (the small tier's ONNX plus the chassis.cascade tag). The new version has "
        "no gate verdict yet: run `chassis gates` on it, like any version.",
    )
    build.add_argument("--model", required=True, help="registered-model name, e.g. digits-mlp")
    build.add_argument("--small", required=True, type=wholenumber(1), help="small tier version")
    build.add_argument("--full", required=True, type=wholenumber(1), help="full tier version")
    target = build.add_mutually_exclusive_group()
    target.add_argument(
        "--max-accuracy-loss-pp",
        type=float,
        default=None,
        help="largest validation accuracy loss vs the full tier, in percentage points "
        f"(default {DEFAULT_MAX_ACCURACY_LOSS_PP})",
    )
    target.add_argument(
        "--max-escalation-share",
        type=float,
        default=None,
        help="largest share of validation rows sent to the full tier, in [0, 1]",
    )
    target.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="use this calibrated-confidence threshold, in (0, 1], instead of choosing one",
    )
    add_json_option(build)
    build.set_defaults(handler=run_build)


def run_build(args: argparse.Namespace, context: Context) -> int:
    import tempfile
    from pathlib import Path

    from chassis.cascade.registration import build_cascade
    from chassis.cascade.threshold import Target, check_threshold
    from chassis.registry import Registry

    if args.threshold is not None:
        check_threshold(args.threshold)  # refused before anything is downloaded
    target = Target(
        max_accuracy_loss_pp=(
            DEFAULT_MAX_ACCURACY_LOSS_PP
            if args.max_accuracy_loss_pp is None and args.max_escalation_share is None
            else args.max_accuracy_loss_pp
        ),
        max_escalation_share=args.max_escalation_share,
    )
    settings = context.prepare()
    registry = Registry.from_settings(settings)
    with tempfile.TemporaryDirectory(prefix="chassis-cascade-") as workdir:
        built = build_cascade(
            registry, args.model, args.small, args.full, target, Path(workdir), args.threshold
        )
    spec = built.spec
    document = CascadeDocument(
        model=args.model,
        version=built.registered.version,
        small_version=args.small,
        full_version=spec.full_version,
        temperature=spec.temperature,
        threshold=spec.threshold,
        ece_before=spec.ece_before,
        ece_after=spec.ece_after,
        validation_escalation_share=spec.validation_escalation_share,
        validation_accuracy_loss_pp=spec.validation_accuracy_loss_pp,
        validation_rows=built.validation_rows,
        target=spec.target,
    )
    context.show(document, lambda: print_cascade(document))
    return 0


def print_cascade(document: CascadeDocument) -> None:
    print(
        f"registered {document.model} v{document.version}: cascade of v{document.small_version}"
        f" (small) and v{document.full_version} (full), {document.target}\n"
        f"  temperature {document.temperature:.4f}; expected calibration error (15 bins) "
        f"{document.ece_before:.4f} before, {document.ece_after:.4f} after\n"
        f"  threshold {document.threshold:.4f}: on {document.validation_rows} validation rows, "
        f"{document.validation_escalation_share:.1%} escalated, accuracy "
        f"{-document.validation_accuracy_loss_pp:+.2f} pp vs the full tier\n"
        f"  not gated yet: chassis gates --model {document.model} --version {document.version}"
    )
