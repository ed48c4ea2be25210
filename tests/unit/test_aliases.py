import random
from dataclasses import dataclass, field

import pytest

from chassis.aliases import (
    Plan,
    check_alias,
    disqualified,
    plan_challenger,
    plan_promotion,
    plan_retire_challenger,
    plan_rollback,
    retirement,
)
from chassis.errors import PromotionConflict, RegistryError, RetiredChallenger


def moves(plan):
    return {m.alias: (m.before, m.after) for m in plan.moves}


@dataclass
class Record:
    sequence: int
    action: str
    moves: list
    reason: str = "why"
    at: str = "2026-12-02T03:00:00+00:00"
    actor: str = "tester"


@dataclass
class Trail(list):
    """An audit trail and the aliases it leads to: the registry's bookkeeping, in memory."""

    aliases: dict = field(default_factory=dict)

    def apply(self, plan: Plan, reason: str = "why") -> "Trail":
        if not plan.is_noop:
            self.append(
                Record(len(self) + 1, plan.action, [m.to_dict() for m in plan.moves], reason)
            )
            for m in plan.moves:
                if m.after is None:
                    self.aliases.pop(m.alias, None)
                else:
                    self.aliases[m.alias] = m.after
        return self

    def promote(self, version: int) -> "Trail":
        return self.apply(plan_promotion(self.aliases, version, self.aliases.get("champion"), self))

    def challenger(self, version: int, allow_retired: bool = False) -> "Trail":
        return self.apply(plan_challenger(self.aliases, version, self, allow_retired=allow_retired))

    def retire(self, version: int, reason: str = "canary failed") -> "Trail":
        return self.apply(plan_retire_challenger(self.aliases, version, self), reason)

    def rollback(self, reason: str = "p99 regression") -> "Trail":
        return self.apply(plan_rollback(self.aliases, self), reason)


def test_first_promotion_has_no_previous():
    plan = plan_promotion({}, 1, expected_champion=None)
    assert moves(plan) == {"champion": (None, 1)}


def test_promotion_moves_old_champion_to_previous_and_clears_graduated_challenger():
    plan = plan_promotion({"champion": 1, "challenger": 2}, 2, expected_champion=1)
    assert moves(plan) == {"champion": (1, 2), "previous": (None, 1), "challenger": (2, None)}


def test_promotion_is_compare_and_set():
    with pytest.raises(PromotionConflict, match="expected v1 but found v3"):
        plan_promotion({"champion": 3}, 2, expected_champion=1)
    with pytest.raises(PromotionConflict, match="expected no champion but found v1"):
        plan_promotion({"champion": 1}, 2, expected_champion=None)


def test_repeating_a_completed_promotion_is_a_noop():
    assert plan_promotion({"champion": 2, "previous": 1}, 2, expected_champion=1).is_noop


def test_rollback_needs_previous_and_restores_the_one_before():
    with pytest.raises(RegistryError, match="no `previous` version"):
        plan_rollback({"champion": 2}, [])
    trail = Trail().promote(1).promote(2).promote(3)
    plan = plan_rollback({"champion": 3, "previous": 2}, trail)
    assert moves(plan) == {"champion": (3, 2), "previous": (2, 1)}
    assert moves(plan_rollback({"champion": 2, "previous": 1}, Trail().promote(1).promote(2))) == {
        "champion": (2, 1),
        "previous": (1, None),
    }


def test_challenger_rules():
    with pytest.raises(RegistryError, match="already the champion"):
        plan_challenger({"champion": 2}, 2)
    assert moves(plan_challenger({"champion": 1, "challenger": 2}, 3)) == {"challenger": (2, 3)}
    assert plan_retire_challenger({"champion": 1}, None).is_noop
    assert plan_retire_challenger({"challenger": 4}, 5).is_noop  # someone else's challenger
    assert moves(plan_retire_challenger({"challenger": 4}, 4)) == {"challenger": (4, None)}


def test_unknown_alias():
    with pytest.raises(RegistryError, match="unknown alias 'prod'"):
        check_alias("prod")


