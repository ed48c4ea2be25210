"""Result-cache benchmark: what a cached answer saves and what the cache costs a miss.

The gateway's ASGI app is driven in process with fake request messages (no HTTP server, no
socket: the gateway's own work only, so the cache's share of it is shown at its largest),
on a digits-shaped MLP (64 -> 64 -> 10, float32, random weights) served from a folder (no
MLflow). Redis is a real `redis-server` on loopback (Debian's), so a Redis hit includes a
real round trip. Measured:

- latency of one request (wall clock, sequential): a local hit, a Redis hit (a second
  gateway, its local level empty, reads what the first computed) and a miss, cache on
  (local only, then with Redis) and off;
- throughput at 0 % hits (every request new), cache on against off, as the gateway's CPU
  per request in interleaved rounds (ratio per round, median and range: CPU time holds on a
  shared, loaded machine where requests/s do not);
- the same on a Zipf-distributed workload (10,000 distinct rows, s = 1.1), with the hit
  ratio it reached.

Run: `python benchmarks/result_cache.py` (`--help`). Nothing here is a test.
"""

import argparse
import asyncio
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any, cast

import numpy as np
import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
MODEL = "digits-like"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per measurement")
    parser.add_argument("--rounds", type=int, default=7, help="on/off alternations")
    return parser.parse_args()


