"""The result cache alone: its byte-bounded LRU with a TTL, its keys, single-flight, the
Redis level's circuit breaker (against a port nothing listens on) and its URL checks."""

import asyncio
import gc
import hashlib
from collections.abc import Sequence

import numpy as np
import pytest

from chassis.errors import SettingsError
from chassis.serving.embedded import free_port
from chassis.serving.policy import serving_policy_from
from chassis.serving.redis_level import RedisLevel, redis_url_problem
from chassis.serving.result_cache import (
    COALESCED,
    ENTRY_OVERHEAD_BYTES,
    LOCAL,
    MISS,
    PREDICTION_BYTES,
    Answer,
    CacheSettings,
    LocalLevel,
    ResultCache,
    cache_key,
    entry_size,
)
from tests.fixtures.cli import chassis_in_process

SHA = "ab" * 32
ROWS = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def key(i: int) -> bytes:
    return cache_key("m", 1, SHA, np.array([[float(i)]], dtype=np.float32))


def test_the_local_level_holds_its_byte_budget_and_drops_the_least_recently_used():
    entry = entry_size(key(0), Answer(1, [0]), len(b"[1,[0]]"))
    assert entry == ENTRY_OVERHEAD_BYTES + 32 + 7 + PREDICTION_BYTES
    level = LocalLevel(max_bytes=3 * entry, ttl_seconds=60)
    for i in range(3):
        level.put(key(i), "m", Answer(1, [0]), len(b"[1,[0]]"))
    assert level.used_bytes == 3 * entry
    assert level.get(key(0)) == Answer(1, [0])  # 0 is now the most recently used
    level.put(key(3), "m", Answer(1, [0]), len(b"[1,[0]]"))
    assert level.used_bytes <= 3 * entry
    assert level.get(key(1)) is None  # the least recently used left
    assert level.get(key(0)) is not None and level.get(key(3)) is not None
    assert level.evicted["size"] == 1
    # An answer larger than the whole budget is not kept (and evicts nothing).
    level.put(key(9), "m", Answer(1, [0] * 1000), 4 * entry)
    assert level.get(key(9)) is None and len(level.entries) == 3


def test_an_answer_is_given_again_only_within_its_ttl():
    clock = Clock()
    level = LocalLevel(max_bytes=1 << 20, ttl_seconds=5, clock=clock)
    level.put(key(1), "m", Answer(1, [7]), 5)
    clock.now += 4.9
    assert level.get(key(1)) == Answer(1, [7])
    clock.now += 0.2
    assert level.get(key(1)) is None
    assert level.used_bytes == 0 and level.evicted["ttl"] == 1


def test_a_retired_version_loses_its_answers_and_only_its_own():
    level = LocalLevel(max_bytes=1 << 20, ttl_seconds=60)
    old = cache_key("m", 1, SHA, ROWS)
    new = cache_key("m", 2, SHA, ROWS)
    other = cache_key("other", 1, SHA, ROWS)
    for k, model, version in ((old, "m", 1), (new, "m", 2), (other, "other", 1)):
        level.put(k, model, Answer(version, [0, 1]), 10)
    assert level.forget_version("m", 1) == 1
    assert level.get(old) is None
    assert level.get(new) is not None and level.get(other) is not None


def test_kept_answers_are_left_out_of_the_garbage_collectors_walks():
    # A miss keeps an entry for minutes: if the collector tracked it, every miss would add
    # to what triggers a full collection of the gateway's whole heap (BENCHMARKS.md).
    level = LocalLevel(max_bytes=1 << 20, ttl_seconds=60)
    level.put(key(1), "m", Answer(1, [3, 1]), 0)
    level.put(key(2), "m", Answer(1, [0.25]), 0)
    gc.collect()
    assert not any(gc.is_tracked(entry) for entry in level.entries.values())


def test_a_hit_gives_a_list_of_its_own():
    level = LocalLevel(max_bytes=1 << 20, ttl_seconds=60)
    computed = [3, 1]
    level.put(key(1), "m", Answer(1, computed), 0)
    computed.append(9)  # the computing request's list is not the kept answer
    first = level.get(key(1))
    assert first is not None and first == Answer(1, [3, 1])
    first.predictions.append(9)  # nor is one hit's list the next hit's
    assert level.get(key(1)) == Answer(1, [3, 1])


