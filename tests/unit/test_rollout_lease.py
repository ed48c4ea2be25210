"""The lease on a rollout's split: when it holds, when it is renewed, who may take over."""

import pytest

from chassis.errors import LeaseHeld, LeaseLost, RecordError
from chassis.rollout import lease
from chassis.rollout.orphans import backoff, with_backoff
from chassis.rollout.record import SCHEMA, RolloutRecord

T0 = 1_800_000_000.0  # a fixed wall-clock instant
CANARY = RolloutRecord(
    generation=4, mode="canary", stable_version=1, candidate_version=2, percent=25.0
)
OWNER = "rollout flow run 1234 (brave-fox) on host-a pid 77"


def leased(split: RolloutRecord = CANARY, owner: str = OWNER, seconds: float = 90.0):
    return lease.granted(split, owner, seconds, T0)


def test_a_lease_holds_until_its_end_and_not_a_millisecond_after():
    record = leased()
    assert lease.expires_at(record) == pytest.approx(T0 + 90.0)
    assert not lease.expired(record, T0 + 89.999)
    assert lease.expired(record, T0 + 90.0)
    assert lease.served_split(record, T0 + 89.999) == record


def test_an_expired_split_is_served_as_the_champion_alone_at_the_same_generation():
    switched = leased(RolloutRecord(generation=9, stable_version=2, warm_version=1))
    for record in (leased(), switched):
        served = lease.served_split(record, T0 + 91.0)
        assert (served.mode, served.stable_version, served.candidate_version) == (
            "stable",
            None,
            None,
        )
        assert (served.warm_version, served.percent, served.mirror_percent) == (None, 0.0, 0.0)
        assert served.generation == record.generation
        assert served.owner == OWNER  # kept: it says whose rollout was orphaned


def test_an_unleased_record_never_expires():
    stable = RolloutRecord(generation=3)
    assert not lease.expired(stable, T0 + 10**9)
    assert lease.served_split(stable, T0 + 10**9) == stable
    assert not lease.may_take_over(stable, T0 + 10**9)
    assert not lease.may_take_over(None, T0)


def test_renewal_is_due_once_a_third_of_the_lease_has_passed():
    record = leased(seconds=90.0)
    assert not lease.due_for_renewal(record, T0 + 29.0)
    assert lease.due_for_renewal(record, T0 + 30.0)
    assert lease.due_for_renewal(record, T0 + 200.0)
    assert not lease.due_for_renewal(RolloutRecord(generation=1), T0)


def test_the_owner_may_renew_its_own_live_lease():
    lease.check_write("m", leased(), leased(seconds=90.0), T0 + 50.0)


def test_an_owner_whose_lease_passed_has_lost_the_split_but_may_return_to_stable():
    with pytest.raises(LeaseLost, match="passed: replicas serve the champion"):
        lease.check_write("m", leased(), leased(), T0 + 90.0)
    lease.check_write("m", leased(), RolloutRecord(generation=0), T0 + 90.0)


def test_another_owner_is_refused_while_the_lease_holds_and_after_it_passed():
    other = leased(owner="rollout flow run 5678 on host-b pid 9")
    with pytest.raises(LeaseHeld, match="another rollout of m holds the split"):
        lease.check_write("m", leased(), other, T0 + 10.0)
    with pytest.raises(LeaseHeld, match=r"orphaned .* returned to stable before"):
        lease.check_write("m", leased(), other, T0 + 100.0)


def test_anyone_may_return_a_split_to_stable_and_start_over_a_stable_record():
    lease.check_write("m", leased(), RolloutRecord(generation=0), T0 + 1.0)  # anyone, any time
    lease.check_write("m", RolloutRecord(generation=5), leased(), T0)
    lease.check_write("m", None, leased(), T0)


def test_only_an_expired_lease_may_be_taken_over():
    assert not lease.may_take_over(leased(), T0 + 89.0)
    assert lease.may_take_over(leased(), T0 + 90.0)


def test_the_version_under_test_is_the_candidate_or_the_switched_color():
    assert lease.under_test(CANARY) == 2
    assert lease.under_test(RolloutRecord(generation=1, stable_version=2, warm_version=1)) == 2
    assert lease.under_test(RolloutRecord(generation=1)) is None


def test_a_leased_record_is_written_at_schema_2_and_a_stable_one_at_1():
    assert leased().lowest_schema == 2 == SCHEMA
    assert RolloutRecord(generation=1).lowest_schema == 1
    assert RolloutRecord.from_json("m", leased().to_json()) == leased()


def test_a_lease_without_owner_or_with_a_bad_time_or_an_old_schema_is_refused():
    with pytest.raises(RecordError, match="go together"):
        RolloutRecord(generation=1, lease_until="2027-01-01T00:00:00+00:00").validate()
    with pytest.raises(RecordError, match="not an ISO 8601 time"):
        RolloutRecord(generation=1, owner="x", lease_seconds=5, lease_until="tomorrow").validate()
    old = leased().to_json().replace('"schema":2', '"schema":1')
    with pytest.raises(RecordError, match="a leased record needs schema 2"):
        RolloutRecord.from_json("m", old)


def test_backoff_doubles_from_one_second_up_to_fifteen():
    assert [backoff(n) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0]


def test_a_failing_action_is_retried_with_backoff_until_it_succeeds_or_time_is_up():
    clock = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    outcomes = iter([OSError("registry down"), OSError("registry down"), "written"])

    def action() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert with_backoff(action, 60.0, clock=lambda: clock[0], sleep=sleep) == "written"
    assert waits == [1.0, 2.0]

    def always_down() -> str:
        raise OSError("registry down")

    clock[0], waits[:] = 0.0, []
    with pytest.raises(OSError, match="registry down"):
        with_backoff(always_down, 10.0, clock=lambda: clock[0], sleep=sleep)
    assert waits == [1.0, 2.0, 4.0]  # the next wait (8 s) would end after 10 s: given up


def test_a_conflict_is_not_retried():
    calls = []

    def conflicting() -> None:
        calls.append(1)
        raise LeaseLost("taken over")

    with pytest.raises(LeaseLost):
        with_backoff(conflicting, 60.0, give_up_on=(LeaseLost,), sleep=lambda s: None)
    assert calls == [1]


def test_a_prefect_hook_recognises_its_own_runs_split_and_no_other():
    owner = lease.owner_for_run("1234", "brave-fox", "host-a pid 77")
    record = leased(owner=owner)
    assert lease.owned_by_run(record, "1234")
    assert not lease.owned_by_run(record, "123")  # a prefix of the id is another run
    assert not lease.owned_by_run(RolloutRecord(generation=2), "1234")  # stable: no owner
    assert not lease.owned_by_run(None, "1234")
