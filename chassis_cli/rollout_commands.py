"""`chassis rollout | traffic`: stage a version through the gateway, or send it requests."""

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chassis.drift_policy import DriftPolicy, drift_policy_from
from chassis.rollout.policy import RolloutPolicy, policy_from
from chassis_cli.argtypes import (
    aware_time,
    existing_file,
    positive_float,
    positive_int,
    version_number,
)
from chassis_cli.context import Context
from chassis_cli.display import out
from chassis_cli.parsing import add_json_option
from chassis_cli.policy_options import add_model_options, given_values

if TYPE_CHECKING:
    from chassis_cli.documents import DriftDocument

POLICY = "policy_"
DRIFT_POLICY = "drift_policy_"


def add_rollout_parsers(commands: Any) -> None:
    rollout = commands.add_parser(
        "rollout",
        help="roll a gated version out through the gateway (canary or blue-green)",
        description="Stage a version: canary (shadow first, then growing traffic shares) or "
        "blue-green (preview, atomic switch, old color kept warm). Each step is analysed; "
        "success promotes it to champion, failure sets its traffic to 0 and exits 1.",
    )
    rollout.add_argument("--model", required=True, help="registered-model name")
    rollout.add_argument("--version", required=True, type=version_number, help="version number")
    rollout.add_argument(
        "--strategy",
        choices=("canary", "blue-green"),
        default="canary",
        help="canary: shadow, then growing shares; blue-green: mirrored preview, atomic "
        "switch, old color kept warm (default: canary)",
    )
    rollout.add_argument(
        "--traffic",
        choices=("auto", "always", "never"),
        default="auto",
        help="replay test rows meanwhile (auto: only into a gateway started for this run; "
        "default: auto)",
    )
    rollout.add_argument(
        "--gateway-url",
        help="gateway to drive (default CHASSIS_GATEWAY_URL); with --replica, where test rows "
        "are replayed (the load balancer)",
    )
    rollout.add_argument(
        "--replica",
        action="append",
        dest="replicas",
        metavar="URL|dns:HOST:PORT",
        help="a gateway replica serving the model; repeat for each, or give a DNS name that "
        "resolves to every replica (a Kubernetes headless Service)",
    )
    rollout.add_argument(
        "--allow-retired",
        action="store_true",
        help="roll out a version an earlier rollout retired (the audit record says so)",
    )
    add_model_options(rollout, RolloutPolicy, POLICY, aliases={"shadow_first": ["--shadow"]})
    add_json_option(rollout)
    rollout.set_defaults(handler=_rollout)

    traffic = commands.add_parser(
        "traffic",
        help="replay a model's test-split rows against the gateway",
        description="Send one row per request, cycling through the test split of the "
        "version's spec, until --requests or --seconds is reached. Loopback gateway only.",
    )
    traffic.add_argument("--model", required=True, help="registered-model name")
    traffic.add_argument(
        "--requests", type=positive_int, default=1000, help="at most this many (default: 1000)"
    )
    traffic.add_argument(
        "--seconds", type=positive_float, default=30.0, help="for at most this long (default: 30)"
    )
    traffic.add_argument(
        "--concurrency", type=positive_int, default=4, help="requests in flight (default: 4)"
    )
    traffic.add_argument("--gateway-url", help="gateway (default CHASSIS_GATEWAY_URL)")
    traffic.add_argument(
        "--drift",
        choices=("shift", "scale", "noise", "missing", "typos", "topic"),
        help="send drifted rows: shift (half the features +1 std), scale (x1.5), noise "
        "(+0.5 std), missing (a third of the values arrive as 0); a text model's: "
        "typos (about one letter in seven replaced), topic (the texts of --texts instead)",
    )
    traffic.add_argument(
        "--texts",
        type=existing_file,
        metavar="FILE",
        help="with --drift topic: a UTF-8 file of texts of another topic, one a line",
    )
    add_json_option(traffic)
    traffic.set_defaults(handler=_traffic)

    drift = commands.add_parser(
        "drift-check",
        help="compare served traffic with the champion's training data",
        description="Run the drift_check flow: the prediction log of the last --window-minutes "
        "(or from --since) against the champion's reference snapshot (Evidently). Exit 1 on "
        "a data-quality failure; on drift the retraining event is emitted.",
    )
    drift.add_argument("--model", required=True, help="registered-model name")
    window = drift.add_mutually_exclusive_group()
    window.add_argument(
        "--window-minutes",
        type=positive_int,
        default=60,
        help="served traffic of this many minutes, up to now (default: 60)",
    )
    window.add_argument(
        "--since",
        type=aware_time,
        metavar="TIME",
        help="served traffic from this ISO 8601 time (with its zone, e.g. "
        "2026-12-03T05:04:55Z) up to now; `chassis traffic --drift` prints the one its "
        "traffic started at",
    )
    drift.add_argument("--no-event", action="store_true", help="do not emit the drift event")
    add_model_options(drift, DriftPolicy, DRIFT_POLICY)
    add_json_option(drift)
    drift.set_defaults(handler=_drift_check)


