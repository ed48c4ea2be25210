"""Text batching benchmark: Chassis's gateway answering the MiniLM topic classifier
(chassis.specs.text_topics) over HTTP, with micro-batching off, greedy, and holding a batch
open (`max_wait_ms` > 0), side by side at 1, 8 and 32 connections.

Run with `make bench-text-batching` (`--help` for the options). The three gateways are up
together and take turns under load (the ones not measured wait idle: on 2 cores the load
generator and the server share them), in an order that rotates every round; the tables give
medians and the spread of each configuration's ratio to the unbatched one. Every request is
one docstring from the spec's test split (cycling, so texts differ), tokenized by the
gateway with the version's own tokenizer. Nothing here is a test.

The gateways are the real request path (`GatewayApp` and `Gateway` on uvicorn with
httptools, as `chassis serve` runs them): only loading differs, the exported ONNX file and
tokenizer being read from a folder instead of a registry. No prediction log.
"""

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from statistics import median
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MODEL = "text-topics"
# name -> (max_batch, max_wait_ms); "held" takes its wait from --max-wait-ms.
CONFIGS = {"unbatched": (1, 0.0), "greedy": (32, 0.0), "held": (32, None)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="per point (default 10)")
    parser.add_argument("--connections", default="1,8,32", help="default 1,8,32")
    parser.add_argument("--rounds", type=int, default=3, help="alternations (default 3)")
    parser.add_argument(
        "--max-wait-ms", type=float, default=2.0, help="the held configuration's wait (2)"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=REPO / ".chassis" / "bench-text-batching",
        help="where the exported model is kept between runs",
    )
    parser.add_argument(
        "--model-cost", action="store_true", help="only the in-process model cost per text"
    )
    # Internal: run one gateway (the benchmark starts three this way).
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "MAX_BATCH", "MAX_WAIT_MS"))
    return parser.parse_args()


# ---- the model -------------------------------------------------------------------------


def prepare(workdir: Path) -> Path:
    """The topic classifier exported to ONNX (int64 input_ids [batch, 64]), its tokenizer
    and the test split's texts, in `workdir`; made once (the head is fitted, ~1 min)."""
    onnx_path = workdir / "model.onnx"
    if onnx_path.is_file():
        return workdir
    from chassis.onnx_export import export_onnx
    from chassis.specs import text_topics

    workdir.mkdir(parents=True, exist_ok=True)
    print("exporting the topic classifier (once)...", file=sys.stderr)
    model = text_topics.load_topic_classifier()
    partial = workdir / "model.partial.onnx"
    export_onnx(model, text_topics.MAX_LENGTH, partial, token_ids=True)
    shutil.copy(text_topics.TOKENIZER_FILE, workdir / "tokenizer.json")
    texts = text_topics.load_topics_dataset().test[text_topics.TEXT_COLUMN].tolist()
    (workdir / "texts.json").write_text(json.dumps(texts))
    (workdir / "settings.json").write_text(
        json.dumps({"max_length": text_topics.MAX_LENGTH, "truncate": False})
    )
    partial.replace(onnx_path)
    return workdir


class FolderRegistry:
    """What the gateway asks a registry while loading, answered from `prepare`'s folder."""

    def __init__(self, folder: Path) -> None:
        from chassis.digests import sha256_file
        from chassis.registry.tags import TAG_ONNX_SHA256, TAG_TEXT_INPUT, TAG_TOKENIZER_SHA256

        self.folder = folder
        self.tags = {
            TAG_ONNX_SHA256: sha256_file(folder / "model.onnx"),
            TAG_TOKENIZER_SHA256: sha256_file(folder / "tokenizer.json"),
            TAG_TEXT_INPUT: (folder / "settings.json").read_text(),
        }

    def model_exists(self, name: str) -> bool:
        return name == MODEL

    def read_rollout_record(self, name: str) -> None:
        return None

    def version_for_alias(self, name: str, alias: str) -> int | None:
        return 1 if alias == "champion" else None

    def require_passed_gates(self, name: str, version: int) -> dict[str, str]:
        return self.tags

    def feature_columns(self, name: str, version: int) -> list[str]:
        return ["text"]

    def fetch_version(self, name: str, version: int, destination: Path) -> Any:
        from chassis.registry.fetch import VersionFiles
        from chassis.registry.tags import TOKENIZER_FILE

        destination.mkdir(parents=True, exist_ok=True)
        onnx = Path(shutil.copy(self.folder / "model.onnx", destination / "model.onnx"))
        tokenizer = Path(shutil.copy(self.folder / "tokenizer.json", destination))
        return VersionFiles(name, version, onnx, self.tags, {TOKENIZER_FILE: tokenizer})


