"""The result cache's shared second level: a Redis every replica of a fleet reads and writes.

Redis helps or stays out of the way; it never fails a request. Each command has a short
timeout (50 ms by default, connecting included; twice that for the whole command) and no
retries; the first failure opens a circuit
breaker: Redis is not asked for `retry_seconds` (2 s), so a dead or hung Redis costs one
timeout per period, not one per request; then one request tries it again. Writes go off the
request path (a task each, at most MAX_PENDING_WRITES at once; beyond that they are skipped).
Failures are counted (chassis_cache_redis_errors_total) and the state is a gauge
(chassis_cache_redis_up); going down and coming back are logged once each.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from chassis.serving.gateway_log import event
from chassis.serving.result_cache import REDIS_TIMEOUT_SECONDS, SecondLevel

logger = logging.getLogger("chassis.gateway")

RETRY_SECONDS = 2.0
MAX_PENDING_WRITES = 256
REDIS_DOWN = "cache.redis_down"
REDIS_UP = "cache.redis_up"


def redis_url_problem(url: str) -> str | None:
    """Why `url` is no Redis URL the client can use (None: it is), in words that follow
    it: the caller names the URL and where it was given."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        return "not a Redis URL (expected redis://HOST:PORT/DB, rediss://... or unix://PATH)"
    if parts.scheme == "unix":
        return None if parts.path else "names no socket path (unix:///path/to/redis.sock)"
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        return "has a port that is not a number from 1 to 65535"
    if not parts.hostname:
        return "names no host (redis://HOST:PORT/DB)"
    db = parts.path.strip("/")
    if db and not db.isdigit():
        return f"the database after the host must be a number, not {db!r}"
    from redis.connection import parse_url  # pyright: ignore[reportUnknownVariableType]

    try:
        parse_url(url)
    except ValueError as error:
        return str(error)
    return None


def second_level(url: str, timeout_seconds: float = REDIS_TIMEOUT_SECONDS) -> "RedisLevel | None":
    """The Redis level for `url` (checked by the serving policy); None when empty."""
    return RedisLevel(url, timeout_seconds) if url else None


class RedisLevel(SecondLevel):
    configured = True

    def __init__(
        self,
        url: str,
        timeout_seconds: float = REDIS_TIMEOUT_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.client = Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            # One try: the breaker decides when to try again, not the client.
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self.timeout = timeout_seconds
        self.retry_seconds = retry_seconds
        self.clock = clock
        self.up = True  # until a command fails (the gauge shows 1 only after one succeeded)
        self.answered = False
        self.retry_at = 0.0
        self.errors = 0
        self.writes: set[asyncio.Task[None]] = set()

    def _usable(self) -> bool:
        if self.up:
            return True
        now = self.clock()
        if now < self.retry_at:
            return False
        self.retry_at = now + self.retry_seconds  # one request tries it, the others wait
        return True

    def _failed(self, error: BaseException) -> None:
        self.errors += 1
        self.retry_at = self.clock() + self.retry_seconds
        if self.up:
            self.up = False
            event(
                logger,
                logging.WARNING,
                REDIS_DOWN,
                error=f"{type(error).__name__}: {error}",
                retry_seconds=self.retry_seconds,
            )

    def _succeeded(self) -> None:
        self.answered = True
        if not self.up:
            self.up = True
            event(logger, logging.INFO, REDIS_UP, errors=self.errors)

    async def get(self, key: str) -> bytes | None:
        if not self._usable():
            return None
        try:
            # The socket timeouts bound each read; this bounds the whole command.
            async with asyncio.timeout(self.timeout * 2):
                value = await self.client.get(key)
        except Exception as error:  # any failure: served uncached
            self._failed(error)
            return None
        self._succeeded()
        return value if isinstance(value, bytes) else None

    def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        if len(self.writes) >= MAX_PENDING_WRITES or not self._usable():
            return
        task = asyncio.get_running_loop().create_task(self._set(key, value, ttl_seconds))
        self.writes.add(task)
        task.add_done_callback(self.writes.discard)

    async def _set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        try:
            async with asyncio.timeout(self.timeout * 2):
                await self.client.set(key, value, px=max(1, int(ttl_seconds * 1000)))
        except Exception as error:
            self._failed(error)
            return
        self._succeeded()

    async def ping(self) -> bool:
        """Whether Redis answers now (at start: says so in the log and the gauge)."""
        try:
            async with asyncio.timeout(self.timeout * 4):
                await self.client.ping()
        except Exception as error:
            self._failed(error)
            return False
        self._succeeded()
        return True

    async def close(self) -> None:
        if self.writes:
            await asyncio.wait(list(self.writes), timeout=1.0)
        with contextlib.suppress(Exception):  # a dead Redis at shutdown: nothing to close
            await self.client.aclose()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "chassis_cache_redis_up",
            "1 while the result cache's Redis answers (its last command succeeded), 0 while it "
            "does not (requests are then served uncached, and Redis is tried again every "
            "few seconds)",
        )
        up.add_metric([], 1 if self.up and self.answered else 0)
        errors = CounterMetricFamily(
            "chassis_cache_redis_errors",
            "Result-cache Redis commands that failed or timed out (each such request was "
            "served without Redis)",
        )
        errors.add_metric([], self.errors)
        yield from (up, errors)
