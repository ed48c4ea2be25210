"""A gateway's rollout state: what is valid, when a split is orphaned, what survives a restart."""

import json
from pathlib import Path

import pytest

from chassis.serving.state import (
    RolloutState,
    StateError,
    load_state,
    save_state,
    state_path,
)


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (RolloutState("m", 1, candidate_version=2, mode="fast"), "unknown mode 'fast'"),  # type: ignore[arg-type]
        (RolloutState("m", 1, 2, "canary", candidate_percent=101), "candidate percent"),
        (RolloutState("m", 1, 2, "canary", candidate_percent=-1), "candidate percent"),
        (RolloutState("m", 1, 2, "canary", mirror_percent=100.5), "mirror percent"),
        (RolloutState("m", 1, None, "shadow"), "mode 'shadow' needs a candidate version"),
        (RolloutState("m", 1, 1, "canary"), "v1 is already the stable version"),
    ],
)
def test_an_invalid_state_is_refused_naming_the_problem(state, message):
    with pytest.raises(StateError, match=message):
        state.validate()


def test_a_split_is_orphaned_only_after_its_lease_ends():
    split = RolloutState("m", 1, 2, "canary", candidate_percent=10, lease_until=100.0)
    assert not split.orphaned(100.0)
    assert split.orphaned(100.1)
    assert not RolloutState("m", 1, 2, "canary", lease_until=0.0).orphaned(1e12)  # no lease
    assert not RolloutState("m", 1, lease_until=100.0).orphaned(200.0)  # nothing to end


def test_a_warm_color_after_a_switch_counts_as_a_split():
    assert not RolloutState("m", 2).has_split
    assert RolloutState("m", 2, 1, "canary").has_split
    assert RolloutState("m", 2, 1, "stable").has_split  # candidate kept, stable mode


def test_dropping_the_split_keeps_the_stable_version_and_the_generation():
    split = RolloutState(
        "m",
        1,
        2,
        "canary",
        candidate_percent=50,
        mirror_percent=10,
        generation=7,
        lease_until=5.0,
    )
    assert split.stable_only() == RolloutState("m", 1, generation=7)


def test_a_committed_split_survives_a_restart(tmp_path: Path):
    state = RolloutState(
        "m",
        1,
        2,
        "canary",
        candidate_percent=25,
        mirror_percent=100,
        generation=3,
        lease_until=1234.5,
        history=[{"event": "commit", "generation": 3}],
    )
    save_state(tmp_path, state)
    assert load_state(tmp_path, "m") == state
    assert [p.name for p in tmp_path.iterdir()] == ["m.rollout.json"]  # no temporary left


def test_no_file_or_an_unreadable_one_means_the_stable_version_alone(tmp_path: Path):
    assert load_state(tmp_path, "m") is None
    state_path(tmp_path, "m").write_text("{not json")
    assert load_state(tmp_path, "m") is None
    state_path(tmp_path, "m").write_text(json.dumps({"model": "m", "stable_version": 1, "x": 1}))
    assert load_state(tmp_path, "m") is None  # unknown field
    state_path(tmp_path, "m").write_text(
        json.dumps({"model": "m", "stable_version": 1, "mode": "canary"})
    )
    assert load_state(tmp_path, "m") is None  # a split without a candidate


def test_an_invalid_state_is_not_written_and_the_last_one_stays(tmp_path: Path):
    good = RolloutState("m", 1, 2, "canary", candidate_percent=10)
    save_state(tmp_path, good)
    with pytest.raises(StateError):
        save_state(tmp_path, RolloutState("m", 1, 2, "canary", candidate_percent=300))
    assert load_state(tmp_path, "m") == good
    assert len(list(tmp_path.iterdir())) == 1


def test_a_model_name_cannot_place_its_state_outside_the_directory(tmp_path: Path):
    for name in ("../escape", "a/b", "/abs"):
        path = state_path(tmp_path / "states", name)
        assert path.parent == tmp_path / "states"
        save_state(tmp_path / "states", RolloutState(name, 1))
        assert load_state(tmp_path / "states", name) == RolloutState(name, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["states"]
