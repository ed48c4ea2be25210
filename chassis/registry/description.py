"""The audit trail as people read it in the MLflow UI: a markdown table in the registered
model's description, below whatever text the description had (the spec's description, or
what someone wrote in the UI).

The machine record stays the `chassis.audit.*` tags (chassis.registry.audit); this rendering
is derived from them and rewritten whole after every audited move, under the registry lock,
so it repairs itself: a failed update (reported, never raised) is made good by the next move.
Everything from `HEADING` to the end of the description belongs to Chassis and is replaced.
"""

import logging
from collections.abc import Sequence

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from chassis.registry.audit import AuditRecord, history
from chassis.registry.failures import lookup_failed
from chassis.registry.reads import no_model

HEADING = "### Alias history (written by Chassis from its audit trail)"
# MLflow stores a registered model's description in 5,000 characters (its SQL column).
MAX_DESCRIPTION = 5000
REASON_CHARS = 120
COLUMNS = ("#", "when (UTC)", "who", "action", "version", "alias moves", "reason")

logger = logging.getLogger(__name__)


def _cell(text: str, limit: int | None = None) -> str:
    """One table cell: on one line, `|` escaped, cut to `limit` characters."""
    flat = " ".join(text.split())
    if limit is not None and len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return flat.replace("|", "\\|")


def _version(number: object) -> str:
    return "none" if number is None else f"v{number}"


def subject_version(record: AuditRecord) -> str:
    """The version the move was about: where its first alias went (promote, set-challenger,
    rollback), or where it came from when it went nowhere (retire-challenger)."""
    if not record.moves:
        return ""
    first = record.moves[0]
    return _version(first["to"] if first["to"] is not None else first["from"])


def _row(record: AuditRecord) -> str:
    moves = "; ".join(
        f"{m['alias']}: {_version(m['from'])} → {_version(m['to'])}" for m in record.moves
    )
    cells = (
        str(record.sequence),
        record.at.replace("T", " ").removesuffix("+00:00"),
        _cell(record.actor, 60),
        record.action,
        subject_version(record),
        _cell(moves),
        _cell(record.reason, REASON_CHARS),
    )
    return "| " + " | ".join(cells) + " |"


def user_text(description: str | None) -> str:
    """The part of a description that is not Chassis's rendering."""
    text = description or ""
    at = text.find(HEADING)
    return (text if at < 0 else text[:at]).rstrip()


def render(description: str | None, records: Sequence[AuditRecord], model: str) -> str:
    """`description` with its Chassis section replaced by the newest records that fit."""
    kept = user_text(description)
    head = f"{kept}\n\n" if kept else ""
    if not records:
        return kept
    header = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    newest_first = sorted(records, key=lambda r: r.sequence, reverse=True)

    def assemble(rows: list[str]) -> str:
        shown = (
            f"All {len(records)} moves, newest first."
            if len(rows) == len(records)
            else f"Latest {len(rows)} of {len(records)} moves, newest first."
        )
        note = f"{shown} Full trail: `chassis history --model {model}`."
        return "\n".join([f"{head}{HEADING}", "", note, "", *header, *rows]) + "\n"

    if len(assemble([])) > MAX_DESCRIPTION:
        return kept  # the text above leaves no room: the tags and `chassis history` remain
    rows: list[str] = []
    for record in newest_first:
        if len(assemble([*rows, _row(record)])) > MAX_DESCRIPTION:
            break
        rows.append(_row(record))
    return assemble(rows)


def refresh_description(client: MlflowClient, name: str) -> str | None:
    """Rewrite the Chassis section of `name`'s description from its audit trail. Returns
    None, or why it failed: the move it follows is committed whatever happens here."""
    try:
        try:
            model = client.get_registered_model(name)
        except MlflowException as error:
            raise lookup_failed(error, no_model(name)) from None
        text = render(model.description, history(client, name), name)
        if text != (model.description or ""):
            client.update_registered_model(name, description=text)
    except Exception as error:  # reported to the caller, never raised: the move stands
        problem = (
            f"the alias history in {name}'s MLflow description was not updated "
            f"({type(error).__name__}: {error}); the move itself is recorded, and the next "
            "audited move rewrites it"
        )
        logger.warning(problem)
        return problem
    return None
