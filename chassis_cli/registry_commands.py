"""`chassis gates | promote | rollback | retire | recover | history`: the registry side of the
command line."""

import argparse
import sys
from typing import Any

from chassis.gates import GatePolicy, gate_policy_from
from chassis_cli.argtypes import expected_champion, version_number
from chassis_cli.context import Context, UsageError
from chassis_cli.display import out, print_alias_outcome, print_gates, print_history
from chassis_cli.parsing import add_json_option
from chassis_cli.policy_options import add_model_options, given_values

ALIAS_TARGETS = ("champion", "challenger")
GATE = "gate_"
# The shorter names these options had before they were generated from GatePolicy.
GATE_OPTION_ALIASES = {
    "max_relative_drop_vs_baseline": ["--max-drop-vs-baseline"],
    "min_absolute_change_vs_champion": ["--min-change-vs-champion"],
    "latency_p99_ms_budget": ["--latency-budget-ms"],
    "latency_slack_ms_vs_champion": ["--latency-slack-ms"],
    "size_mb_budget": ["--size-budget-mb"],
    "per_class_recall_floor": ["--recall-floor"],
}


def add_registry_parsers(commands: Any) -> None:
    gates = commands.add_parser(
        "gates",
        help="measure a version and store its gate report",
        description="Measure a version's ONNX file on its spec's test split, compare it with "
        "its baseline and the current champion, and store the gate report with the version. "
        "Exit 1 if any gate fails.",
    )
    gates.add_argument("--model", required=True, help="registered-model name")
    gates.add_argument("--version", required=True, type=version_number, help="version number")
    add_model_options(gates, GatePolicy, GATE, aliases=GATE_OPTION_ALIASES)
    add_json_option(gates)
    gates.set_defaults(handler=_gates)

    promote = commands.add_parser(
        "promote",
        help="give a version the champion (or challenger) alias",
        description="Verify the version's sha256 and move the alias. Refused unless its gate "
        "report passed. Compare-and-set: fails with a conflict if the champion changed since "
        "it was read (or is not the one given with --expect-champion).",
    )
    promote.add_argument("--model", required=True, help="registered-model name")
    promote.add_argument("--version", required=True, type=version_number, help="version number")
    promote.add_argument("--to", choices=ALIAS_TARGETS, default="champion", help="alias to move")
    promote.add_argument(
        "--expect-champion",
        type=expected_champion,
        metavar="N|none",
        help="the champion this promotion replaces (default: the current one)",
    )
    promote.add_argument("--reason", default="promoted by hand", help="recorded in the audit trail")
    promote.add_argument(
        "--allow-retired",
        action="store_true",
        help="with --to challenger: set a version that a rollout retired as challenger again "
        "(refused otherwise); the audit record says the override was used",
    )
    add_json_option(promote)
    promote.set_defaults(handler=_promote)

    rollback = commands.add_parser(
        "rollback",
        help="make the previous champion the champion again",
        description="Move champion back to the `previous` version in one step, with an audit "
        "record. Refused if there is no previous version.",
    )
    rollback.add_argument("--model", required=True, help="registered-model name")
    rollback.add_argument(
        "--reason", default="rolled back by hand", help="recorded in the audit trail"
    )
    add_json_option(rollback)
    rollback.set_defaults(handler=_rollback)

    retire = commands.add_parser(
        "retire",
        help="remove the challenger alias and record the retirement",
        description="Remove the challenger alias, with an audit record. A retired version is "
        "not set as challenger again without --allow-retired, and is never left as `previous`.",
    )
    retire.add_argument("--model", required=True, help="registered-model name")
    retire.add_argument(
        "--version",
        type=version_number,
        help="retire only if this version is the challenger (default: whichever is)",
    )
    retire.add_argument("--reason", default="retired by hand", help="recorded in the audit trail")
    add_json_option(retire)
    retire.set_defaults(handler=_retire)

    recover = commands.add_parser(
        "recover",
        help="resolve an alias change interrupted by a crash",
        description="An alias change killed midway leaves its intent on the model. Resolve it: "
        "if its audit record was written the change stands, otherwise every alias it moved "
        "goes back. Every alias command does this first anyway; this one does only that.",
    )
    recover.add_argument("--model", required=True, help="registered-model name")
    add_json_option(recover)
    recover.set_defaults(handler=_recover)

    history = commands.add_parser(
        "history",
        help="print every alias move of a model (the audit trail)",
        description="Who moved which alias, when, from which version to which, why, and the "
        "evidence, read from the MLflow registry.",
    )
    history.add_argument("--model", required=True, help="registered-model name")
    add_json_option(history)
    history.set_defaults(handler=_history)


