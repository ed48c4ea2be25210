"""The recovery rule for alias changes a crash interrupted, and the fail points that crash them."""

import itertools
import os
import subprocess
import sys

import pytest

from chassis.aliases import (
    COMPLETED,
    UNDONE,
    AliasMove,
    Intent,
    plan_promotion,
    plan_recovery,
    plan_retire_challenger,
    plan_rollback,
)
from chassis.errors import ChassisError, FailpointError, RegistryError
from chassis.failpoints import parse


def intent(*moves: AliasMove, action: str = "promote") -> Intent:
    return Intent("tok", action, moves, "tester", "why", {"gate_report": "r"}, "2026-12-02")


def applied(state: dict[str, int], moves: tuple[AliasMove, ...]) -> dict[str, int]:
    """What the registry holds after `moves` (an alias moved to None is removed)."""
    result = dict(state)
    for move in moves:
        if move.after is None:
            result.pop(move.alias, None)
        else:
            result[move.alias] = move.after
    return result


PROMOTE_3 = (
    AliasMove("champion", 2, 3),
    AliasMove("previous", 1, 2),
    AliasMove("challenger", 3, None),
)
BEFORE = {"champion": 2, "previous": 1, "challenger": 3}


def test_a_change_whose_audit_record_exists_stands_and_nothing_moves():
    after = applied(BEFORE, PROMOTE_3)
    recovery = plan_recovery(intent(*PROMOTE_3), after, committed=True)
    assert recovery.outcome == COMPLETED and recovery.moves == ()
    assert "it stands" in recovery.describe()


def test_a_change_killed_after_its_first_move_is_undone_alias_by_alias():
    half = applied(BEFORE, PROMOTE_3[:1])  # champion moved, previous and challenger not
    recovery = plan_recovery(intent(*PROMOTE_3), half, committed=False)
    assert recovery.outcome == UNDONE
    assert recovery.moves == (AliasMove("champion", 3, 2),)
    assert applied(half, recovery.moves) == BEFORE


def test_undo_runs_in_reverse_order_and_restores_removed_aliases():
    done = applied(BEFORE, PROMOTE_3)
    recovery = plan_recovery(intent(*PROMOTE_3), done, committed=False)
    assert [m.alias for m in recovery.moves] == ["challenger", "previous", "champion"]
    assert recovery.moves[0] == AliasMove("challenger", None, 3)
    assert applied(done, recovery.moves) == BEFORE


def test_an_alias_moved_by_someone_else_since_the_crash_is_left_as_found():
    half = applied(BEFORE, PROMOTE_3[:2])
    half["champion"] = 7  # set by hand in the MLflow UI after the lock expired
    recovery = plan_recovery(intent(*PROMOTE_3), half, committed=False)
    assert recovery.moves == (AliasMove("previous", 2, 1),)
    assert recovery.left_alone == ("champion at v7",)
    assert "left as found, moved since: champion at v7" in recovery.describe()


def plans() -> list[tuple[dict[str, int], tuple[AliasMove, ...]]]:
    """Every plan the three crash-tested operations make from small alias states."""
    found = []
    names = ("champion", "previous", "challenger")
    for values in itertools.product((None, 1, 2, 3), repeat=3):
        state = {alias: v for alias, v in zip(names, values, strict=True) if v is not None}
        champion, previous, challenger = values
        candidates = [plan_retire_challenger(state, challenger)]
        if previous is not None and previous != champion:
            candidates.append(plan_rollback(state))
        for version in (1, 2, 3, 4):
            candidates.append(plan_promotion(state, version, champion))
        found += [(state, plan.moves) for plan in candidates if plan.moves]
    return found


def test_a_crash_after_any_number_of_moves_of_any_plan_recovers_to_before_or_after():
    """Exhaustive over small states: killed after k of n moves (k = 0..n), recovery returns
    to the state before; with the record written, to the state after. Twice is as once."""
    cases = plans()
    assert len(cases) > 100  # the premise: many plans, of all three operations
    for before, moves in cases:
        for done in range(len(moves) + 1):
            half = applied(before, moves[:done])
            undo = plan_recovery(intent(*moves), half, committed=False)
            restored = applied(half, undo.moves)
            assert restored == before, (before, moves, done)
            assert plan_recovery(intent(*moves), restored, committed=False).moves == ()
        after = applied(before, moves)
        assert plan_recovery(intent(*moves), after, committed=True).moves == ()


def test_an_intent_survives_its_json_and_a_damaged_one_is_refused_by_name():
    original = intent(*PROMOTE_3)
    assert Intent.from_json(original.to_json()) == original
    with pytest.raises(RegistryError, match=r"unreadable alias intent \(KeyError"):
        Intent.from_json('{"token": "t"}')
    with pytest.raises(RegistryError, match="unreadable alias intent"):
        Intent.from_json("not json")


def test_fail_points_parse_and_refuse_malformed_entries():
    assert parse("") == {}
    assert parse("a.b=kill; c=kill ,") == {"a.b": "kill", "c": "kill"}
    for bad in ("a.b", "a.b=explode", "=kill"):
        with pytest.raises(FailpointError, match="is not NAME=ACTION"):
            parse(bad)
    assert issubclass(FailpointError, ChassisError)  # the CLI prints it as one line


def run_failpoint(armed: str) -> subprocess.CompletedProcess[str]:
    code = (
        "from chassis.failpoints import failpoint\n"
        "failpoint('unit.first'); print('after first', flush=True)\n"
        "failpoint('unit.second'); print('after second', flush=True)\n"
    )
    env = {**os.environ, "CHASSIS_FAILPOINTS": armed}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


def test_an_armed_fail_point_kills_the_process_there_and_nowhere_else():
    killed = run_failpoint("unit.second=kill")
    assert killed.returncode == -9
    assert killed.stdout == "after first\n"
    passed = run_failpoint("")
    assert passed.returncode == 0 and passed.stdout == "after first\nafter second\n"
