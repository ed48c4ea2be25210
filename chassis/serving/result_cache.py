"""The gateway's result cache: answers of a version kept by the exact input they answered.

Two levels: an in-process LRU bounded in bytes with a TTL (`LocalLevel`), then, when a Redis
URL is set, a Redis shared by the fleet (`redis_level.RedisLevel`). A key is a sha256 over the
model, the routed version, that version's ONNX digest and the canonical bytes of the input
(its kind, dtype and shape included), so an answer is only ever given again by the very
version and bytes that computed it: a promotion or a rollback changes the routed version, and
with it every key. Identical requests in flight at once are computed once (`ResultCache.
answer`: one future per key, the others await it). Redis is optional in every sense: an error
or a slow answer (past a 50 ms timeout by default) means the request is served uncached, is
counted, and Redis is left alone for a few seconds (redis_level.py's circuit breaker).
"""

import asyncio
import contextlib
import functools
import hashlib
import importlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, cast

import numpy as np
import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# What the x-chassis-cache header and chassis_cache_requests_total's `level` say.
LOCAL = "local"
REDIS = "redis"
MISS = "miss"
# An identical request was being computed: this one awaited its answer (a computed answer,
# given once per request like any other, counted in chassis_cache_coalesced_total).
COALESCED = "coalesced"
# The header's bytes for each, made once.
CACHE_HEADERS = {level: level.encode() for level in (LOCAL, REDIS, MISS, COALESCED)}

# Python's objects around one kept answer (the entry's tuple, the key's bytes object, the
# OrderedDict's slot) cost about this much besides the key's length, and each prediction up
# to PREDICTION_BYTES (a pointer and a float): counted, so the byte budget bounds real memory
# (tracemalloc over 10,000 answers with 32-byte keys: ~300 bytes an entry of one float, ~590
# of ten; counted: 309 and 597, and the answer's JSON too with Redis on).
ENTRY_OVERHEAD_BYTES = 245
PREDICTION_BYTES = 32


# One Redis command's limit by default (CHASSIS_GATEWAY_CACHE_REDIS_TIMEOUT_SECONDS).
REDIS_TIMEOUT_SECONDS = 0.05


@dataclass(frozen=True)
class CacheSettings:
    """The cache of one gateway: which models use it, its local byte budget and TTL, and the
    optional Redis (empty: none). From the serving policy (CHASSIS_GATEWAY_CACHE_*)."""

    models: frozenset[str]
    max_bytes: int = 64 * 1024 * 1024
    ttl_seconds: float = 300.0
    redis_url: str = ""
    redis_timeout_seconds: float = REDIS_TIMEOUT_SECONDS


class Answer(NamedTuple):
    """What a cached answer holds: the version that computed it and its predictions (class
    labels or a regressor's values), exactly as the uncached answer gives them."""

    version: int
    predictions: list[int] | list[float]


