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


def shadow_version(state: RolloutState) -> int | None:
    """The version that also sees a copy of each request, its answer compared, not returned."""
    return state.candidate_version if state.mode == "shadow" else None
