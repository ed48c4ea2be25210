"""The result cache with real processes: two `chassis serve` gateways sharing one real
redis-server, on tiny registered versions (no release run): v1 answers x + 1, v2 x + 2 (set
as regressors, so every version's answer to a row is its own and a stale one shows)."""

import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from chassis.registry.tags import TAG_TASK
from tests.fixtures.gateway import GatewayProcess
from tests.fixtures.redis_server import RedisServer
from tests.fixtures.registries import home_registry
from tests.fixtures.registry_versions import register_tiny_versions

MODEL = "cached-tiny"
# A few rows sent again and again: most answers are cache hits.
ROWS = [0.25, 1.5, -3.0]


def expected(version: int, x: float) -> float:
    """What `version` computes for row [x] (y = x + version, in float32)."""
    return float(np.float32(x) + np.float32(version))


class Gateways:
    def __init__(self, a: GatewayProcess, b: GatewayProcess, redis: RedisServer, auth: dict):
        self.a, self.b, self.redis, self.auth = a, b, redis, auth

    def admin(self, action: str, body: dict | None = None) -> dict:
        answer = httpx.post(
            f"{self.a.url}/admin/models/{MODEL}/{action}", json=body, headers=self.auth, timeout=30
        )
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture(scope="module")
def gateways(tmp_path_factory) -> Iterator[Gateways]:
    import os

    from chassis.settings import ChassisSettings

    home = tmp_path_factory.mktemp("cache") / "chassis"
    previous = os.environ.get("CHASSIS_HOME")
    os.environ["CHASSIS_HOME"] = str(home)
    try:
        registry = home_registry()
        for version in register_tiny_versions(MODEL, 2):
            registry.client.set_model_version_tag(MODEL, str(version), TAG_TASK, "regression")
        registry.promote(MODEL, 1, expected_champion=None, actor="user:test", reason="test")
        token = ChassisSettings().admin_token()
    finally:
        if previous is None:
            os.environ.pop("CHASSIS_HOME", None)
        else:
            os.environ["CHASSIS_HOME"] = previous
    redis = RedisServer(home.parent / "redis").start()
    env = {
        "CHASSIS_GATEWAY_CACHE_MODELS": MODEL,
        "CHASSIS_GATEWAY_CACHE_REDIS_URL": redis.url,
        # Generous on a loaded test machine: a timed-out write would leave Redis out for 2 s
        # (the kill test does not need it: a dead Redis refuses at once).
        "CHASSIS_GATEWAY_CACHE_REDIS_TIMEOUT_SECONDS": "2",
        "CHASSIS_GATEWAY_LOG_FORMAT": "json",
        # The splits change by the admin API only: no champion to follow back meanwhile.
        "CHASSIS_GATEWAY_FOLLOW_SECONDS": "0",
    }
    pair = [
        GatewayProcess(home, {**env, "CHASSIS_GATEWAY_LOCAL_DIR": str(home / name)}, (MODEL,))
        for name in ("a", "b")
    ]
    for gateway in pair:
        gateway.launch()
    try:
        for gateway in pair:
            gateway.wait_ready()
        yield Gateways(pair[0], pair[1], redis, {"Authorization": f"Bearer {token}"})
    finally:
        for gateway in pair:
            gateway.stop()
        redis.stop()


def predict(client: httpx.Client, x: float) -> httpx.Response:
    return client.post(f"/v1/models/{MODEL}/predict", json={"instances": [[x]]})


def metric(url: str, sample: str) -> float | None:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return None


def hits(url: str, level: str) -> float:
    sample = f'chassis_cache_requests_total{{level="{level}",model="{MODEL}",result="hit"}}'
    return metric(url, sample) or 0.0


def test_a_second_gateway_answers_from_redis_what_the_first_computed(gateways):
    x = 7.75  # a row no other test sends
    with httpx.Client(base_url=gateways.a.url, timeout=30) as a:
        first = predict(a, x)
    assert first.status_code == 200, first.text
    assert first.headers["x-chassis-cache"] == "miss"
    assert first.json()["predictions"] == [expected(1, x)]
    # The write to Redis is off the request path: wait until it is there.
    with gateways.redis.client() as redis:
        deadline = time.monotonic() + 10
        while not redis.keys(f"chassis:result:{MODEL}:v1:*"):
            assert time.monotonic() < deadline, "gateway a never wrote its answer to Redis"
            time.sleep(0.05)
        [ttl] = [redis.pttl(key) for key in redis.keys(f"chassis:result:{MODEL}:v1:*")][:1]
        assert 0 < ttl <= 300_000  # kept with the cache's TTL
    before = hits(gateways.b.url, "redis")
    with httpx.Client(base_url=gateways.b.url, timeout=30) as b:
        shared, local = predict(b, x), predict(b, x)
    assert shared.headers["x-chassis-cache"] == "redis"
    assert local.headers["x-chassis-cache"] == "local"
    for answer in (shared, local):
        assert answer.headers["x-model-version"] == "1"
        body = answer.json()
        # The same answer as computed, in the same form as an uncached one.
        assert set(body) == {"model", "version", "predictions", "ids"}
        assert (body["version"], body["predictions"]) == (1, first.json()["predictions"])
    assert hits(gateways.b.url, "redis") == before + 1
    # A cached answer is a new prediction: ids of its own, and feedback on it is joined.
    [shared_id], [local_id] = shared.json()["ids"], local.json()["ids"]
    assert shared_id != local_id
    joined = httpx.post(
        f"{gateways.b.url}/v1/models/{MODEL}/feedback",
        json={"id": local_id, "label": expected(1, x)},
        timeout=10,
    )
    assert joined.status_code == 200, joined.text
    assert joined.json()["feedback"][0]["version"] == 1
    schema = httpx.get(f"{gateways.b.url}/openapi.json", timeout=10).json()
    answer_200 = schema["paths"][f"/v1/models/{MODEL}/predict"]["post"]["responses"]["200"]
    assert answer_200["headers"]["X-Chassis-Cache"]["schema"]["enum"] == [
        "local",
        "redis",
        "miss",
        "coalesced",
    ]


