"""`Registry`: the one object through which Chassis reads and writes the model registry.

Built once from settings (`Registry.from_settings`) with an explicit MLflow client and the
installation's signing key, and passed down to whatever needs the registry. Each method is
one of the package's jobs (registration, reads, verified fetch, gates, alias moves, lineage,
retrain claim, webhooks, rollout record), called with this registry's client.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow import MlflowClient

from chassis.aliases import Disqualification, Intent, Recovery
from chassis.registry import (
    audit,
    fetch,
    gates,
    lineage,
    moves,
    reads,
    registration,
    retrain,
    rollout_record,
    sanitization,
    webhooks,
)
from chassis.registry.audit import AliasChange, AuditRecord
from chassis.registry.connection import mlflow_client
from chassis.registry.failures import naming
from chassis.registry.fetch import VersionFiles
from chassis.registry.lock import RegistryLock, lock_ttl_seconds
from chassis.registry.registration import RegisteredVersion
from chassis.registry.sanitization import SanitizationChange
from chassis.rollout.record import RolloutRecord
from chassis.sanitization import Sanitization, SanitizationMode
from chassis.settings import ChassisSettings

if TYPE_CHECKING:
    from chassis.text_input import TextEncoder


@dataclass(frozen=True)
class Registry:
    """The model registry of one installation: its MLflow client and gate-signing key."""

    client: MlflowClient
    signing_key: str

    @classmethod
    def from_settings(cls, settings: ChassisSettings) -> "Registry":
        # A bad lock lifetime is refused before the store is opened: opening a local one
        # creates its database, which a refused command must not leave behind.
        lock_ttl_seconds()
        return cls(mlflow_client(settings), settings.resolved_registry_signing_key())

    # Registration ---------------------------------------------------------------------
    @naming("registering a version of {name!r}")
    def register_version(
        self,
        *,
        name: str,
        model_uri: str,
        model_id: str | None,
        run_id: str | None,
        tags: dict[str, str],
        description: str,
        version_description: str = "",
    ) -> RegisteredVersion:
        return registration.register_version(
            self.client,
            name=name,
            model_uri=model_uri,
            model_id=model_id,
            run_id=run_id,
            tags=tags,
            description=description,
            version_description=version_description,
        )

    @naming("copying {name} v{version}")
    def register_copy(self, name: str, version: int, reason: str) -> int:
        return registration.register_copy(self.client, self.signing_key, name, version, reason)

    @naming("registering a cascade of {name} v{small}")
    def register_cascade(
        self, name: str, small: int, cascade_json: str, description: str
    ) -> RegisteredVersion:
        return registration.register_cascade(self.client, name, small, cascade_json, description)

    # Reads ----------------------------------------------------------------------------
    @naming("looking up {name!r}")
    def model_exists(self, name: str) -> bool:
        return reads.model_exists(self.client, name)

    @naming("reading the tags of {name} v{version}")
    def version_tags(self, name: str, version: int) -> dict[str, str]:
        return reads.version_tags(self.client, name, version)

    @naming("listing the versions of {name!r}")
    def list_versions(self, name: str) -> list[int]:
        return reads.list_versions(self.client, name)

    @naming("reading the versions of {name!r}")
    def describe_versions(self, name: str) -> list[dict[str, object]]:
        return reads.describe_versions(self.client, name)

    @naming("locating the files of {name} v{version}")
    def version_artifact_uri(self, name: str, version: int) -> str:
        return reads.version_artifact_uri(self.client, name, version)

    @naming("reading the run of {name} v{version}")
    def version_run_id(self, name: str, version: int) -> str:
        return reads.version_run_id(self.client, name, version)

    @naming("reading the aliases of {name!r}")
    def current_aliases(self, name: str) -> dict[str, int]:
        return reads.current_aliases(self.client, name)

    @naming("reading alias {alias!r} of {name!r}")
    def version_for_alias(self, name: str, alias: str) -> int | None:
        return reads.version_for_alias(self.client, name, alias)

    # Verified fetch -------------------------------------------------------------------
    @naming("fetching {name} v{version}")
    def fetch_version(self, name: str, version: int, destination: Path) -> VersionFiles:
        return fetch.fetch_version(self.client, name, version, destination)

    @naming("reading the input kind of {name} v{version}")
    def reads_text(self, name: str, version: int) -> bool:
        """Whether the version is a text model (it carries a tokenizer)."""
        return sanitization.reads_text(self.client, name, version)

    @naming("fetching the tokenizer of {name} v{version}")
    def fetch_text_encoder(
        self, name: str, version: int, destination: Path
    ) -> "TextEncoder | None":
        return fetch.fetch_text_encoder(self.client, name, version, destination)

    @naming("fetching the reference snapshot of {name} v{version}")
    def fetch_reference(self, name: str, version: int, destination: Path) -> Path:
        return fetch.fetch_reference(self.client, name, version, destination)

    # Gates ----------------------------------------------------------------------------
    @naming("checking the gates of {name} v{version}")
    def require_passed_gates(self, name: str, version: int) -> dict[str, str]:
        return gates.require_passed_gates(self.client, self.signing_key, name, version)

    @naming("verifying {name} v{version}")
    def verify_for_champion(self, name: str, version: int) -> dict[str, str]:
        return gates.verify_for_champion(self.client, self.signing_key, name, version)

    @naming("recording the gate report of {name} v{version}")
    def record_gate_report(
        self,
        name: str,
        version: int,
        passed: bool,
        report_uri: str,
        accuracy_gate: float | None = None,
    ) -> None:
        gates.record_gate_report(
            self.client, self.signing_key, name, version, passed, report_uri, accuracy_gate
        )

    # Audit trail and alias moves ------------------------------------------------------
    def lock(self, name: str, wait_seconds: float | None = None) -> RegistryLock:
        return RegistryLock(self.client, name, wait_seconds)

    @naming("reading the alias history of {name!r}")
    def history(self, name: str) -> list[AuditRecord]:
        return audit.history(self.client, name)

    @naming("reading the pending alias change of {name!r}")
    def read_intent(self, name: str) -> Intent | None:
        return audit.read_intent(self.client, name)

    @naming("reading the last recovery of {name!r}")
    def read_last_recovery(self, name: str) -> dict[str, object] | None:
        return audit.read_last_recovery(self.client, name)

    @naming("promoting {name} v{version}")
    def promote(
        self,
        name: str,
        version: int,
        *,
        expected_champion: int | None,
        actor: str,
        reason: str,
        evidence: dict[str, str] | None = None,
    ) -> AliasChange:
        return moves.promote(
            self.client,
            self.signing_key,
            name,
            version,
            expected_champion=expected_champion,
            actor=actor,
            reason=reason,
            evidence=evidence,
        )

    @naming("setting {name} v{version} as challenger")
    def set_challenger(
        self,
        name: str,
        version: int,
        *,
        actor: str,
        reason: str,
        evidence: dict[str, str] | None = None,
        allow_retired: bool = False,
    ) -> AliasChange:
        return moves.set_challenger(
            self.client,
            self.signing_key,
            name,
            version,
            actor=actor,
            reason=reason,
            evidence=evidence,
            allow_retired=allow_retired,
        )

    @naming("reading the retirement of {name} v{version}")
    def retirement(self, name: str, version: int) -> Disqualification | None:
        return moves.retirement(self.client, name, version)

    @naming("retiring the challenger of {name!r}")
    def retire_challenger(
        self,
        name: str,
        version: int | None,
        *,
        actor: str,
        reason: str,
        evidence: dict[str, str] | None = None,
    ) -> AliasChange:
        return moves.retire_challenger(
            self.client, name, version, actor=actor, reason=reason, evidence=evidence
        )

    @naming("rolling {name!r} back")
    def rollback(
        self, name: str, *, actor: str, reason: str, evidence: dict[str, str] | None = None
    ) -> AliasChange:
        return moves.rollback(
            self.client, self.signing_key, name, actor=actor, reason=reason, evidence=evidence
        )

    @naming("auditing {action} on {name!r}")
    def record_action(
        self, name: str, action: str, *, actor: str, reason: str, evidence: dict[str, str]
    ) -> AuditRecord:
        return moves.record_action(
            self.client, name, action, actor=actor, reason=reason, evidence=evidence
        )

    @naming("checking the challenger of {name!r}")
    def unaudited_challenger(self, name: str) -> int | None:
        return moves.unaudited_challenger(self.client, name)

    @naming("reading the aliases of {name!r}")
    def settled_aliases(self, name: str, *, actor: str) -> dict[str, int]:
        return moves.settled_aliases(self.client, name, actor=actor)

    @naming("recovering {name!r}")
    def recover(self, name: str, *, actor: str) -> Recovery | None:
        return moves.recover(self.client, name, actor=actor)

    # Lineage --------------------------------------------------------------------------
    @naming("reading the lineage of {name} v{version}")
    def lineage_root(self, name: str, version: int) -> tuple[int, dict[str, str]]:
        return lineage.lineage_root(self.client, name, version)

    @naming("reading the feature columns of {name} v{version}")
    def feature_columns(self, name: str, version: int) -> list[str] | None:
        return lineage.feature_columns(self.client, name, version)

    # Retrain claim, webhooks, rollout record -------------------------------------------
    @naming("claiming a retraining of {name!r}")
    def claim_retrain(self, name: str, cooldown_seconds: float, actor: str) -> tuple[bool, str]:
        return retrain.claim_retrain(self.client, name, cooldown_seconds, actor)

    @naming("registering the alias webhook for {url}")
    def ensure_alias_webhook(self, url: str, secret: str) -> str:
        return webhooks.ensure_alias_webhook(self.client, url, secret)

    @naming("reading the rollout record of {name!r}")
    def read_rollout_record(self, name: str) -> RolloutRecord | None:
        return rollout_record.read_rollout_record(self.client, name)

    @naming("writing the rollout record of {name!r}")
    def write_rollout_record(
        self, name: str, split: RolloutRecord, expected_generation: int, actor: str
    ) -> RolloutRecord:
        return rollout_record.write_rollout_record(
            self.client, self.signing_key, name, split, expected_generation, actor
        )

    # Sanitization --------------------------------------------------------------------
    @naming("reading the sanitization of {name!r}")
    def read_sanitization(self, name: str) -> Sanitization | None:
        return sanitization.read_sanitization(self.client, name)

    @naming("deriving the sanitization of {name!r}")
    def sanitization_for_champion(
        self, name: str, mode: SanitizationMode, *, by: str, reason: str
    ) -> Sanitization:
        return sanitization.for_champion(self.client, name, mode, by=by, reason=reason)

    @naming("setting the sanitization of {name!r}")
    def set_sanitization(
        self,
        name: str,
        setting: Sanitization,
        *,
        actor: str,
        evidence: dict[str, str] | None = None,
    ) -> SanitizationChange:
        return sanitization.set_sanitization(
            self.client, name, setting, actor=actor, evidence=evidence
        )
