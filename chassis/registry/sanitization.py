"""A model's sanitization setting (chassis/sanitization.py), stored as a registered-model
tag and changed like an alias: under the registry lock, with an audit record in the same
trail (action `sanitization-on` or `sanitization-off`, no alias moves), so `chassis
history` and the diagnosis's cooldown see who changed it, when and why."""

import datetime
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from chassis.errors import RegistryError, SanitizationError
from chassis.registry.audit import AuditRecord, history
from chassis.registry.description import refresh_description
from chassis.registry.fetch import fetch_reference
from chassis.registry.lineage import feature_columns, lineage_root
from chassis.registry.lock import RegistryLock
from chassis.registry.reads import current_aliases, model_tags, version_tags
from chassis.registry.tags import AUDIT_TAG_PREFIX, TAG_SANITIZATION, TAG_TEXT_INPUT
from chassis.sanitization import (
    SANITIZATION_OFF,
    SANITIZATION_ON,
    Sanitization,
    SanitizationMode,
    derive,
)


@dataclass(frozen=True)
class SanitizationChange:
    name: str
    noop: bool  # the setting was already this one: nothing written
    before: Sanitization | None
    after: Sanitization | None
    audit: AuditRecord | None


def read_sanitization(client: MlflowClient, name: str) -> Sanitization | None:
    """The stored setting (None: never set, which means off)."""
    text = model_tags(client, name).get(TAG_SANITIZATION)
    return Sanitization.from_json(text) if text else None


def reads_text(client: MlflowClient, name: str, version: int) -> bool:
    return TAG_TEXT_INPUT in version_tags(client, name, version)


def for_champion(
    client: MlflowClient, name: str, mode: SanitizationMode, *, by: str, reason: str
) -> Sanitization:
    """The setting for `mode`, with the ranges of the champion's reference sample (the
    version that was trained, for a compressed champion). Refused for a text model, or a
    model without a champion or a reference."""
    if mode == "off":
        return Sanitization("off", by=by, reason=reason)
    champion = current_aliases(client, name).get("champion")
    if champion is None:
        raise SanitizationError(f"{name!r} has no champion whose reference gives the ranges")
    if reads_text(client, name, champion):
        raise SanitizationError(text_model(name, champion))
    features = feature_columns(client, name, champion)
    if not features:
        raise SanitizationError(f"{name} v{champion} records no feature columns")
    root, _ = lineage_root(client, name, champion)
    with tempfile.TemporaryDirectory(prefix="chassis-sanitize-") as folder:
        reference = pd.read_parquet(fetch_reference(client, name, root, Path(folder)))
    return derive(reference, features, mode, champion, by=by, reason=reason)


def text_model(name: str, version: int) -> str:
    return (
        f"{name} v{version} reads texts: sanitization (clip, fill, refuse) applies to models "
        "that read rows of numbers only"
    )


def set_sanitization(
    client: MlflowClient,
    name: str,
    setting: Sanitization,
    *,
    actor: str,
    evidence: dict[str, str] | None = None,
) -> SanitizationChange:
    """Store `setting` unless the stored one already does the same (idempotent: nothing
    written then), with its audit record, under the registry lock. If the audit record
    cannot be written, the previous setting is put back and the error raised."""
    with RegistryLock(client, name) as lock:
        before = read_sanitization(client, name)
        if setting.same_setting(before):
            return SanitizationChange(name, True, before, before, None)
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        after = replace(setting, at=now, by=actor, reason=setting.reason[:500])
        lock.renew()
        client.set_registered_model_tag(name, TAG_SANITIZATION, after.to_json())
        sequence = max((r.sequence for r in history(client, name)), default=0) + 1
        record = AuditRecord(
            sequence=sequence,
            at=now,
            actor=actor,
            action=SANITIZATION_ON if after.on else SANITIZATION_OFF,
            moves=[],
            reason=f"{after.describe()}: {after.reason}"[:500],
            evidence={k: v[:500] for k, v in (evidence or {}).items()},
        )
        try:
            client.set_registered_model_tag(
                name, f"{AUDIT_TAG_PREFIX}{sequence:06d}", record.to_json()
            )
        except Exception as error:
            if before is None:
                client.delete_registered_model_tag(name, TAG_SANITIZATION)
            else:
                client.set_registered_model_tag(name, TAG_SANITIZATION, before.to_json())
            raise RegistryError(
                f"sanitization of {name!r} not changed: its audit record could not be written "
                f"({type(error).__name__}: {error})"
            ) from error
        refresh_description(client, name)  # reported by the next alias move if it fails
    return SanitizationChange(name, False, before, after, record)
