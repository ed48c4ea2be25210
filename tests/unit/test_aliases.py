import pytest

from chassis.aliases import (
    PromotionConflict,
    check_alias,
    plan_challenger,
    plan_promotion,
    plan_retire_challenger,
    plan_rollback,
)
from chassis.errors import RegistryError


def moves(plan):
    return {m.alias: (m.before, m.after) for m in plan.moves}


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
        plan_rollback({"champion": 2}, None)
    plan = plan_rollback({"champion": 3, "previous": 2}, champion_before_previous=1)
    assert moves(plan) == {"champion": (3, 2), "previous": (2, 1)}
    assert moves(plan_rollback({"champion": 2, "previous": 1}, None)) == {
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