class Digest(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...


def _sha256_constructor() -> Callable[[bytes], Digest]:
    """Python's own sha256 (`_sha2` from 3.12, `_sha256` before), else hashlib's: the same
    digest, but hashlib's goes through OpenSSL 3, whose per-object setup cost ~5 us more a
    request in the gateway (measured between ONNX Runtime calls; ~0.2 us in a tight loop)."""
    for module in ("_sha2", "_sha256"):
        with contextlib.suppress(ImportError, AttributeError):
            return cast(Callable[[bytes], Digest], importlib.import_module(module).sha256)
    return cast(Callable[[bytes], Digest], hashlib.sha256)


SHA256 = _sha256_constructor()


def cache_key(model: str, version: int, sha256: str, request: np.ndarray | list[str]) -> bytes:
    """The sha256 naming `request` as answered by `version` of `model` (whose ONNX bytes hash
    to `sha256`): rows of numbers as their C-contiguous bytes with their dtype and shape (the
    gateway parses numbers as float32; the same bytes in another shape or dtype are another
    request), texts as the UTF-8 of their JSON list. The version's digest is in it too, so
    two registries sharing one Redis (both with a `v3`) never read each other's answers.
    Everything before the input's bytes is made once per version, dtype and shape
    (`_rows_prefix`): a miss's key is one lookup, one join and one hash."""
    if isinstance(request, np.ndarray):
        # The dtype object, not its `.str` (made anew by every read: ~0.5 us), names the
        # prefix; `tobytes()` gives C order whatever the layout (no `ascontiguousarray`).
        prefix = _rows_prefix(model, version, sha256, request.dtype, request.shape)
        return SHA256(prefix + request.tobytes()).digest()
    return SHA256(
        _version_prefix(model, version, sha256) + b"texts\0" + orjson.dumps(request)
    ).digest()


@functools.lru_cache(maxsize=1024)
def _version_prefix(model: str, version: int, sha256: str) -> bytes:
    """A key's fixed start, made once per version."""
    return b"%s\0%d\0%s\0" % (model.encode(), version, sha256.encode())


@functools.lru_cache(maxsize=4096)
def _rows_prefix(
    model: str, version: int, sha256: str, dtype: np.dtype, shape: tuple[int, ...]
) -> bytes:
    """A rows key's start: the version's, then the rows' dtype (as `dtype.str`: "<f4")
    and shape."""
    return _version_prefix(model, version, sha256) + b"rows\0%s\0%s\0" % (
        dtype.str.encode(),
        str(shape).encode(),
    )


def entry_size(key: bytes, answer: Answer, encoded_bytes: int) -> int:
    """The bytes an answer counts for in the budget (see ENTRY_OVERHEAD_BYTES);
    `encoded_bytes`: its JSON's length (0 when not encoded: PREDICTION_BYTES covers it)."""
    return (
        ENTRY_OVERHEAD_BYTES + len(key) + encoded_bytes + PREDICTION_BYTES * len(answer.predictions)
    )


# One kept answer: (version, model, size in the budget, expiry on time.monotonic(), then
# each prediction). One flat tuple of atoms (no list, no Answer, no inner tuple), which
# CPython's collector stops tracking at the first collection the entry survives, so kept
# entries never reach the old generation. Kept as GC-tracked objects (a list, the Answer,
# the entry: three a miss), every miss added to the count that triggers a full collection,
# and each walks the gateway's whole heap (~175,000 tracked objects once `chassis serve`
# has started; 0.13-0.19 s of CPU each on the 2-core machine): over HTTP that was +5-7 us a
# miss in collections (docs/benchmark-history.md, "Result cache"). A nested tuple of
# predictions would be untracked one collection later than the entry that holds it, so the
# entry one later still.
Entry = tuple[int, str, int, float, *tuple[int | float, ...]]
FIRST_PREDICTION = 4  # where an entry's predictions start


@dataclass
class LocalLevel:
    """An LRU of answers bounded in bytes (`entry_size`), each kept at most `ttl_seconds`.
    Used from the event loop's thread only."""

    max_bytes: int
    ttl_seconds: float
    clock: Callable[[], float] = time.monotonic
    entries: OrderedDict[bytes, Entry] = field(default_factory=OrderedDict[bytes, Entry])
    used_bytes: int = 0
    # Entries dropped, by why: size (the budget), ttl (expired), retired (version unloaded).
    evicted: dict[str, int] = field(default_factory=lambda: {"size": 0, "ttl": 0, "retired": 0})

    def get(self, key: bytes) -> Answer | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if self.clock() >= entry[3]:
            self._drop(key, "ttl")
            return None
        self.entries.move_to_end(key)
        # A list of its own: the caller's to keep.
        return Answer(entry[0], cast("list[int] | list[float]", list(entry[FIRST_PREDICTION:])))

    def put(self, key: bytes, model: str, answer: Answer, encoded_bytes: int) -> None:
        """Keep `answer` (whose predictions' JSON is `encoded_bytes` long); the least
        recently used entries leave until the budget holds. An answer larger than the whole
        budget is not kept."""
        size = entry_size(key, answer, encoded_bytes)
        if size > self.max_bytes:
            return
        entries = self.entries
        if key in entries:
            self._drop(key, None)
        expiry = self.clock() + self.ttl_seconds
        entries[key] = (answer.version, model, size, expiry, *answer.predictions)
        self.used_bytes += size
        while self.used_bytes > self.max_bytes:
            self.used_bytes -= entries.popitem(last=False)[1][2]
            self.evicted["size"] += 1

    def forget_version(self, model: str, version: int) -> int:
        """Drop every answer of a retired version (they could never be read again: keys
        name the version); returns how many."""
        keys = [k for k, e in self.entries.items() if e[1] == model and e[0] == version]
        for key in keys:
            self._drop(key, "retired")
        return len(keys)

    def _drop(self, key: bytes, why: str | None) -> None:
        self.used_bytes -= self.entries.pop(key)[2]
        if why is not None:
            self.evicted[why] += 1


class SecondLevel:
    """What the cache asks of a shared level (redis_level.RedisLevel; a test's fake): never
    raises, an unusable level answers None and stores nothing."""

    configured = False

    async def get(self, key: str) -> bytes | None:
        return None

    def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        return None

    async def ping(self) -> bool:
        return False

    async def close(self) -> None:
        return None

    def collect(self) -> Iterator[Metric]:
        return iter(())


Compute = Callable[[], Awaitable[tuple[np.ndarray, list[int] | list[float]]]]


class ResultCache(Collector):
    """Both levels, single-flight and the counts /metrics shows (a Collector registered on
    the gateway's metrics registry)."""

    def __init__(self, settings: CacheSettings, second: SecondLevel | None = None) -> None:
        self.settings = settings
        self.models = settings.models
        self.local = LocalLevel(settings.max_bytes, settings.ttl_seconds)
        self.second = second or SecondLevel()
        self.flights: dict[bytes, asyncio.Future[Answer]] = {}
        # model -> count: the local level's hits and misses (read by `collect` only, so
        # plain ints, no metric object touched a request), Redis's, and requests that
        # awaited an identical one.
        self.local_hits: dict[str, int] = {}
        self.local_misses: dict[str, int] = {}
        self.requests: dict[tuple[str, str, str], int] = {}
        self.coalesced: dict[str, int] = {}

    def lookup(
        self, model: str, version: int, sha256: str, request: np.ndarray | list[str]
    ) -> tuple[bytes, Answer | None]:
        """`request`'s key, and its answer by `version` if the local level holds it (counted
        either way). Synchronous: a hit costs no await."""
        key = cache_key(model, version, sha256, request)
        local = self.local.get(key)
        counts = self.local_hits if local is not None else self.local_misses
        counts[model] = counts.get(model, 0) + 1
        return key, local

    def inline(self, key: bytes) -> bool:
        """Whether a local miss may be computed right here, with no await between the lookup
        and `keep`: nothing else to ask (no second level) and no identical request being
        computed. Such a computation cannot interleave with an identical request (the event
        loop runs nothing else meanwhile), so it needs no flight for them to await: the
        future, its registration and its removal are only paid by computations that wait."""
        return not self.second.configured and key not in self.flights

    def keep(
        self, key: bytes, model: str, version: int, predictions: list[int] | list[float]
    ) -> Answer:
        """Keep what `version` just computed for `key` (locally, and in Redis when set)."""
        answer = Answer(version, predictions)
        if self.second.configured:
            encoded = orjson.dumps([version, predictions])
            self.local.put(key, model, answer, len(encoded))
            self.second.put(redis_key(model, version, key), encoded, self.settings.ttl_seconds)
        else:  # no JSON made only to be measured (a classifier's label: 1-3 bytes)
            self.local.put(key, model, answer, 0)
        return answer

    async def answer(
        self,
        model: str,
        version: int,
        sha256: str,
        request: np.ndarray | list[str],
        compute: Compute,
    ) -> tuple[Answer, str, np.ndarray | None]:
        """`request`'s answer by `version`: kept locally, kept in Redis, being computed for an
        identical request (awaited), or computed now by `compute` and kept. Returns the answer,
        where it came from, and the model's output array when computed here (None otherwise).
        A failure of `compute` is every waiting request's failure (they sent the same bytes);
        nothing is kept of it. (The gateway calls the steps itself: `lookup`, then `inline`
        to compute a fast model's answer with no flight, else `missed`.)"""
        key, local = self.lookup(model, version, sha256, request)
        if local is not None:
            return local, LOCAL, None
        return await self.missed(key, model, version, compute)

    async def missed(
        self, key: bytes, model: str, version: int, compute: Compute
    ) -> tuple[Answer, str, np.ndarray | None]:
        """A local miss's answer (see `answer`): an identical request's, awaited; Redis's; or
        computed by `compute` under a flight identical requests await."""
        flight = self.flights.get(key)
        if flight is not None:
            try:
                answer = await asyncio.shield(flight)
            except asyncio.CancelledError:
                if not flight.cancelled():
                    raise  # this request itself was cancelled
                # The computing request was cancelled (its client left): compute it here.
            else:
                self.coalesced[model] = self.coalesced.get(model, 0) + 1
                return answer, COALESCED, None
        flight = asyncio.get_running_loop().create_future()
        self.flights[key] = flight
        try:
            found = await self._from_second(model, version, key)
            if found is not None:
                flight.set_result(found)
                return found, REDIS, None
            outputs, predictions = await compute()
            answer = self.keep(key, model, version, predictions)
            flight.set_result(answer)
            return answer, MISS, outputs
        except BaseException as error:
            if isinstance(error, asyncio.CancelledError):
                flight.cancel()
            else:
                flight.set_exception(error)
                flight.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            if self.flights.get(key) is flight:
                del self.flights[key]

    async def _from_second(self, model: str, version: int, key: bytes) -> Answer | None:
        if not self.second.configured:
            return None
        value = await self.second.get(redis_key(model, version, key))
        if value is None:
            self._count(model, REDIS, "miss")
            return None
        try:
            kept_version, predictions = orjson.loads(value)
        except (orjson.JSONDecodeError, TypeError, ValueError):
            kept_version, predictions = None, None
        if kept_version != version or not isinstance(predictions, list):
            self._count(model, REDIS, "miss")  # not what this key's writer writes: ignored
            return None
        answer = Answer(version, predictions)
        self.local.put(key, model, answer, len(value))
        self._count(model, REDIS, "hit")
        return answer

    def forget_version(self, model: str, version: int) -> None:
        """A version was unloaded: its local answers go (Redis's are keyed by the version,
        never read again, and expire with their TTL)."""
        self.local.forget_version(model, version)

    async def start(self) -> None:
        """At start: whether Redis answers is said once (log, chassis_cache_redis_up)."""
        if self.second.configured:
            await self.second.ping()

    async def close(self) -> None:
        await self.second.close()

    def _count(self, model: str, level: str, result: str) -> None:  # Redis's counts
        key = (model, level, result)
        self.requests[key] = self.requests.get(key, 0) + 1

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "chassis_cache_requests",
            "Predict requests looked up in the result cache, by level (local, then redis when "
            "configured, asked on a local miss only) and result (hit, miss)",
            labels=["model", "level", "result"],
        )
        for model in sorted(self.models):
            for level in (LOCAL, REDIS) if self.second.configured else (LOCAL,):
                for result in ("hit", "miss"):
                    if level == LOCAL:
                        counts = self.local_hits if result == "hit" else self.local_misses
                        count = counts.get(model, 0)
                    else:
                        count = self.requests.get((model, level, result), 0)
                    requests.add_metric([model, level, result], count)
        coalesced = CounterMetricFamily(
            "chassis_cache_coalesced",
            "Predict requests that awaited an identical request being computed (single-flight)",
            labels=["model"],
        )
        for model in sorted(self.models):
            coalesced.add_metric([model], self.coalesced.get(model, 0))
        size = GaugeMetricFamily(
            "chassis_cache_bytes",
            "Bytes the in-process result cache holds (its entries' memory, estimated), against "
            "chassis_cache_max_bytes",
        )
        size.add_metric([], self.local.used_bytes)
        budget = GaugeMetricFamily(
            "chassis_cache_max_bytes", "The in-process result cache's byte budget"
        )
        budget.add_metric([], self.settings.max_bytes)
        entries = GaugeMetricFamily(
            "chassis_cache_entries", "Answers the in-process result cache holds"
        )
        entries.add_metric([], len(self.local.entries))
        evicted = CounterMetricFamily(
            "chassis_cache_evictions",
            "Answers dropped from the in-process result cache, by reason: size (the byte "
            "budget, least recently used first), ttl (expired), retired (its version unloaded)",
            labels=["reason"],
        )
        for reason, count in self.local.evicted.items():
            evicted.add_metric([reason], count)
        yield from (requests, coalesced, size, budget, entries, evicted)
        yield from self.second.collect()


def redis_key(model: str, version: int, key: bytes) -> str:
    """Where an answer lives in Redis: readable model and version (to inspect or delete a
    version's answers by pattern), then the request's key."""
    return f"chassis:result:{model}:v{version}:{key.hex()}"
