"""What redis-py's reply parser costs a result-cache read: hiredis (C, what redis-py picks
when the `hiredis` package is installed, as Chassis's dependency `redis[hiredis]` ensures)
against its pure-Python RESP2 parser, on the asyncio client the gateway's Redis level uses.

A real redis-server (Debian's) on loopback; one 200-byte value read by GET, sequentially,
the two parsers taking turns in alternating rounds; per GET: wall time and the client
process's CPU time, medians of the rounds.

Run: `python benchmarks/redis_parser.py [--gets 3000] [--rounds 8]`. Nothing here is a test.
"""

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import redis.asyncio as redis
from redis._parsers import (  # redis-py's own parser classes, chosen explicitly
    _AsyncHiredisParser,
    _AsyncRESP2Parser,
)
from redis.asyncio.connection import ConnectionPool
from redis.utils import HIREDIS_AVAILABLE

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fixtures.redis_server import redis_server

VALUE = b"x" * 200


async def gets(url: str, parser: str, count: int) -> tuple[float, float]:
    """Wall and CPU microseconds per GET with one parser, after a warm-up."""
    parser_class = _AsyncHiredisParser if parser == "hiredis" else _AsyncRESP2Parser
    client = redis.Redis(connection_pool=ConnectionPool.from_url(url, parser_class=parser_class))
    try:
        await client.set("key", VALUE)
        for _ in range(200):
            await client.get("key")
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            await client.get("key")
        return (
            (time.perf_counter() - wall) / count * 1e6,
            (time.process_time() - cpu) / count * 1e6,
        )
    finally:
        await client.aclose()


async def measure(url: str, count: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    results: dict[str, list[tuple[float, float]]] = {"hiredis": [], "python": []}
    for index in range(rounds):
        order = ["hiredis", "python"] if index % 2 == 0 else ["python", "hiredis"]
        for parser in order:
            results[parser].append(await gets(url, parser, count))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--gets", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    if not HIREDIS_AVAILABLE:
        sys.exit("hiredis is not installed: pip install 'redis[hiredis]'")
    print(f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as folder, redis_server(Path(folder)) as server:
        results = asyncio.run(measure(server.url, args.gets, args.rounds))
    print("| parser | wall us per GET (median) | CPU us per GET (median) |")
    print("|---|---|---|")
    for name, rounds in results.items():
        print(
            f"| {name} | {median(r[0] for r in rounds):.1f} | {median(r[1] for r in rounds):.1f} |"
        )
    ratio = median(r[1] for r in results["hiredis"]) / median(r[1] for r in results["python"])
    print(f"CPU per GET, hiredis / python: {ratio:.2f}x; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