def _rollout(args: argparse.Namespace, context: Context) -> int:
    from chassis_cli.documents import RolloutDocument

    policy = policy_from(given_values(args, POLICY))  # a bad value fails before any run
    context.require_registered(args.model, args.version)
    outcome = context.run_flow(
        "rollout",
        {
            "model_name": args.model,
            "version": args.version,
            "strategy": args.strategy,
            "policy": policy,
            "drive_traffic": args.traffic,
            "gateway_url": args.gateway_url,
            "replicas": args.replicas,
            "allow_retired": args.allow_retired,
        },
    )
    document = RolloutDocument.of(outcome)
    context.show(
        document,
        lambda: out.print(
            f"{document.model} v{document.version}: {document.strategy} rollout passed "
            f"({' -> '.join(document.steps)}); promoted to champion",
            soft_wrap=True,
        ),
    )
    return 0


def _traffic(args: argparse.Namespace, context: Context) -> int:
    from datetime import UTC, datetime

    from chassis.errors import ChassisError
    from chassis.registry import Registry
    from chassis.traffic import replay, require_served
    from chassis_cli.display import progress
    from chassis_cli.documents import TrafficDocument

    champion = context.require_champion(args.model, "send traffic to")
    registry = Registry.from_settings(context.settings)
    from flows.rollout import test_rows

    rows = test_rows(registry, args.model, champion)
    if args.texts is not None and args.drift != "topic":
        raise ChassisError("--texts is for --drift topic")
    if args.drift:
        rows = drifted_rows(args.model, rows, args.drift, args.texts)
    url = args.gateway_url or context.settings.resolved_gateway_url()
    require_served(url, args.model)
    # Whole seconds, rounded down: the first request is served at or after it.
    started = datetime.now(UTC).replace(microsecond=0)
    with progress("traffic", f"to {url} (at most {args.requests} requests in {args.seconds:g} s)"):
        report = replay(
            url,
            args.model,
            rows,
            max_requests=args.requests,
            max_seconds=args.seconds,
            concurrency=args.concurrency,
        )
    document = TrafficDocument.of(args.model, url, started, report)

    def human() -> None:
        by_status = ", ".join(f"{s.status or 'no answer'}: {s.count}" for s in document.statuses)
        by_version = ", ".join(f"v{v.version}: {v.count}" for v in document.versions) or "-"
        out.print(
            f"sent {document.sent} requests in {document.seconds:.1f} s "
            f"({document.requests_per_second:.0f}/s); status {by_status}; "
            f"answered by {by_version}",
            soft_wrap=True,
        )
        if args.drift:  # a window of the default 60 minutes would mix it with earlier traffic
            out.print(
                "judge this traffic alone: chassis drift-check --model "
                f"{args.model} --since {document.started_at}",
                soft_wrap=True,
            )

    context.show(document, human)
    return 0 if report.failed == 0 else 1


