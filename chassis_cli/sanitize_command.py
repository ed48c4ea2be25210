"""`chassis sanitize`: see or set what a model's gateways do with out-of-range and missing
values (chassis/sanitization.py). Without Prefect: a switch a person flips must work when
the orchestrator does not, like `chassis recover`."""

import argparse
from typing import Any

from chassis_cli.context import Context
from chassis_cli.display import out
from chassis_cli.parsing import add_json_option

MODES = ("clip", "refuse", "off")


def add_sanitize_parser(commands: Any) -> None:
    sanitize = commands.add_parser(
        "sanitize",
        help="see or set a model's gateway sanitization (clip, refuse, off)",
        description="Without --mode: print the model's sanitization setting. With --mode: "
        "store it on the registered model (audited, like an alias move: `chassis history` "
        "lists it); every gateway replica applies it at its next registry poll or admin "
        "sync. clip: values outside the champion's reference range are clipped to it and "
        "missing ones (null) filled with its median; refuse: a request with such a row gets "
        "a 422 naming the row and feature; off: requests are served as sent. The prediction "
        "log keeps the rows as received either way. Numeric models only.",
    )
    sanitize.add_argument("--model", required=True, help="registered-model name")
    sanitize.add_argument("--mode", choices=MODES, help="the setting to store (default: show)")
    sanitize.add_argument(
        "--reason", default="set by hand", help="recorded with the setting and in the audit trail"
    )
    add_json_option(sanitize)
    sanitize.set_defaults(handler=_sanitize)


def _sanitize(args: argparse.Namespace, context: Context) -> int:
    import getpass

    from chassis.registry import Registry
    from chassis_cli.documents import SanitizationDocument

    context.require_registered(args.model)
    registry = Registry.from_settings(context.prepare())
    changed = False
    if args.mode is not None:
        who = f"{getpass.getuser()} via chassis sanitize"
        # Derived (and a text model refused) before anything is written.
        setting = registry.sanitization_for_champion(
            args.model, args.mode, by=who, reason=args.reason
        )
        changed = not registry.set_sanitization(args.model, setting, actor=who).noop
    current = registry.read_sanitization(args.model)
    document = SanitizationDocument.of(args.model, current, changed)

    def human() -> None:
        said = document.describe
        if args.mode is not None and not changed:
            said += " (already so: nothing written)"
        out.print(f"{args.model}: sanitization {said}", soft_wrap=True)
        if document.set_at:
            out.print(f"  set {document.set_at} by {document.set_by}: {document.reason}")

    context.show(document, human)
    return 0
