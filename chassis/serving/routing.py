"""Which version answers a request: pure functions of the rollout state and request key."""

import hashlib
import random

from chassis.serving.state import RolloutState

BUCKETS = 10_000


def bucket_of(key: str) -> int:
    """A stable bucket in [0, 10000) for a sticky key: same key, same bucket, every replica."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % BUCKETS


def choose_version(state: RolloutState, key: str | None, rng: random.Random) -> int:
    """The version whose answer is returned. Shadow and blue-green always answer stable."""
    if state.mode != "canary" or state.candidate_version is None:
        return state.stable_version
    threshold = state.candidate_percent / 100 * BUCKETS
    bucket = bucket_of(key) if key else rng.randrange(BUCKETS)
    return state.candidate_version if bucket < threshold else state.stable_version


def mirror_pair(state: RolloutState, rng: random.Random) -> tuple[int, int] | None:
    """(judged, reference) versions that also run this request, off the request path, to
    compare their answers and costs; None: this request is not mirrored.

    Shadow and a blue-green preview mirror every request (the candidate against stable); a
    canary mirrors `mirror_percent` of requests (candidate against stable); after a
    blue-green switch, the new live color against the warm old one. Between rollouts,
    nothing.
    """
    if state.mode in ("shadow", "blue-green") and state.candidate_version is not None:
        return state.candidate_version, state.stable_version
    if state.mirror_percent <= 0 or (
        state.mirror_percent < 100 and rng.random() * 100 >= state.mirror_percent
    ):
        return None
    if state.mode == "canary" and state.candidate_version is not None:
        return state.candidate_version, state.stable_version
    if state.mode == "stable" and state.warm_version is not None:
        return state.stable_version, state.warm_version
    return None
