"""The rollout record: what replicas read, and what they refuse."""

import pytest

from chassis.errors import FleetError, RecordError
from chassis.rollout.fleet import resolve_replicas
from chassis.rollout.record import SCHEMA, RolloutRecord


def test_a_record_round_trips():
    record = RolloutRecord(
        generation=7, mode="canary", stable_version=1, candidate_version=2, percent=25.0
    )
    assert RolloutRecord.from_json("m", record.to_json()) == record


def test_a_record_from_a_newer_chassis_is_refused_naming_both_schemas():
    newer = (
        RolloutRecord(generation=3)
        .to_json()
        .replace(f'"schema":{SCHEMA}', f'"schema":{SCHEMA + 1}')
    )
    with pytest.raises(RecordError, match=f"newer Chassis .*schema {SCHEMA + 1}.*up to {SCHEMA}"):
        RolloutRecord.from_json("digits-mlp", newer)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "not JSON"),
        ('{"generation": 1}', "no schema"),
        ('{"schema": 1, "generation": 1, "mode": "canary"}', "needs a candidate"),
        ('{"schema": 1, "generation": 1, "mode": "sideways"}', "unknown mode"),
        ('{"schema": 1, "generation": 1, "percent": 140}', r"\[0, 100\]"),
    ],
)
def test_malformed_records_name_the_problem(text, problem):
    with pytest.raises(RecordError, match=problem):
        RolloutRecord.from_json("m", text)


def test_replica_lists_resolve_and_bad_ones_are_named():
    assert resolve_replicas(["http://127.0.0.1:8000/", "http://127.0.0.1:8000"]) == [
        "http://127.0.0.1:8000"
    ]
    assert resolve_replicas(["dns:localhost:8000"]) in (
        ["http://127.0.0.1:8000"],
        ["http://127.0.0.1:8000", "http://[::1]:8000"],
        ["http://[::1]:8000", "http://127.0.0.1:8000"],
    )
    with pytest.raises(FleetError, match="no gateway replicas"):
        resolve_replicas([])
    with pytest.raises(FleetError, match="expected a URL"):
        resolve_replicas(["gateway-0:8000"])
    with pytest.raises(FleetError, match="expected dns:HOST:PORT"):
        resolve_replicas(["dns:gateway"])
    with pytest.raises(FleetError, match="does not resolve"):
        resolve_replicas(["dns:no-such-host.invalid:8000"])