def write_mlp(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(64, 64)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(np.zeros(64, dtype=np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(size=(64, 10)).astype(np.float32), "w2")
    b2 = numpy_helper.from_array(np.zeros(10, dtype=np.float32), "b2")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Add", ["h", "b1"], ["hb"]),
            helper.make_node("Relu", ["hb"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["o"]),
            helper.make_node("Add", ["o", "b2"], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 10])],
        initializer=[w1, b1, w2, b2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


class FolderRegistry:
    """What the gateway asks a registry while loading, answered from one ONNX file."""

    def __init__(self, onnx_path: Path) -> None:
        from chassis.digests import sha256_file
        from chassis.registry.tags import TAG_ONNX_SHA256

        self.onnx_path = onnx_path
        self.tags = {TAG_ONNX_SHA256: sha256_file(onnx_path)}

    def model_exists(self, name: str) -> bool:
        return name == MODEL

    def read_rollout_record(self, name: str) -> None:
        return None

    def read_sanitization(self, name: str) -> None:
        return None

    def version_for_alias(self, name: str, alias: str) -> int | None:
        return 1 if alias == "champion" else None

    def require_passed_gates(self, name: str, version: int) -> dict[str, str]:
        return self.tags

    def feature_columns(self, name: str, version: int) -> list[str]:
        return [f"pixel_{i}" for i in range(64)]

    def fetch_version(self, name: str, version: int, destination: Path) -> Any:
        from chassis.registry.fetch import VersionFiles

        destination.mkdir(parents=True, exist_ok=True)
        onnx = Path(shutil.copy(self.onnx_path, destination / "model.onnx"))
        return VersionFiles(name, version, onnx, self.tags, {})


def build(onnx_path: Path, cached: bool, redis_url: str = "") -> Any:
    """A gateway app on the model, its local folders beside the model (removed at the end)."""
    from chassis.registry import Registry
    from chassis.serving.asgi import GatewayApp
    from chassis.serving.gateway import Gateway, GatewayConfig
    from chassis.serving.result_cache import CacheSettings

    local = Path(tempfile.mkdtemp(prefix="gateway-", dir=onnx_path.parent))
    settings = CacheSettings(frozenset({MODEL}), redis_url=redis_url) if cached else None
    config = GatewayConfig(local / "state", local / "cache", result_cache=settings)
    gateway = Gateway(cast(Registry, FolderRegistry(onnx_path)), config, [MODEL])
    gateway.first_pass()
    return GatewayApp(gateway, "benchmark-admin-token-0123456789")


def bodies(count: int, offset: int = 0) -> list[bytes]:
    rng = np.random.default_rng(offset)
    rows = rng.integers(0, 17, size=(count, 64))
    return [orjson.dumps({"instances": [row.tolist()]}) for row in rows]


class Driver:
    """Fake ASGI messages for one app; `one(body)` answers a request, returning its cache
    header."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.scope = {
            "type": "http",
            "method": "POST",
            "path": f"/v1/models/{MODEL}/predict",
            "headers": [(b"content-type", b"application/json")],
        }
        self.header = b""

    async def one(self, body: bytes) -> bytes:
        message = {"type": "http.request", "body": body, "more_body": False}

        async def receive() -> dict[str, Any]:
            return message

        async def send(sent: dict[str, Any]) -> None:
            if sent["type"] == "http.response.start":
                assert sent["status"] == 200, sent
                self.header = dict(sent["headers"]).get(b"x-chassis-cache", b"off")

        await self.app(dict(self.scope), receive, send)
        return self.header


async def latencies(driver: Driver, sent: list[bytes], expect: bytes) -> list[float]:
    """Wall time of each request answered as `expect` says (a Redis write skipped or timed
    out under load leaves a miss where a Redis hit was expected: not counted)."""
    times = []
    for body in sent:
        started = time.perf_counter()
        header = await driver.one(body)
        if header == expect:
            times.append(time.perf_counter() - started)
    assert len(times) >= len(sent) // 2, (expect, len(times), len(sent))
    return times


async def rate(driver: Driver, sent: list[bytes]) -> tuple[float, dict[bytes, int]]:
    """CPU microseconds per request (this thread's: Redis's own work is another process's;
    the gateway's share of a loaded machine is what it measures) and the cache headers."""
    levels: dict[bytes, int] = {}
    started = time.thread_time()
    for body in sent:
        header = await driver.one(body)
        levels[header] = levels.get(header, 0) + 1
    return (time.thread_time() - started) / len(sent) * 1e6, levels


def us(values: list[float], q: float) -> float:
    return float(np.quantile(values, q) * 1e6)


async def run(args: argparse.Namespace, onnx_path: Path, redis_url: str) -> dict[str, Any]:
    n = args.requests
    off = Driver(build(onnx_path, False))
    local = Driver(build(onnx_path, True))
    with_redis = Driver(build(onnx_path, True, redis_url))
    reader = Driver(build(onnx_path, True, redis_url))  # a second replica, same Redis
    for driver in (off, local, with_redis, reader):
        await driver.one(bodies(1, 999)[0])  # warm: ONNX Runtime's first call, imports
    for driver in (with_redis, reader):
        await driver.app.gateway.result_cache.start()
    results: dict[str, Any] = {}
    fresh = bodies(n, 1)
    results["latency_off"] = await latencies(off, fresh, b"off")
    results["latency_miss_local"] = await latencies(local, fresh, b"miss")
    results["latency_hit_local"] = await latencies(local, fresh, b"local")
    results["latency_miss_redis"] = await latencies(with_redis, fresh, b"miss")
    await asyncio.sleep(2.5)  # the writes to Redis land; a breaker opened by load closes
    results["latency_hit_redis"] = await latencies(reader, fresh, b"redis")

    # 0 % hits: every request new to all three; off, on and on with Redis in alternation.
    cpu: dict[str, list[float]] = {"off": [], "on": [], "redis": []}
    for r in range(args.rounds):
        sent = bodies(n, 100 + r)
        order = [(off, "off"), (local, "on"), (with_redis, "redis")]
        for driver, name in order if r % 2 else order[::-1]:
            cpu[name].append((await rate(driver, sent))[0])
    results["zero_hits"] = cpu

    # Zipf: 10,000 distinct rows, ranks drawn with s = 1.1 (a few rows are most requests).
    distinct = bodies(10_000, 7)
    ranks = np.random.default_rng(3).zipf(1.1, size=4 * n)
    workload = [distinct[(k - 1) % len(distinct)] for k in ranks]
    zipf_local = Driver(build(onnx_path, True))
    await zipf_local.one(bodies(1, 999)[0])
    zipf: dict[str, list[float]] = {"off": [], "on": []}
    levels: dict[bytes, int] = {}
    for r in range(3):
        order = [(off, "off"), (zipf_local, "on")]
        for driver, name in order if r % 2 else order[::-1]:
            per_request, seen = await rate(driver, workload)
            zipf[name].append(per_request)
            if name == "on" and r == 0:
                levels = seen  # the first pass: from a cold cache
    results["zipf"] = (zipf, levels, len(set(workload)))
    for driver in (with_redis, reader):
        await driver.app.gateway.result_cache.close()
    return results


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    import onnxruntime
    import redis

    lines = [
        f"Run: `python benchmarks/result_cache.py --requests {args.requests} --rounds "
        f"{args.rounds}` on {time.strftime('%Y-%m-%d', time.gmtime())}. Machine: "
        f"{platform.machine()}, 2 cores shared with other work, Python "
        f"{platform.python_version()}, onnxruntime {onnxruntime.__version__}, redis-py "
        f"{redis.__version__}, redis-server 7.0 on loopback.",
        "",
        "| one request (wall, in process, sequential) | p50 us | p99 us | vs cache off (p50) |",
        "|---|---|---|---|",
    ]
    base = median(results["latency_off"])
    for key, name in (
        ("latency_off", "cache off"),
        ("latency_miss_local", "miss, local level only"),
        ("latency_miss_redis", "miss, with Redis (a GET first; the SET after, off the path)"),
        ("latency_hit_local", "local hit"),
        ("latency_hit_redis", "Redis hit (another replica computed it)"),
    ):
        values = results[key]
        lines.append(
            f"| {name} ({len(values):,} requests) | {us(values, 0.5):.1f} | "
            f"{us(values, 0.99):.1f} | {median(values) / base:.2f}x |"
        )
    cpu = results["zero_hits"]
    on_off = [on / off for on, off in zip(cpu["on"], cpu["off"], strict=True)]
    redis_off = [on / off for on, off in zip(cpu["redis"], cpu["off"], strict=True)]
    zipf, levels, distinct = results["zipf"]
    total = sum(levels.values())
    hit_share = (total - levels.get(b"miss", 0)) / total
    zipf_ratio = [on / off for on, off in zip(zipf["on"], zipf["off"], strict=True)]
    lines += [
        "",
        "| gateway CPU per request (in process, medians of rounds) | value |",
        "|---|---|",
        f"| 0 % hits: off / on (local) / on (local + Redis) | {median(cpu['off']):.1f} / "
        f"{median(cpu['on']):.1f} / {median(cpu['redis']):.1f} us |",
        f"| 0 % hits, on (local) / off | {median(on_off):.2f}x (rounds {min(on_off):.2f}-"
        f"{max(on_off):.2f}): +{median(cpu['on']) - median(cpu['off']):.1f} us a request |",
        f"| 0 % hits, on (local + Redis) / off | {median(redis_off):.2f}x (rounds "
        f"{min(redis_off):.2f}-{max(redis_off):.2f}) |",
        f"| Zipf s=1.1 over 10,000 rows ({4 * args.requests:,} requests, {distinct:,} "
        f"distinct), on (local) / off | {median(zipf_ratio):.2f}x ({median(zipf['on']):.1f} vs "
        f"{median(zipf['off']):.1f} us): {1 / median(zipf_ratio):.1f}x the requests per CPU "
        f"second; hits from a cold cache: {hit_share:.0%} |",
    ]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    from tests.fixtures.redis_server import RedisServer

    work = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    onnx_path = write_mlp(work / "model.onnx")
    redis_server = RedisServer(work / "redis").start()
    try:
        try:
            import uvloop

            results = uvloop.run(run(args, onnx_path, redis_server.url))
        except ImportError:
            results = asyncio.run(run(args, onnx_path, redis_server.url))
    finally:
        redis_server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(report(results, args))


if __name__ == "__main__":
    main()