def drifted_rows(model: str, rows: list[Any], scenario: str, texts: Path | None) -> list[Any]:
    """The test rows as the --drift scenario changes them; a scenario of the other kind of
    model (numeric for a text model, or text for a numeric one) is refused, naming both."""
    import numpy as np

    from chassis.errors import ChassisError
    from chassis.traffic import DRIFT_SCENARIOS, TEXT_DRIFT_SCENARIOS, apply_drift, apply_text_drift

    is_text = bool(rows) and isinstance(rows[0], str)
    if is_text and scenario not in TEXT_DRIFT_SCENARIOS:
        raise ChassisError(
            f"{model} is a text model; --drift {scenario} changes numeric features (a text "
            f"model's scenarios: {', '.join(TEXT_DRIFT_SCENARIOS)})"
        )
    if not is_text:
        if scenario not in DRIFT_SCENARIOS:
            raise ChassisError(
                f"{model} reads numeric features; --drift {scenario} is for text models "
                f"(numeric scenarios: {', '.join(DRIFT_SCENARIOS)})"
            )
        return apply_drift(np.asarray(rows, dtype=np.float64), scenario).tolist()
    others: list[str] = []
    if scenario == "topic":
        if texts is None:
            raise ChassisError("--drift topic needs --texts FILE: texts of another topic")
        try:
            others = [line.strip() for line in texts.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as error:
            raise ChassisError(f"cannot read --texts {texts}: {error}") from None
        if not any(others):
            raise ChassisError(f"--texts {texts} holds no text (one a line)")
    return apply_text_drift(rows, scenario, replacements=others)


def _drift_check(args: argparse.Namespace, context: Context) -> int:
    from datetime import UTC, datetime

    from chassis.drift_policy import window_since
    from chassis_cli.documents import DriftDocument

    policy = drift_policy_from(given_values(args, DRIFT_POLICY))  # fails before any run
    if args.since is not None:
        window_since(args.since, datetime.now(UTC))
    context.require_champion(args.model, "check")
    outcome = context.run_flow(
        "drift_check",
        {
            "model_name": args.model,
            "window_minutes": args.window_minutes,
            "since": args.since,
            "policy": policy,
            "emit": not args.no_event,
        },
    )
    document = DriftDocument.of(outcome)
    context.show(document, lambda: print_drift(document))
    return 0


def print_drift(document: "DriftDocument") -> None:
    from datetime import datetime

    from chassis.drift_verdict import verdict_sentence, window_text

    sentence = verdict_sentence(
        document.verdict,
        len(document.drifted_columns),
        document.judged_columns,
        document.drift_share_needed,
    )
    out.print(
        f"{document.model} v{document.champion_version}: {sentence}; "
        f"{document.served_rows} served rows, "
        + window_text(
            datetime.fromisoformat(document.window_start),
            datetime.fromisoformat(document.window_end),
        )
        + ("; retraining event emitted" if document.event_emitted else ""),
        soft_wrap=True,
    )
    if document.drifted_columns:
        shown = ", ".join(document.drifted_columns[:10])
        more = len(document.drifted_columns) - 10
        out.print(f"drifted: {shown}" + (f" and {more} more" if more > 0 else ""), soft_wrap=True)
    for live in document.live_accuracy:
        out.print(f"live accuracy: {live.sentence()}", soft_wrap=True)
    if document.accuracy_event_emitted:
        out.print("accuracy below its gate: retraining event emitted", soft_wrap=True)
    out.print(f"serving suite: {document.serving_suite}", soft_wrap=True)
    for failure in document.serving_suite_failures:
        out.print(f"  {failure}", soft_wrap=True)
    if document.report_url:
        out.print(f"Evidently report: {document.report_url}", soft_wrap=True)
    if document.report_uri:
        out.print(f"stored at: {document.report_uri}", soft_wrap=True)
    if document.plot_url:
        out.print(f"drift over time (plot): {document.plot_url}", soft_wrap=True)
