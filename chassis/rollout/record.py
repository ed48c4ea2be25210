"""The rollout record: the one committed split of a model that every gateway replica follows.

Stored once, on the registered model in the registry (the source of truth for versions),
written under the registry's lock with compare-and-set on `generation`. A replica serves
the split of the highest generation it has read; the rollout flow advances only when every
replica reports the generation it wrote. Pure: serialisation and checks only.

Schema 2 adds the owner and lease of a rollout (`chassis/rollout/lease.py`). A record is
written at the lowest schema that expresses it: a leased split as 2, so that an older
Chassis (schema 1) refuses it instead of serving a split without knowing it can expire;
an unleased record (stable) as 1, so older replicas still follow a return to the champion.
"""

import datetime
import json
from dataclasses import asdict, dataclass
from typing import Any

from chassis.errors import RecordError

SCHEMA = 2  # the newest schema this Chassis reads and writes
LEASE_SCHEMA = 2  # records that carry an owner and a lease
MODES = ("stable", "shadow", "canary", "blue-green")


@dataclass(frozen=True)
class RolloutRecord:
    generation: int
    mode: str = "stable"
    stable_version: int | None = None  # None in stable mode: the champion alias decides
    candidate_version: int | None = None
    percent: float = 0.0
    mirror_percent: float = 0.0
    warm_version: int | None = None  # blue-green: the old color, kept and compared
    written_at: str = ""
    written_by: str = ""
    schema: int = SCHEMA
    # Who drives this split, and until when it holds without them (lease.py). Empty on a
    # stable record: the champion needs no owner.
    owner: str = ""
    lease_seconds: float = 0.0
    lease_until: str = ""  # ISO 8601 UTC; replicas compare it with their own clock

    @property
    def leased(self) -> bool:
        return bool(self.owner)

    def validate(self) -> "RolloutRecord":
        problems = []
        if self.mode not in MODES:
            problems.append(f"unknown mode {self.mode!r} (one of {', '.join(MODES)})")
        if self.mode != "stable" and self.candidate_version is None:
            problems.append(f"mode {self.mode!r} needs a candidate version")
        if not 0 <= self.percent <= 100 or not 0 <= self.mirror_percent <= 100:
            problems.append("percent and mirror_percent must be in [0, 100]")
        if self.generation < 0:
            problems.append(f"generation must be >= 0, got {self.generation}")
        if bool(self.owner) != bool(self.lease_until) or (self.owner and self.lease_seconds <= 0):
            problems.append("owner, lease_seconds and lease_until go together")
        if self.lease_until:
            try:
                datetime.datetime.fromisoformat(self.lease_until)
            except ValueError:
                problems.append(f"lease_until is not an ISO 8601 time: {self.lease_until!r}")
        if self.owner and self.schema < LEASE_SCHEMA:
            problems.append(f"a leased record needs schema {LEASE_SCHEMA}, not {self.schema}")
        if problems:
            raise RecordError("invalid rollout record: " + "; ".join(problems))
        return self

    @property
    def lowest_schema(self) -> int:
        """The schema to write this record at: the oldest that can read it correctly."""
        return LEASE_SCHEMA if self.leased else 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, model: str, text: str) -> "RolloutRecord":
        try:
            data: dict[str, Any] = json.loads(text)
        except ValueError as error:
            raise RecordError(f"the rollout record of {model} is not JSON: {error}") from None
        schema = data.get("schema")
        if not isinstance(schema, int):
            raise RecordError(f"the rollout record of {model} has no schema number")
        if schema > SCHEMA:
            raise RecordError(
                f"the rollout record of {model} was written by a newer Chassis (record schema "
                f"{schema}; this one reads up to {SCHEMA}): upgrade Chassis on this machine "
                "and every replica; nothing was changed"
            )
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        try:
            return cls(**known).validate()
        except TypeError as error:
            raise RecordError(f"the rollout record of {model} is malformed: {error}") from None
