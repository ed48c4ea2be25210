"""The alias audit trail and the change in progress, as stored on the registered model."""

import json
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient

from chassis.aliases import Intent
from chassis.registry.reads import model_tags
from chassis.registry.tags import AUDIT_TAG_PREFIX, TAG_INTENT, TAG_LAST_RECOVERY


@dataclass(frozen=True)
class AuditRecord:
    sequence: int
    at: str
    actor: str
    action: str
    moves: list[dict[str, Any]]  # alias, from, to (see aliases.Move.to_dict)
    reason: str
    evidence: dict[str, str]
    intent: str = ""  # token of the intent this record commits (empty before intents existed)

    def to_json(self) -> str:
        return json.dumps(
            {
                "at": self.at,
                "actor": self.actor,
                "action": self.action,
                "moves": self.moves,
                "reason": self.reason,
                "evidence": self.evidence,
                "intent": self.intent,
            },
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class AliasChange:
    """The outcome of an alias operation: what moved (nothing, for a repeated promotion)."""

    name: str
    action: str
    noop: bool
    aliases_before: dict[str, int]
    aliases_after: dict[str, int]
    audit: AuditRecord | None
    # Why the readable history in the model's MLflow description was not updated (None: it
    # was, or nothing moved). The move stands either way (chassis.registry.description).
    description_problem: str | None = None


def history(client: MlflowClient, name: str) -> list[AuditRecord]:
    """Every alias move of `name`, oldest first, read from the registered model's tags."""
    records = []
    for key, value in model_tags(client, name).items():
        if key.startswith(AUDIT_TAG_PREFIX):
            data = json.loads(value)
            records.append(AuditRecord(sequence=int(key[len(AUDIT_TAG_PREFIX) :]), **data))
    return sorted(records, key=lambda r: r.sequence)


def read_intent(client: MlflowClient, name: str) -> Intent | None:
    """The alias change in progress, or left by a crash (None: none)."""
    text = model_tags(client, name).get(TAG_INTENT)
    return Intent.from_json(text) if text else None


def read_last_recovery(client: MlflowClient, name: str) -> dict[str, object] | None:
    """How the last interrupted alias change was resolved (None: none ever was)."""
    text = model_tags(client, name).get(TAG_LAST_RECOVERY)
    return dict(json.loads(text)) if text else None