def test_keys_differ_by_dtype_shape_kind_version_and_digest_and_not_by_memory_layout():
    base = cache_key("m", 1, SHA, ROWS)
    # The documented canonical bytes, through the standard sha256.
    canonical = b"m\x001\x00" + SHA.encode() + b"\x00rows\x00<f4\x00(2, 2)\x00" + ROWS.tobytes()
    assert base == hashlib.sha256(canonical).digest()
    assert cache_key("m", 1, SHA, ROWS.copy()) == base
    assert cache_key("m", 1, SHA, np.asfortranarray(ROWS)) == base  # same rows, other layout
    different = [
        cache_key("m", 1, SHA, ROWS.astype(np.float64)),  # same numbers, another dtype
        cache_key("m", 1, SHA, ROWS.reshape(1, 4)),  # same bytes, another shape
        cache_key("m", 2, SHA, ROWS),  # another version
        cache_key("m", 1, "cd" * 32, ROWS),  # another version's bytes under the same number
        cache_key("n", 1, SHA, ROWS),
        cache_key("m", 1, SHA, ["1.0", "2.0"]),
        cache_key("m", 1, SHA, np.array([[1.0, 2.0], [3.0, 4.5]], dtype=np.float32)),
    ]
    assert len({base, *different}) == len(different) + 1
    assert cache_key("m", 1, SHA, ["a", "b"]) != cache_key("m", 1, SHA, ["ab"])


def test_identical_requests_in_flight_are_computed_once():
    async def scenario() -> tuple[int, list[tuple[Answer, str]]]:
        cache = ResultCache(CacheSettings(frozenset({"m"})))
        calls = 0
        release = asyncio.Event()

        async def compute() -> tuple[np.ndarray, list[int] | list[float]]:
            nonlocal calls
            calls += 1
            await release.wait()
            return np.array([3, 1]), [3, 1]

        tasks = [asyncio.create_task(cache.answer("m", 1, SHA, ROWS, compute)) for _ in range(5)]
        await asyncio.sleep(0)  # every request reaches the cache before the answer exists
        release.set()
        answered = [(answer, level) for answer, level, _ in await asyncio.gather(*tasks)]
        again = await cache.answer("m", 1, SHA, ROWS, compute)
        return calls, [*answered, (again[0], again[1])]

    calls, answered = asyncio.run(scenario())
    assert calls == 1
    assert all(answer == Answer(1, [3, 1]) for answer, _ in answered)
    assert sorted(level for _, level in answered[:5]) == sorted([MISS, *[COALESCED] * 4])
    assert answered[5][1] == LOCAL


