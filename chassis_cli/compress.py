"""`chassis compress`: the compression flow on an already registered version."""

import argparse
from typing import Any

from chassis_cli.context import Context

CANDIDATES = (
    "baseline",
    "dynamic-int8",
    "static-int8",
    "pruned",
    "pruned+int8",
    "distilled",
    "distilled+int8",
)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value:  # NaN compares unequal to itself
        raise argparse.ArgumentTypeError("expected a number, got NaN")
    return value


def tolerance_fraction(text: str) -> float:
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def prune_fraction(text: str) -> float:
    return tolerance_fraction(text)


def unit_interval(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def positive_number(text: str) -> float:
    value = _number(text)
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"must be in (0, 100], got {text}")
    return value


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
        "the best one whose accuracy stays within the tolerance. If none does, the version "
        "stays selected and nothing is registered.",
    )
    parser.add_argument("--model", required=True, help="registered-model name, e.g. digits-mlp")
    parser.add_argument(
        "--version", required=True, type=whole_number(1), help="version to compress"
    )
    parser.add_argument(
        "--tolerance",
        type=tolerance_fraction,
        default=0.01,
        help="accuracy a candidate may lose, in [0, 1)",
    )
    parser.add_argument(
        "--tolerance-mode",
        choices=("relative", "absolute"),
        default="relative",
        help="relative: a fraction of the baseline's accuracy; absolute: accuracy points",
    )
    parser.add_argument(
        "--objective",
        choices=("latency", "size", "balanced"),
        default="balanced",
        help="what the winner minimizes among passing candidates",
    )
    parser.add_argument(
        "--candidates",
        nargs="+",
        choices=CANDIDATES,
        metavar="NAME",
        help=f"candidates to build (default all): {', '.join(CANDIDATES)}",
    )
    parser.add_argument(
        "--prune-fraction",
        type=prune_fraction,
        default=0.5,
        help="share of hidden neurons removed, in [0, 1)",
    )
    parser.add_argument(
        "--temperature", type=positive_number, default=4.0, help="distillation temperature"
    )
    parser.add_argument(
        "--alpha", type=unit_interval, default=0.7, help="weight of the distillation loss"
    )
    parser.add_argument(
        "--calibration-method",
        choices=("minmax", "entropy", "percentile"),
        default="minmax",
        help="static int8 calibration",
    )
    parser.add_argument(
        "--per-tensor",
        action="store_true",
        help="one int8 scale per tensor instead of per output channel",
    )
    parser.add_argument(
        "--threads", type=whole_number(1), default=1, help="ONNX Runtime threads when timing"
    )
    parser.set_defaults(handler=run_compress)


def run_compress(args: argparse.Namespace, context: Context) -> int:
    from chassis_cli.display import progress

    context.prepare()
    with progress("compress"):
        from flows.compression import compress

        outcome = compress(
            model_name=args.model,
            version=args.version,
            tolerance=args.tolerance,
            tolerance_mode=args.tolerance_mode,
            objective=args.objective,
            candidates=args.candidates,
            per_channel=not args.per_tensor,
            calibration_method=args.calibration_method,
            prune_fraction=args.prune_fraction,
            temperature=args.temperature,
            alpha=args.alpha,
            threads=args.threads,
        )
    print_compression(outcome)
    return 0


def print_compression(outcome: Any) -> None:
    from rich.table import Table

    from chassis_cli.display import out

    table = Table(title=f"{outcome.model_name} v{outcome.parent_version}: compression")
    for column in ("candidate", "passed", "accuracy", "b1 p50 ms", "size bytes", "score"):
        table.add_column(column)
    for row in outcome.rows:
        name = row["candidate"] + (" *" if row["selected"] else "")
        table.add_row(
            name,
            row["passed"],
            f"{row.get('accuracy', float('nan')):.4f}",
            f"{row.get('b1_p50_ms', float('nan')):.4f}",
            f"{row['size_bytes']:,}",
            f"{row['score']:.3f}",
        )
    out.print(table)
    out.print(outcome.explanation)
    if outcome.registered:
        out.print(f"registered {outcome.model_name} version {outcome.version}")
    else:
        out.print(f"nothing registered; {outcome.model_name} v{outcome.version} stays selected")
