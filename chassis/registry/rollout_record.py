"""The committed traffic split of a model (chassis.rollout.record), stored as a model tag."""

import dataclasses
import datetime
import time

from mlflow import MlflowClient

from chassis.errors import RecordConflict
from chassis.registry.gates import require_passed_gates
from chassis.registry.lock import RegistryLock
from chassis.registry.reads import model_tags
from chassis.registry.tags import TAG_ROLLOUT_RECORD
from chassis.rollout import lease
from chassis.rollout.record import RolloutRecord


def read_rollout_record(client: MlflowClient, name: str) -> RolloutRecord | None:
    """The committed split of `name` (None: never written: the champion serves alone)."""
    text = model_tags(client, name).get(TAG_ROLLOUT_RECORD)
    return RolloutRecord.from_json(name, text) if text else None


def write_rollout_record(
    client: MlflowClient,
    signing_key: str,
    name: str,
    split: RolloutRecord,
    expected_generation: int,
    actor: str,
) -> RolloutRecord:
    """Commit `split` as generation expected_generation + 1, if the record is still at
    `expected_generation` (compare-and-set under the registry lock); returns what was
    written. Versions that take traffic must have passed their gates. A leased split (an
    owner, see chassis/rollout/lease.py) must also be allowed by the current record's lease;
    its lease starts when it is written, not when the lock was asked for."""
    for version in (split.candidate_version, split.stable_version, split.warm_version):
        if version is not None:
            require_passed_gates(client, signing_key, name, version)
    with RegistryLock(client, name):
        current = read_rollout_record(client, name)
        generation = current.generation if current else 0
        if generation != expected_generation:
            raise RecordConflict(
                f"the rollout record of {name} is at generation {generation}, not "
                f"{expected_generation}: another rollout committed a split meanwhile; nothing "
                "was changed"
            )
        now = time.time()
        if split.leased:
            split = lease.granted(split, split.owner, split.lease_seconds, now)
        lease.check_write(name, current, split, now)
        record = dataclasses.replace(
            split,
            generation=generation + 1,
            written_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
            written_by=actor,
            schema=split.lowest_schema,
        ).validate()
        client.set_registered_model_tag(name, TAG_ROLLOUT_RECORD, record.to_json())
    return record