def test_a_failed_computation_fails_every_identical_request_and_keeps_nothing():
    async def scenario() -> tuple[Sequence[object], int]:
        cache = ResultCache(CacheSettings(frozenset({"m"})))

        async def compute() -> tuple[np.ndarray, list[int] | list[float]]:
            await asyncio.sleep(0)
            raise RuntimeError("model failed")

        tasks = [asyncio.create_task(cache.answer("m", 1, SHA, ROWS, compute)) for _ in range(3)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return results, len(cache.local.entries)

    results, kept = asyncio.run(scenario())
    assert all(isinstance(r, RuntimeError) for r in results), results
    assert kept == 0


def test_a_waiting_request_computes_itself_when_the_computing_one_is_cancelled():
    async def scenario() -> tuple[Answer, str]:
        cache = ResultCache(CacheSettings(frozenset({"m"})))
        hang = asyncio.Event()

        async def hung() -> tuple[np.ndarray, list[int] | list[float]]:
            await hang.wait()
            return np.array([0]), [0]

        async def quick() -> tuple[np.ndarray, list[int] | list[float]]:
            return np.array([5]), [5]

        first = asyncio.create_task(cache.answer("m", 1, SHA, ROWS, hung))
        await asyncio.sleep(0)
        second = asyncio.create_task(cache.answer("m", 1, SHA, ROWS, quick))
        await asyncio.sleep(0)
        first.cancel()  # its client left
        answer, level, _ = await second
        return answer, level

    answer, level = asyncio.run(scenario())
    assert (answer, level) == (Answer(1, [5]), MISS)


def test_a_miss_is_computed_inline_only_with_no_identical_flight_and_no_second_level():
    async def scenario() -> tuple[bool, bool, bool]:
        cache = ResultCache(CacheSettings(frozenset({"m"})))
        release = asyncio.Event()

        async def compute() -> tuple[np.ndarray, list[int] | list[float]]:
            await release.wait()
            return np.array([2]), [2]

        key, found = cache.lookup("m", 1, SHA, ROWS)
        alone = found is None and cache.inline(key)
        waiting = asyncio.create_task(cache.missed(key, "m", 1, compute))
        await asyncio.sleep(0)  # its flight is registered: an identical request must await it
        during = cache.inline(key)
        release.set()
        await waiting
        cache.second.configured = True  # Redis is asked first (an await): never inline
        with_redis = cache.inline(cache.lookup("m", 1, SHA, ROWS[:1])[0])
        return alone, during, with_redis

    assert asyncio.run(scenario()) == (True, False, False)


def test_a_dead_redis_is_asked_once_per_retry_period_and_counted():
    clock = Clock()
    # Nothing listens on this loopback port: every command fails at once.
    level = RedisLevel(f"redis://127.0.0.1:{free_port()}/0", retry_seconds=2.0, clock=clock)

    async def scenario() -> list[bytes | None]:
        got = [await level.get("k") for _ in range(10)]
        clock.now += 2.1
        got.append(await level.get("k"))
        await level.close()
        return got

    got = asyncio.run(scenario())
    assert got == [None] * 11
    assert level.errors == 2  # the first try, then one after the retry period: not 11
    assert not level.up
    samples = {m.name: m.samples[0].value for m in level.collect()}
    assert samples == {"chassis_cache_redis_up": 0, "chassis_cache_redis_errors": 2}


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("localhost:6379", "not a Redis URL"),
        ("http://127.0.0.1:6379", "not a Redis URL"),
        ("redis://127.0.0.1:notaport", "port that is not a number"),
        ("redis://127.0.0.1:99999", "port that is not a number"),
        ("redis://:6379", "names no host"),
        ("redis://127.0.0.1:6379/zero", "database after the host must be a number"),
        ("redis://127.0.0.1:6379/0?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
    ],
)
def test_a_malformed_redis_url_is_refused_naming_it(url, named, monkeypatch):
    problem = redis_url_problem(url)
    assert problem is not None and named in problem
    # Named as the user gave it: the option when given as one, else the variable.
    with pytest.raises(SettingsError) as refused:
        serving_policy_from({"cache_redis_url": url})
    assert str(refused.value) == f"--cache-redis-url {url!r}: {problem}"
    monkeypatch.setenv("CHASSIS_GATEWAY_CACHE_REDIS_URL", url)
    with pytest.raises(SettingsError) as refused:
        serving_policy_from({})
    assert str(refused.value) == f"CHASSIS_GATEWAY_CACHE_REDIS_URL {url!r}: {problem}"


def test_well_formed_redis_urls_pass():
    for url in ("redis://127.0.0.1:6379/0", "rediss://cache.internal", "unix:///run/redis.sock"):
        assert redis_url_problem(url) is None, url


@pytest.mark.parametrize("given_by", ["flag", "environment"])
def test_serve_with_a_malformed_redis_url_exits_1_with_one_line_naming_it(
    given_by, tmp_path, monkeypatch
):
    monkeypatch.setenv("CHASSIS_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    url = "redis://127.0.0.1:port"
    options = ["serve", "--model", "m", "--cache-models", "m"]
    if given_by == "flag":
        options += ["--cache-redis-url", url]
        named = "--cache-redis-url"
    else:
        monkeypatch.setenv("CHASSIS_GATEWAY_CACHE_REDIS_URL", url)
        named = "CHASSIS_GATEWAY_CACHE_REDIS_URL"
    code, _, stderr = chassis_in_process(*options)
    assert code == 1
    assert stderr.strip().splitlines() == [
        f"error: {named} '{url}': has a port that is not a number from 1 to 65535"
    ]


def test_the_cached_models_must_be_served_and_star_means_every_one():
    from chassis_cli.serve import cache_settings

    assert cache_settings(serving_policy_from({}), ["m"]) is None  # off by default
    every = cache_settings(serving_policy_from({"cache_models": "*"}), ["m", "n"])
    assert every is not None and every.models == frozenset({"m", "n"})
    with pytest.raises(SettingsError, match=r"CHASSIS_GATEWAY_CACHE_MODELS .* names 'typo'"):
        cache_settings(serving_policy_from({"cache_models": "m, typo"}), ["m"])
