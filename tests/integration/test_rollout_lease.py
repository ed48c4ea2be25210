"""Who ends a rollout, against a real MLflow registry (SQLite) with tiny real versions:
the run's own Prefect hook, a new rollout finding an orphan, and two parties racing to end
the same orphan. No gateway: these are the registry writes the lease rules call for."""

import time
import uuid

import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.states import Cancelled, Crashed

import chassis.registry
from chassis.errors import LeaseHeld
from chassis.rollout import lease
from chassis.rollout.fleet import Fleet
from chassis.rollout.orphans import end_orphan
from chassis.rollout.record import RolloutRecord
from chassis.serving.client import GatewayClient
from flows.rollout import end_if_still_owned, rollout
from tests.fixtures.registries import home_registry
from tests.fixtures.registry_versions import register_tiny_versions

MODEL = "lease-model"


@pytest.fixture
def canary(chassis_home):
    """v1 champion, v2 challenger; returns a function writing v2's leased 25 % canary."""
    register_tiny_versions(MODEL, 2)
    home_registry().promote(MODEL, 1, expected_champion=None, actor="user:test", reason="test")
    home_registry().set_challenger(MODEL, 2, actor="user:test", reason="test")

    def write(owner: str, lease_seconds: float) -> RolloutRecord:
        split = RolloutRecord(
            generation=0, mode="canary", stable_version=1, candidate_version=2, percent=25.0
        )
        current = home_registry().read_rollout_record(MODEL)
        return home_registry().write_rollout_record(
            MODEL,
            lease.granted(split, owner, lease_seconds, time.time()),
            current.generation if current else 0,
            owner,
        )

    return write


def run_of(run_id: uuid.UUID) -> FlowRun:
    return FlowRun(
        id=run_id,
        name="brave-fox",
        flow_id=uuid.uuid4(),
        parameters={"model_name": MODEL, "version": 2},
    )


def retirements() -> list[chassis.registry.AuditRecord]:
    return [r for r in home_registry().history(MODEL) if r.action == "retire-challenger"]


def test_a_cancelled_runs_hook_ends_its_own_split_at_once(canary):
    run_id = uuid.uuid4()
    written = canary(lease.owner_for_run(str(run_id), "brave-fox", "host-a pid 7"), 600.0)
    end_if_still_owned(rollout, run_of(run_id), Cancelled())
    record = home_registry().read_rollout_record(MODEL)
    assert record is not None and record.generation == written.generation + 1
    assert (record.mode, record.candidate_version, record.leased) == ("stable", None, False)
    assert record.written_by == f"{written.owner} (Cancelled hook)"
    assert home_registry().current_aliases(MODEL) == {"champion": 1}
    [retired] = retirements()
    assert retired.actor == record.written_by and "rollout Cancelled" in retired.reason


def test_a_hook_leaves_another_runs_split_and_a_stable_record_alone(canary):
    written = canary(lease.owner_for_run(str(uuid.uuid4()), "calm-owl", "host-b pid 8"), 600.0)
    end_if_still_owned(rollout, run_of(uuid.uuid4()), Crashed())
    assert home_registry().read_rollout_record(MODEL) == written
    stable = home_registry().write_rollout_record(
        MODEL, RolloutRecord(generation=0), written.generation, "t"
    )
    end_if_still_owned(rollout, run_of(uuid.uuid4()), Crashed())
    assert home_registry().read_rollout_record(MODEL) == stable
    assert home_registry().current_aliases(MODEL) == {"champion": 1, "challenger": 2}
    assert retirements() == []


def test_two_parties_ending_the_same_orphan_retire_its_challenger_once(canary):
    orphan = canary("rollout flow run gone (lost-cat) on host-c pid 9", 1.0)
    deadline = time.monotonic() + 10
    while not lease.expired(orphan, time.time()):  # the lease passes (1 s)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    now = time.time()
    # Both read the same orphan; the registry's compare-and-set lets only one write.
    assert end_orphan(home_registry(), MODEL, orphan, "gateway replica on host-x pid 1", now)
    assert not end_orphan(home_registry(), MODEL, orphan, "gateway replica on host-y pid 2", now)
    record = home_registry().read_rollout_record(MODEL)
    assert record is not None and not record.leased and record.mode == "stable"
    assert record.written_by == "gateway replica on host-x pid 1"
    [retired] = retirements()
    assert retired.actor == "gateway replica on host-x pid 1"
    assert "lease of rollout flow run gone (lost-cat)" in retired.reason
    assert home_registry().current_aliases(MODEL) == {"champion": 1}


def test_a_new_rollout_refuses_a_live_owner_and_ends_an_orphan_first(canary):
    clients = [GatewayClient("http://127.0.0.1:9", "token")]  # claim talks to the registry only
    live = canary("rollout flow run other (busy-bee) on host-d pid 3", 600.0)
    fleet = Fleet(
        home_registry(),
        clients,
        MODEL,
        owner="rollout flow run me (new-run) on here",
        lease_seconds=60,
    )
    with pytest.raises(LeaseHeld, match="another rollout of lease-model holds the split"):
        fleet.claim("user:test")
    assert home_registry().read_rollout_record(MODEL) == live  # nothing changed
    assert home_registry().current_aliases(MODEL) == {"champion": 1, "challenger": 2}

    # That rollout ends (stable, no owner); the next one dies holding its split.
    home_registry().write_rollout_record(
        MODEL, RolloutRecord(generation=0), live.generation, "other"
    )
    orphan = canary("rollout flow run dead (old-run) on host-e pid 4", 1.0)
    deadline = time.monotonic() + 10
    while not lease.expired(orphan, time.time()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    fleet.claim("user:test")
    record = home_registry().read_rollout_record(MODEL)
    assert record is not None and not record.leased and fleet.generation == record.generation
    assert record.written_by == "user:test (starting a rollout)"
    assert home_registry().current_aliases(MODEL) == {"champion": 1}
    fleet.close()
