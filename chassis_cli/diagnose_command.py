"""`chassis diagnose`: walk the troubleshooting tree for one model, by hand."""

import argparse
from typing import Any

from chassis.diagnosis.policy import DiagnosisPolicy, diagnosis_policy_from
from chassis_cli.context import Context
from chassis_cli.display import out
from chassis_cli.documents import DiagnosisDocument
from chassis_cli.parsing import add_json_option
from chassis_cli.policy_options import add_model_options, given_values

DIAGNOSIS_POLICY = "diagnosis_policy_"


def add_diagnose_parser(commands: Any) -> None:
    diagnose = commands.add_parser(
        "diagnose",
        help="walk the troubleshooting tree for a model and report the first failing branch",
        description="Run the diagnose flow: base services (every replica reachable, ready, "
        "serving a verified version), model performance (each version's server-error ratio, "
        "p99 latency and shadow agreement over --observe-seconds), data quality (the served "
        "window against the champion's reference and serving suite), business logic (one "
        "committed split everywhere, the champion served). Stops at the first failing "
        "branch; the report is a Prefect artifact and an MLflow run in <model>-monitoring. "
        "When the champion's own performance fails and a @previous exists, rolls back to it "
        "(audited; --fallback on|suggest|off, a cooldown after an automatic one) and has every "
        "replica follow. When the served data has missing or out-of-range values, switches "
        "the gateways' sanitization on (--sanitize on|suggest|off, --sanitize-mode "
        "clip|refuse), and off again once a diagnosis finds the window clean. A replica "
        "that answers but is not ready or not verified is restarted when it runs under the "
        "local supervisor (chassis serve --replicas N; --restart on|suggest|off). Exit 0 "
        "whatever it finds, 1 when it cannot run or a decided recovery cannot be made "
        "(nothing is changed then).",
    )
    diagnose.add_argument("--model", required=True, help="registered-model name")
    diagnose.add_argument(
        "--replica",
        dest="replicas",
        action="append",
        metavar="URL",
        help="a gateway replica to ask (repeat; a URL or dns:HOST:PORT); default: "
        "CHASSIS_GATEWAY_URL",
    )
    add_model_options(diagnose, DiagnosisPolicy, DIAGNOSIS_POLICY)
    add_json_option(diagnose)
    diagnose.set_defaults(handler=_diagnose)


def _diagnose(args: argparse.Namespace, context: Context) -> int:
    from chassis.rollout.fleet import resolve_replicas

    policy = diagnosis_policy_from(given_values(args, DIAGNOSIS_POLICY))  # before any run
    if args.replicas:
        resolve_replicas(args.replicas)  # a malformed address fails before any run
    # A name typed by hand that the registry does not know is a usage mistake here; the
    # flow itself (started by an alert) reports such a model in its diagnosis instead.
    context.require_registered(args.model)
    outcome = context.run_flow(
        "diagnose", {"model_name": args.model, "replicas": args.replicas, "policy": policy}
    )
    document = DiagnosisDocument.of(outcome)

    def human() -> None:
        out.print(document.summary, soft_wrap=True)
        for check in document.failing_checks:
            out.print(f"  failing: {check}", soft_wrap=True)
        if document.recovery_explanation:
            out.print(f"recovery: {document.recovery_explanation}", soft_wrap=True)
        if document.replicas_following:
            what = (
                "serve the new champion"
                if document.recovery == "fallback"
                else f"apply sanitization {document.sanitization}"
            )
            out.print(f"  {len(document.replicas_following)} replica(s) {what}", soft_wrap=True)
        if document.sanitization != "off":
            out.print(f"sanitization: {document.sanitization}", soft_wrap=True)
        if document.replicas_restarted:
            out.print(
                f"  restarted {', '.join(document.replicas_restarted)}; back: "
                f"{', '.join(document.replicas_back) or 'none'}",
                soft_wrap=True,
            )
        if document.report_uri:
            out.print(f"report: {document.report_uri}", soft_wrap=True)

    context.show(document, human)
    return 0