def test_a_promotion_and_a_rollback_during_cached_traffic_serve_no_stale_answer(gateways):
    answers: list[tuple[float, httpx.Response]] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=gateways.a.url, timeout=30) as client:
            i = 0
            while not stop.is_set():
                x = ROWS[i % len(ROWS)]
                answers.append((x, predict(client, x)))
                i += 1

    def answered(count: int) -> None:
        """Wait for `count` more answers (the traffic's pace, whatever the machine's load)."""
        target = len(answers) + count
        deadline = time.monotonic() + 60
        while len(answers) < target:
            assert time.monotonic() < deadline, "the traffic stalled"
            time.sleep(0.01)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        answered(30)
        gateways.admin("rollout", {"mode": "canary", "candidate_version": 2, "percent": 50})
        answered(60)
        gateways.admin("promote")  # v2 alone; v1 unloaded, its local answers dropped
        answered(30)
        # Back to v1 (its answers are still in Redis, keyed by v1: valid ones).
        gateways.admin("rollout", {"mode": "canary", "candidate_version": 1, "percent": 100})
        gateways.admin("promote")
        answered(30)
    finally:
        stop.set()
        thread.join(timeout=30)
    stale = [
        (x, r.headers.get("x-model-version"), r.text)
        for x, r in answers
        if r.status_code != 200
        or r.headers["x-model-version"] != str(r.json()["version"])
        or r.json()["predictions"] != [expected(r.json()["version"], x)]
    ]
    assert stale == [], stale[:5]
    by = {(r.json()["version"], r.headers["x-chassis-cache"]) for _, r in answers}
    # Both versions answered, both from the cache as well as computed; v1 again from Redis
    # after its local answers were dropped.
    assert {(1, "miss"), (1, "local"), (2, "miss"), (2, "local"), (1, "redis")} <= by, by
    evicted = metric(gateways.a.url, 'chassis_cache_evictions_total{reason="retired"}')
    assert evicted is not None and evicted >= 1


def test_redis_killed_mid_load_fails_no_request_and_is_counted(gateways):
    answers: list[tuple[float, httpx.Response]] = []
    stop = threading.Event()
    errors_before = metric(gateways.b.url, "chassis_cache_redis_errors_total") or 0.0
    assert metric(gateways.b.url, "chassis_cache_redis_up") == 1.0

    def traffic() -> None:
        with httpx.Client(base_url=gateways.b.url, timeout=30) as client:
            i = 0
            while not stop.is_set():
                # New rows as well as repeated ones: misses that ask Redis, and hits.
                x = ROWS[i % len(ROWS)] if i % 2 else 100.0 + i
                answers.append((x, predict(client, x)))
                i += 1

    def answered(count: int) -> None:
        target = len(answers) + count
        deadline = time.monotonic() + 60
        while len(answers) < target:
            assert time.monotonic() < deadline, "the traffic stalled"
            time.sleep(0.01)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        answered(40)
        gateways.redis.kill()  # as a crash: connections reset, nothing listens
        answered(120)
    finally:
        stop.set()
        thread.join(timeout=30)
    failed = [(x, r.status_code, r.text) for x, r in answers if r.status_code != 200]
    assert failed == [], failed[:5]
    wrong = [(x, r.json()) for x, r in answers if r.json()["predictions"] != [expected(1, x)]]
    assert wrong == [], wrong[:5]
    assert (metric(gateways.b.url, "chassis_cache_redis_errors_total") or 0.0) > errors_before
    assert metric(gateways.b.url, "chassis_cache_redis_up") == 0.0
    [down] = gateways.b.events("cache.redis_down")[-1:]
    assert "error" in down
    # Redis back on its address: the breaker tries it again within seconds.
    gateways.redis.start()
    deadline = time.monotonic() + 30
    with httpx.Client(base_url=gateways.b.url, timeout=30) as client:
        while metric(gateways.b.url, "chassis_cache_redis_up") != 1.0:
            assert time.monotonic() < deadline, "the gateway never used Redis again"
            assert predict(client, 55.5 + time.monotonic()).status_code == 200
            time.sleep(0.1)  # a polling interval
