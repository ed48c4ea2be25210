"""CPU per request of the whole in-process serving stack, gateway vs floor: uvicorn's
httptools protocol (the gateway's with its connection limits and one-write responses, the
floor's plain), the ASGI app (`chassis serve`'s, every feature on, vs
benchmarks/minimal_server.py's), on one kept-alive connection with a recording transport.
What is left out: the socket and the event loop's polling, the same for both (the gateway
writes once a response, the floor twice). Rounds alternate; min and median of the rounds.

Run: `CHASSIS_HOME=<a home with digits-mlp released> python benchmarks/hot_path.py`
(benchmarks/gateway_ab.py --home DIR leaves one). `--profile`: a cProfile of the gateway's
requests instead. Nothing here is a test.
"""

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # after PYTHONPATH: the chassis measured is the one it names
sys.path.insert(0, str(REPO / "benchmarks"))
from chassis.serving.connection_limits import ConnectionLimits, limited_protocol  # noqa: E402
from tests.unit.test_one_write import RecordingTransport  # noqa: E402

MODEL = "digits-mlp"


class Sink(RecordingTransport):
    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.last = data


def request(path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: application/json\r\n"
    return head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body


async def cost(factory: Any, app: Any, data: bytes, count: int) -> float:
    """CPU microseconds a request over `count` requests on one connection."""
    config = Config(app=app, lifespan="off", access_log=False)
    config.load()
    protocol = factory(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(Sink())
    started = time.thread_time()
    for _ in range(count):
        protocol.data_received(data)
        while not protocol.cycle.response_complete:
            await asyncio.sleep(0)
    used = time.thread_time() - started
    protocol.connection_lost(None)
    return used / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--top", type=int, default=35, help="functions the profile lists")
    parser.add_argument("--profile", choices=["gateway", "floor"], help="cProfile one stack")
    args = parser.parse_args()
    import minimal_server
    from sklearn.datasets import load_digits

    from chassis.settings import ChassisSettings
    from chassis_cli.serve import build_app

    digits: Any = load_digits()  # sklearn has no types
    body = json.dumps({"instances": [[float(v) for v in digits.data[0]]]}).encode()
    gateway_app = build_app(ChassisSettings(), [MODEL])
    gateway_app.gateway.start()
    served = gateway_app.gateway.models[MODEL].versions[1]
    onnx = next((Path(ChassisSettings().home) / "gateway").rglob("*.onnx"), None)
    assert onnx is not None and served is not None
    stacks = {
        "gateway": (
            limited_protocol(ConnectionLimits()),
            gateway_app,
            f"/v1/models/{MODEL}/predict",
        ),
        "floor": (HttpToolsProtocol, minimal_server.build_app(str(onnx)), "/"),
    }

    async def run() -> dict[str, list[float]]:
        results: dict[str, list[float]] = {name: [] for name in stacks}
        for factory, app, path in stacks.values():
            await cost(factory, app, request(path, body), 500)  # warm-up
        if args.profile:
            factory, app, path = stacks[args.profile]
            profile = cProfile.Profile()
            profile.enable()
            await cost(factory, app, request(path, body), args.requests)
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(
                int(__import__("os").environ.get("TOP", "35"))
            )
            return results
        for _ in range(args.rounds):
            for name, (factory, app, path) in stacks.items():
                results[name].append(await cost(factory, app, request(path, body), args.requests))
        return results

    try:
        import uvloop

        results = uvloop.run(run())
    except ImportError:
        results = asyncio.run(run())
    finally:
        for log in gateway_app.gateway.logs.values():
            log.close()
    for name, values in results.items():
        if values:
            print(f"{name}: min {min(values):.1f} us, median {median(values):.1f} us a request")
    if results["gateway"]:
        diffs = [g - f for g, f in zip(results["gateway"], results["floor"], strict=True)]
        print(f"gateway - floor, per round: median {median(diffs):.1f} us, min {min(diffs):.1f} us")


if __name__ == "__main__":
    main()
