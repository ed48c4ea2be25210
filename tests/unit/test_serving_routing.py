"""Which version answers and which requests are mirrored: split consistency and shares."""

import random

import pytest

from chassis.serving.routing import BUCKETS, bucket_of, choose_version, mirror_pair
from chassis.serving.state import RolloutState

KEYS = [f"user-{i}" for i in range(20_000)]


def canary(percent: float, mirror: float = 0.0) -> RolloutState:
    return RolloutState(
        "m",
        1,
        candidate_version=2,
        mode="canary",
        candidate_percent=percent,
        mirror_percent=mirror,
    ).validate()


def test_a_key_has_one_bucket_on_every_replica():
    assert [bucket_of(k) for k in KEYS[:100]] == [bucket_of(k) for k in KEYS[:100]]
    assert all(0 <= bucket_of(k) < BUCKETS for k in KEYS)


def test_buckets_spread_evenly():
    counts = [0] * 10
    for key in KEYS:
        counts[bucket_of(key) * 10 // BUCKETS] += 1
    assert all(abs(c - len(KEYS) / 10) < 0.1 * len(KEYS) / 10 for c in counts), counts


@pytest.mark.parametrize("percent", [1, 10, 25, 50, 90])
def test_the_candidate_answers_its_share_of_keys(percent):
    rng = random.Random(0)
    share = sum(choose_version(canary(percent), k, rng) == 2 for k in KEYS) / len(KEYS)
    assert share == pytest.approx(percent / 100, abs=0.01)


def test_a_sticky_key_keeps_its_version_and_stays_on_the_candidate_as_its_share_grows():
    rng = random.Random(0)
    at_10 = {k for k in KEYS if choose_version(canary(10), k, rng) == 2}
    assert at_10 == {k for k in KEYS if choose_version(canary(10), k, rng) == 2}
    at_25 = {k for k in KEYS if choose_version(canary(25), k, rng) == 2}
    assert at_10 < at_25  # growing the share moves keys to the candidate, never back


def test_zero_and_full_shares_are_exact():
    rng = random.Random(0)
    assert {choose_version(canary(0), k, rng) for k in KEYS[:2000]} == {1}
    assert {choose_version(canary(100), k, rng) for k in KEYS[:2000]} == {2}


def test_a_request_without_a_key_is_routed_at_random_at_the_share():
    rng = random.Random(1)
    share = sum(choose_version(canary(30), None, rng) == 2 for _ in range(20_000)) / 20_000
    assert share == pytest.approx(0.30, abs=0.015)


@pytest.mark.parametrize("mode", ["shadow", "blue-green"])
def test_shadow_and_a_blue_green_preview_always_answer_stable_and_mirror_everything(mode):
    state = RolloutState("m", 1, candidate_version=2, mode=mode).validate()
    rng = random.Random(0)
    assert {choose_version(state, k, rng) for k in KEYS[:1000]} == {1}
    assert {mirror_pair(state, rng) for _ in range(1000)} == {(2, 1)}


def test_stable_answers_alone_and_mirrors_nothing_between_rollouts():
    state = RolloutState("m", 1, mirror_percent=100).validate()
    rng = random.Random(0)
    assert choose_version(state, "k", rng) == 1
    assert mirror_pair(state, rng) is None  # no warm color to compare with


def test_after_a_switch_the_new_color_is_compared_with_the_warm_one():
    state = RolloutState("m", 2, warm_version=1, mirror_percent=100).validate()
    assert mirror_pair(state, random.Random(0)) == (2, 1)
    assert mirror_pair(RolloutState("m", 2, warm_version=1), random.Random(0)) is None


def test_a_canary_mirrors_its_mirror_share_of_requests():
    rng = random.Random(2)
    assert {mirror_pair(canary(10, 0), rng) for _ in range(1000)} == {None}
    assert {mirror_pair(canary(10, 100), rng) for _ in range(1000)} == {(2, 1)}
    pairs = [mirror_pair(canary(10, 20), rng) for _ in range(20_000)]
    assert set(pairs) == {None, (2, 1)}
    assert pairs.count((2, 1)) / len(pairs) == pytest.approx(0.20, abs=0.015)
