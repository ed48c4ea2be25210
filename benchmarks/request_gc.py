"""Garbage collections a gateway request costs: the real uvicorn protocol with Chassis's
connection limits and one-write responses (chassis/serving/connection_limits.py,
one_write.py), driven in process with a recording transport and a minimal ASGI app, one
connection per request. Prints the collections per generation and the CPU per request.

Run: `python benchmarks/request_gc.py [--requests 20000]`; to compare two versions of the
serving code, run it in both checkouts, alternating. Nothing here is a test.
"""

import argparse
import asyncio
import gc
import sys
import time
from pathlib import Path
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from chassis.serving.connection_limits import ConnectionLimits, limited_protocol
from tests.unit.test_one_write import RecordingTransport, yielding_app

REQUEST = b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"


async def requests(count: int) -> tuple[list[int], float]:
    """Collections by generation, and CPU seconds per request, over `count` requests."""
    config = Config(app=yielding_app, lifespan="off", access_log=False)
    config.load()
    factory = limited_protocol(ConnectionLimits())
    collections = [0, 0, 0]

    def count_collection(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collections[info["generation"]] += 1

    gc.callbacks.append(count_collection)
    started = time.process_time()
    try:
        for _ in range(count):
            protocol = factory(config=config, server_state=ServerState(), app_state={})
            protocol.connection_made(RecordingTransport())
            protocol.data_received(REQUEST)
            while protocol.cycle is None or not protocol.cycle.response_complete:
                await asyncio.sleep(0)
            protocol.connection_lost(None)
    finally:
        gc.callbacks.remove(count_collection)
    return collections, (time.process_time() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    collections, cpu = asyncio.run(requests(args.requests))
    print(
        f"{args.requests} requests: collections by generation {collections}, "
        f"{cpu * 1e6:.1f} us CPU a request"
    )


if __name__ == "__main__":
    main()