def _gates(args: argparse.Namespace, context: Context) -> int:
    from chassis_cli.documents import GatesDocument

    thresholds = gate_policy_from(given_values(args, GATE))  # a bad value fails before any run
    context.require_registered(args.model, args.version)
    outcome = context.run_flow(
        "gates", {"model_name": args.model, "version": args.version, "thresholds": thresholds}
    )
    document = GatesDocument.of(outcome)
    context.show(document, lambda: print_gates(document))
    return 0


def _promote(args: argparse.Namespace, context: Context) -> int:
    if args.allow_retired and args.to != "challenger":
        raise UsageError("--allow-retired applies to --to challenger only")
    context.require_registered(args.model, args.version)
    expected = args.expect_champion
    if args.to == "champion" and expected is None:
        expected = _champion_now(args.model, context)
    outcome = context.run_flow(
        "promote",
        {
            "model_name": args.model,
            "version": args.version,
            "to": args.to,
            "expected_champion": expected,
            "reason": args.reason,
            "allow_retired": args.allow_retired,
        },
    )
    _show_alias_change(outcome, context)
    return 0


def _show_alias_change(outcome: Any, context: Context) -> None:
    from chassis_cli.documents import AliasChangeDocument

    document = AliasChangeDocument.of(outcome)
    context.show(document, lambda: print_alias_outcome(document))


def _champion_now(model: str, context: Context) -> int:
    """The champion when the command is given (0: none), for the promotion's compare-and-set.

    Read here, not when the flow starts (tens of seconds later): two promotions given while
    v1 is champion must conflict, not chain v1 -> A -> B because B's flow started after A's
    had finished."""
    import getpass

    from chassis.aliases import CHAMPION
    from chassis.registry import Registry

    settings = context.prepare()
    registry = Registry.from_settings(settings)
    actor = f"{getpass.getuser()} via chassis promote"
    champion = registry.settled_aliases(model, actor=actor).get(CHAMPION)
    shown = "no champion" if champion is None else f"champion v{champion}"
    out.print(f"{model}: expecting {shown} (compare-and-set)")
    sys.stdout.flush()
    return champion or 0


def _rollback(args: argparse.Namespace, context: Context) -> int:
    context.require_registered(args.model)
    outcome = context.run_flow("rollback", {"model_name": args.model, "reason": args.reason})
    _show_alias_change(outcome, context)
    return 0


def _retire(args: argparse.Namespace, context: Context) -> int:
    context.require_registered(args.model, args.version)
    parameters = {"model_name": args.model, "version": args.version, "reason": args.reason}
    _show_alias_change(context.run_flow("retire", parameters), context)
    return 0


def _recover(args: argparse.Namespace, context: Context) -> int:
    """Without Prefect: a repair must work when the orchestrator does not."""
    import getpass

    from chassis.registry import Registry
    from chassis_cli.documents import RecoverDocument

    settings = context.prepare()
    registry = Registry.from_settings(settings)
    recovery = registry.recover(args.model, actor=f"{getpass.getuser()} via chassis recover")
    document = RecoverDocument(
        model=args.model,
        recovered=recovery is not None,
        description=None if recovery is None else recovery.describe(),
        aliases=dict(sorted(registry.current_aliases(args.model).items())),
    )

    def human() -> None:
        if document.description is None:
            out.print(f"{args.model}: no interrupted alias change; nothing to do")
        else:
            out.print(f"{args.model}: {document.description}", soft_wrap=True)
        out.print(f"{args.model}: aliases now {document.aliases}")

    context.show(document, human)
    return 0


def _history(args: argparse.Namespace, context: Context) -> int:
    from chassis.registry import Registry
    from chassis_cli.documents import HistoryDocument

    settings = context.prepare()
    registry = Registry.from_settings(settings)
    records = registry.history(args.model)
    document = HistoryDocument.of(args.model, records, registry.current_aliases(args.model))
    from chassis.mlflow_links import MlflowLinks

    model_url = MlflowLinks.of(settings).registered_model(args.model)
    context.show(document, lambda: print_history(document, model_url))
    return 0
