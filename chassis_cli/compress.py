"""`chassis compress`: the compression flow on an already registered version."""

import argparse
from typing import Any

from chassis.compression.policy import CompressionPolicy, compression_policy_from
from chassis_cli.context import Context
from chassis_cli.policy_options import add_model_options, given_values

POLICY = "policy_"


def whole_number(minimum: int) -> Any:
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
    parser.add_argument(
        "--version", required=True, type=whole_number(1), help="version to compress"
    )
    add_model_options(parser, CompressionPolicy, POLICY)
    parser.set_defaults(handler=run_compress)


def run_compress(args: argparse.Namespace, context: Context) -> int:
    from chassis_cli.display import progress

    policy = compression_policy_from(given_values(args, POLICY))  # fails before any run
    context.prepare()
    with progress("compress"):
        from flows.compression import compress

        outcome = compress(model_name=args.model, version=args.version, policy=policy)
    print_compression(outcome)
    return 0


def print_compression(outcome: Any) -> None:
    from rich.table import Table

    from chassis.evaluation import METRIC_LABELS
    from chassis_cli.display import out

    table = Table(title=f"{outcome.model_name} v{outcome.parent_version}: compression")
    # The task's primary metric: accuracy for a classifier, RMSE for a regressor.
    first = outcome.rows[0] if outcome.rows else {}
    metric = next((m for m in ("accuracy", "rmse") if m in first), "accuracy")
    for column in ("candidate", "passed", METRIC_LABELS[metric], "b1 p50 ms", "size bytes"):
        table.add_column(column)
    table.add_column("score")
    for row in outcome.rows:
        name = row["candidate"] + (" *" if row["selected"] else "")
        table.add_row(
            name,
            row["passed"],
            f"{row.get(metric, float('nan')):.4f}",
            f"{row.get('b1_p50_ms', float('nan')):.4f}",
            f"{row['size_bytes']:,}",
            f"{row['score']:.3f}",
        )
    out.print(table)
    out.print(outcome.explanation)
    if outcome.registered:
        out.print(f"registered {outcome.model_name} version {outcome.version}")
        if outcome.identical_to is not None:
            out.print(
                f"note: the same ONNX bytes as v{outcome.identical_to} (registered anyway; "
                "tagged chassis.identical_to)"
            )
    else:
        out.print(f"nothing registered; {outcome.model_name} v{outcome.version} stays selected")