def test_a_second_rollback_never_reinstates_a_version_rolled_back_before():
    trail = Trail().promote(1).promote(2).promote(3).rollback()  # v3 rolled back
    assert trail.aliases == {"champion": 2, "previous": 1}
    trail.promote(4).rollback()  # v4 rolled back; v3 was, too
    assert trail.aliases == {"champion": 2, "previous": 1}
    trail.rollback()
    assert trail.aliases == {"champion": 1}
    assert set(disqualified(trail)) == {2, 3, 4}


def test_a_retired_version_leaves_previous_and_the_next_former_champion_takes_it():
    trail = Trail().promote(1).promote(2).promote(3)  # previous: v2
    trail.challenger(2).retire(2)  # the previous champion, tried again, retired
    assert trail.aliases == {"champion": 3, "previous": 1}
    trail.rollback()
    assert trail.aliases == {"champion": 1}  # never v2


def test_promotion_over_a_champion_rolled_back_elsewhere_keeps_previous_clean():
    trail = Trail().promote(1).promote(2).rollback()  # v2 rolled back: champion v1
    # Someone puts v2 back as champion outside Chassis (no audit record), then v3 arrives.
    trail.aliases = {"champion": 2}
    plan = plan_promotion(trail.aliases, 3, 2, trail)
    assert moves(plan) == {"champion": (2, 3), "previous": (None, 1)}


def test_rollback_refuses_a_previous_that_was_rolled_back():
    trail = Trail().promote(1).promote(2).rollback()
    # `previous` set to v2 outside Chassis: reinstating it would undo the rollback's verdict.
    with pytest.raises(RegistryError, match=r"`previous` points at v2 was rolled back"):
        plan_rollback({"champion": 1, "previous": 2}, trail)


def test_a_retired_challenger_is_refused_unless_allowed():
    trail = Trail().promote(1).challenger(2).retire(2, reason="agreement 0.62 < 0.9")
    with pytest.raises(RetiredChallenger) as refused:
        trail.challenger(2)
    assert str(refused.value).startswith(
        "v2 was retired as challenger (audit #3, 2026-12-02T03:00:00+00:00, by tester): "
        "agreement 0.62 < 0.9. Setting it as challenger again needs the explicit override"
    )
    assert trail.aliases == {"champion": 1} and len(trail) == 3  # nothing moved
    trail.challenger(3)  # another version is fine
    trail.challenger(2, allow_retired=True)
    assert trail.aliases == {"champion": 1, "challenger": 2}
    retired = retirement(trail, 2)
    assert retired is not None and retired.sequence == 3  # still retired until it is promoted
    trail.promote(2)
    assert retirement(trail, 2) is None and "previous" in trail.aliases


def test_a_champion_rolled_back_is_not_retired_as_a_challenger():
    trail = Trail().promote(1).promote(2).rollback()
    assert retirement(trail, 2) is None  # rolled back, not retired: no override needed
    assert disqualified(trail)[2].action == "rollback"


@pytest.mark.parametrize("seed", range(20))
def test_previous_is_never_rolled_back_or_retired_in_any_sequence(seed):
    rng = random.Random(seed)
    trail, next_version = Trail(), 1
    for _ in range(60):
        step = rng.choice(["promote", "promote", "challenger", "retire", "rollback"])
        try:
            if step == "promote":
                trail.promote(next_version)
                next_version += 1
            elif step == "challenger":
                trail.challenger(rng.randint(1, next_version), allow_retired=rng.random() < 0.3)
            elif step == "retire":
                # None when there is no challenger: the plan must refuse it.
                trail.retire(trail.aliases.get("challenger"))  # pyright: ignore[reportArgumentType]
            else:
                trail.rollback()
        except RegistryError:
            pass  # a refusal moves nothing
        previous = trail.aliases.get("previous")
        assert previous is None or previous not in disqualified(trail), (step, trail)
        assert previous is None or previous != trail.aliases.get("champion")