def serve(workdir: Path, port: int, max_batch: int, max_wait_ms: float) -> None:
    """One gateway on uvicorn, configured as `chassis serve` configures it."""
    import tempfile
    from typing import cast

    import uvicorn

    from chassis.registry import Registry
    from chassis.serving.asgi import GatewayApp
    from chassis.serving.connection_limits import ConnectionLimits, limited_protocol
    from chassis.serving.gateway import Gateway, GatewayConfig

    local = Path(tempfile.mkdtemp(prefix="bench-text-gateway-"))
    config = GatewayConfig(local / "state", local / "cache", max_batch, max_wait_ms)
    gateway = Gateway(cast(Registry, FolderRegistry(workdir)), config, [MODEL])
    app = GatewayApp(gateway, "benchmark-admin-token")
    gateway.first_pass()
    uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            http=limited_protocol(ConnectionLimits(32 * 1024, 30.0)),
        )
    ).run()
    shutil.rmtree(local, ignore_errors=True)


# ---- the load --------------------------------------------------------------------------


def request_bytes(port: int, text: str) -> bytes:
    body = json.dumps({"instances": [text]}).encode()
    head = (
        f"POST /v1/models/{MODEL}/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def load(port: int, texts: list[str], connections: int, seconds: float) -> dict[str, float]:
    """Keep-alive connections, each sending one request after the other for `seconds`:
    requests per second, p50 and p99 latency (ms), answers other than 200."""
    requests = [request_bytes(port, text) for text in texts]
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def connection(offset: int) -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        index = offset
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(requests[index % len(requests)])
                index += 1
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                if not head.startswith(b"HTTP/1.1 200"):
                    failures += 1
        finally:
            writer.close()

    started = time.perf_counter()
    step = max(1, len(requests) // connections)
    await asyncio.gather(*(connection(c * step) for c in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "non200": failures,
    }


def model_cost(workdir: Path, texts: list[str], batches: tuple[int, ...] = (1, 8, 32)) -> str:
    """ONNX Runtime alone (one intra-op thread, as the gateway runs it), in process: CPU
    milliseconds per text at each batch size, median of repeated calls. What batching can
    win at most."""

    from chassis.runtime import create_session, first_output
    from chassis.text_input import TextEncoder

    session = create_session(workdir / "model.onnx", 1)
    encoder = TextEncoder.from_settings(
        workdir / "tokenizer.json", (workdir / "settings.json").read_text()
    )
    ids = encoder.encode(texts[: max(batches)])
    costs = []
    for batch in batches:
        rows = ids[:batch]
        first_output(session, {"input_ids": rows})
        samples = []
        for _ in range(max(3, 48 // batch)):
            started = time.thread_time()
            first_output(session, {"input_ids": rows})
            samples.append((time.thread_time() - started) / batch)
        costs.append(f"batch {batch}: {median(samples) * 1000:.2f} ms")
    tokens = time.thread_time()
    for _ in range(10):
        encoder.encode(texts[:32])
    tokenizing = (time.thread_time() - tokens) / 320 * 1e6
    return (
        "In process, ONNX Runtime CPU time per text: "
        + ", ".join(costs)
        + f"; tokenizing: {tokenizing:.0f} us per text (CPU time)."
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_answering(port: int, text: str, seconds: float = 300) -> None:
    url = f"http://127.0.0.1:{port}/v1/models/{MODEL}/predict"
    body = json.dumps({"instances": [text]}).encode()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(
                url, data=body, headers={"content-type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the gateway on port {port} did not answer in {seconds:g} s")


@contextlib.contextmanager
def gateways(workdir: Path, max_wait_ms: float) -> Iterator[dict[str, int]]:
    """The three configurations, each its own process; name -> port."""
    processes: list[subprocess.Popen[bytes]] = []
    ports: dict[str, int] = {}
    try:
        for name, (max_batch, wait) in CONFIGS.items():
            port = free_port()
            wait_ms = max_wait_ms if wait is None else wait
            command = [sys.executable, __file__, "--workdir", str(workdir)]
            command += ["--serve", str(port), str(max_batch), str(wait_ms)]
            env = os.environ | {"PYTHONPATH": str(REPO), "ORT_DISABLE_TELEMETRY": "1"}
            processes.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL))
            ports[name] = port
        yield ports
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> None:
    args = parse_args()
    if args.serve:
        port, max_batch, max_wait_ms = args.serve
        serve(args.workdir, int(port), int(max_batch), float(max_wait_ms))
        return
    if args.model_cost:
        workdir = prepare(args.workdir)
        print(model_cost(workdir, json.loads((workdir / "texts.json").read_text())))
        return
    workdir = prepare(args.workdir)
    texts: list[str] = json.loads((workdir / "texts.json").read_text())
    connections = [int(c) for c in args.connections.split(",")]
    names = list(CONFIGS)
    results: dict[str, dict[int, list[dict[str, float]]]] = {
        name: {c: [] for c in connections} for name in names
    }
    with gateways(workdir, args.max_wait_ms) as ports:
        for port in ports.values():
            wait_until_answering(port, texts[0])
            asyncio.run(load(port, texts, 8, 3))  # warm-up, discarded
        for round_number in range(args.rounds):
            order = names[round_number % len(names) :] + names[: round_number % len(names)]
            for c in connections:
                for name in order:
                    point = asyncio.run(load(ports[name], texts, c, args.seconds))
                    results[name][c].append(point)
                    print(f"round {round_number + 1} {name} c={c}: {point}", file=sys.stderr)
    report(results, connections, args, len(texts))
    print("\n" + model_cost(workdir, texts))


def machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")), "?")
    return f"{os.cpu_count()} cores, {cpu}, load average {os.getloadavg()[0]:.1f} at the end"


def report(
    results: dict[str, dict[int, list[dict[str, float]]]],
    connections: list[int],
    args: argparse.Namespace,
    n_texts: int,
) -> None:
    def middle(points: list[dict[str, float]], key: str) -> float:
        return median(point[key] for point in points)

    print(
        f"\nMachine: {machine()}. {args.seconds:g} s per point, median of {args.rounds} "
        f"rounds (order rotated each round); {n_texts} texts, one per request.\n"
    )
    print("| configuration | conns | req/s | p50 ms | p99 ms | non-200 |")
    print("|---|---|---|---|---|---|")
    for name, by_connections in results.items():
        max_batch, wait = CONFIGS[name]
        wait_ms = args.max_wait_ms if wait is None else wait
        label = f"{name} (max_batch {max_batch}, max_wait_ms {wait_ms:g})"
        for c, points in by_connections.items():
            print(
                f"| {label} | {c} | {middle(points, 'rps'):.1f} | {middle(points, 'p50'):.2f} "
                f"| {middle(points, 'p99'):.2f} | {sum(int(p['non200']) for p in points)} |"
            )
    print("\n| conns | greedy / unbatched (req/s) | held / unbatched (req/s) | held / greedy |")
    print("|---|---|---|---|")
    for c in connections:
        cells = []
        for top, bottom in (("greedy", "unbatched"), ("held", "unbatched"), ("held", "greedy")):
            pairs = zip(results[top][c], results[bottom][c], strict=True)
            ratios = sorted(a["rps"] / b["rps"] for a, b in pairs)
            spread = f" ({ratios[0]:.2f}-{ratios[-1]:.2f})" if len(ratios) > 1 else ""
            cells.append(f"{median(ratios):.2f}x{spread}")
        print(f"| {c} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
