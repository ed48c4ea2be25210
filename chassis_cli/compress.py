"""`chassis compress`: the compression flow on an already registered version."""

import argparse
from typing import TYPE_CHECKING, Any

from chassis.compression.policy import CompressionPolicy, compression_policy_from
from chassis_cli.context import Context
from chassis_cli.parsing import add_json_option
from chassis_cli.policy_options import add_model_options, given_values

if TYPE_CHECKING:
    from chassis_cli.documents import CompressionDocument

POLICY = "policy_"


def wholenumber(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def add_compress_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "compress",
        help="make int8, pruned and distilled candidates of a version; register the best",
        description="Build compression candidates of a registered version (ONNX Runtime "
        "dynamic and static int8, structured pruning, distillation into the spec's student, "
        "and their int8 combinations), measure each as ONNX on the test split, and register "
        "the best one whose accuracy (a regressor: RMSE) stays within the tolerance. If "
        "none does, the version stays selected and nothing is registered.",
    )
    parser.add_argument("--model", required=True, help="registered-model name, e.g. digits-mlp")
    parser.add_argument("--version", required=True, type=wholenumber(1), help="version to compress")
    add_model_options(parser, CompressionPolicy, POLICY)
    add_json_option(parser)
    parser.set_defaults(handler=run_compress)


def run_compress(args: argparse.Namespace, context: Context) -> int:
    from chassis_cli.display import progress
    from chassis_cli.documents import CompressionDocument
    from chassis_cli.flow_console import failures_reported_by_the_cli

    policy = compression_policy_from(given_values(args, POLICY))  # fails before any run
    context.require_registered(args.model, args.version)
    with failures_reported_by_the_cli(), progress("compress"):
        from flows.compression import compress

        outcome = compress(model_name=args.model, version=args.version, policy=policy)
    document = CompressionDocument.of(outcome)
    context.show(document, lambda: print_compression(document))
    return 0


def print_compression(document: "CompressionDocument") -> None:
    from rich.table import Table

    from chassis.evaluation import METRIC_LABELS
    from chassis_cli.display import number, out

    table = Table(title=f"{document.model} v{document.parent_version}: compression")
    # The task's primary metric: accuracy for a classifier, RMSE for a regressor.
    first = document.candidates[0].quality if document.candidates else {}
    metric = next((m for m in ("accuracy", "rmse") if m in first), "accuracy")
    table.add_column("candidate", overflow="fold")
    for column in ("passed", METRIC_LABELS[metric], "b1 p50 ms", "size bytes", "score"):
        table.add_column(column, justify="right", no_wrap=True)
    for candidate in document.candidates:
        table.add_row(
            candidate.name + (" *" if candidate.selected else ""),
            "yes" if candidate.passed else "no",
            number(candidate.quality.get(metric), ".4f"),
            number(candidate.latency_ms.get("b1_p50"), ".4f"),
            f"{candidate.size_bytes:,}",
            number(candidate.score, ".3f"),
        )
    out.print(table)
    out.print(document.explanation, soft_wrap=True)
    if document.registered:
        out.print(f"registered {document.model} version {document.version}")
        if document.identical_to is not None:
            out.print(
                f"note: the same ONNX bytes as v{document.identical_to} (registered anyway; "
                "tagged chassis.identical_to)"
            )
    else:
        out.print(f"nothing registered; {document.model} v{document.version} stays selected")
