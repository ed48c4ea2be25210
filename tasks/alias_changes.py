"""Who moved an alias, and the Prefect artifacts an alias move publishes: light, so a flow
that moves aliases (the diagnosis's fallback) starts without the gates' imports."""

import getpass
from typing import Any

from prefect.runtime import flow_run

from chassis.aliases import describe_aliases
from chassis.mlflow_links import MlflowLinks
from chassis.registry import AliasChange
from chassis.settings import ChassisSettings
from tasks.artifacts import publish_markdown, publish_table


def actor() -> str:
    """Who moved an alias: the OS user, and the Prefect flow run when there is one. The
    run's name alone is not enough: every diagnosis run of a model is `diagnose <model>`,
    so its id follows (what the Prefect UI's run page and `prefect flow-run inspect` take)."""
    user = getpass.getuser()
    run = flow_run.name
    return f"{user} via flow run {run} ({flow_run.id})" if run else user


def publish_alias_change(change: AliasChange) -> None:
    record = change.audit
    if record is None:
        publish_markdown(
            f"# {change.name}: {change.action} was already done\n\n"
            f"Aliases: {describe_aliases(change.aliases_after)}",
            "alias-change",
            change.name,
            description="No alias moved (repeated request)",
        )
        return
    rows: list[dict[str, Any]] = [
        {"alias": m["alias"], "from": m["from"], "to": m["to"]} for m in record.moves
    ]
    publish_table(
        rows, "alias-moves", change.name, description=f"{change.action} by {record.actor}"
    )
    evidence = "\n".join(f"- {k}: {v}" for k, v in record.evidence.items()) or "- none"
    links = MlflowLinks.of(ChassisSettings())
    moved = sorted({int(m[end]) for m in record.moves for end in ("from", "to") if m[end]})
    pages = ", ".join(f"[v{v}]({links.model_version(change.name, v)})" for v in moved)
    publish_markdown(
        f"# {change.name}: {change.action} (audit #{record.sequence})\n\n"
        f"- when: {record.at}\n- who: {record.actor}\n- why: {record.reason}\n\n"
        f"## Evidence\n{evidence}\n\n"
        f"## Aliases\n- before: {describe_aliases(change.aliases_before)}\n"
        f"- after: {describe_aliases(change.aliases_after)}\n"
        f"- in MLflow: {pages or 'no version moved'}\n",
        "alias-change",
        change.name,
        description=f"Audit record #{record.sequence}",
    )
