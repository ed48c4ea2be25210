"""Cascade vs full-only: share answered by the small tier, accuracy change, and mean and p99
latency of one row, on registered versions (a compressed small tier and its baseline).

    CHASSIS_HOME=... python benchmarks/cascade.py MODEL:SMALL:FULL[:CASCADE] [...]
        [--max-accuracy-loss-pp 0.5] [--rounds 9] [--rows-per-round 200]
        [--http-rounds 5] [--cloud-rtt-ms 0 [20 ...]] [--http-batch 1 [8]] [--no-http]

For each cascade: its calibration and threshold (those of CASCADE, a registered cascade
version of SMALL and FULL; without CASCADE, chosen on the validation split exactly as
`chassis cascade` chooses them for --max-accuracy-loss-pp, chassis.cascade.build), then on
the test split: accuracy of the full tier alone and of the cascade, the share of rows the
small tier answers, and the time to answer one row (batch 1, one ONNX Runtime thread), as
the gateway's cascade does it: small tier, calibrated confidence, full tier when escalated.
Full-only and cascade are timed in interleaved rounds over the same rows, so load on the
machine weighs on both; latency ratios are cascade / full-only (below 1: the cascade is
faster). In-process (no HTTP): the HTTP cost, the same for both, would only dilute the
ratio. A text classifier's rows are its test texts as token ids, read through the tokenizer
stored with the small tier (a cascade's tiers share it); the tokenizing, done once a
request by the gateway whichever tier answers, is not in the timing.

Over HTTP (entries naming CASCADE, a registered and gated cascade version of SMALL and FULL):
the hybrid edge/cloud setting the cascade is for, with real `chassis serve` processes on
loopback. The cloud is a gateway whose champion is FULL; the edge a gateway whose champion is
CASCADE, started with `--upstream` = the cloud, so it answers confident rows with the small
tier and POSTs the escalated ones to the cloud. Each gets its own copy of the registry
database (same artifacts, same signing key) with its own champion: a gateway serves its
model's champion, and the two must differ. Full-only is the client asking the cloud
directly (not an edge forwarding everything, which would add a hop and flatter the cascade);
cascade is the client asking the edge. The client sits next to the edge: both the client's
full-only requests and the edge's escalations cross the edge-cloud link, which
`--cloud-rtt-ms` can lengthen with a loopback TCP proxy that delays each direction by half
the round trip (a SIMULATED delay; 0 = plain loopback). Requests carry --http-batch rows,
full-only and cascade alternate request by request (the order swapped each round), one
keep-alive connection each; the share answered by the small tier is the edge's
chassis_cascade_rows_total over the test split sent one row a request. A text classifier's
requests carry its test texts (the edge tokenizes them and sends the cloud the escalated
texts).
"""

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import numpy as np

from chassis.cascade.build import build_spec
from chassis.cascade.registration import validation_split
from chassis.cascade.rule import cascade_answer
from chassis.cascade.spec import CascadeSpec
from chassis.cascade.threshold import Target
from chassis.data import features, request_rows, truth
from chassis.modelspec import load_spec
from chassis.registry import Registry
from chassis.registry.tags import TAG_CANDIDATE, TAG_CASCADE, TAG_SPEC
from chassis.runtime import answer_batch_rows, create_session, first_output, run_batches
from chassis.serving.embedded import free_port
from chassis.settings import ChassisSettings
from chassis.task import CLASSIFICATION
from tests.fixtures.fault_gateway import metric_sum
from tests.fixtures.gateway import GatewayProcess


def timed_rows(call, rows: np.ndarray) -> list[float]:
    times = []
    for row in rows:
        one = row[None, :]
        started = time.perf_counter()
        call(one)
        times.append(time.perf_counter() - started)
    return times


class TestSplit(NamedTuple):
    x: np.ndarray  # what the models run on: features, or a text model's token ids
    y: np.ndarray
    instances: list[Any]  # what a client sends: rows of numbers, or texts


def bench(
    registry: Registry,
    model: str,
    small: int,
    full: int,
    cascade_version: int | None,
    args,
    workdir: Path,
) -> tuple[dict, TestSplit]:
    """The in-process figures, and the test split."""
    small_files = registry.fetch_version(model, small, workdir / f"v{small}")
    full_files = registry.fetch_version(model, full, workdir / f"v{full}")
    spec_module = load_spec(full_files.tags[TAG_SPEC])
    dataset = validation_split(spec_module, small_files)  # texts: the stored tokenizer's ids
    x, y = features(dataset.test, dataset), truth(dataset.test, dataset, CLASSIFICATION)
    small_session = create_session(small_files.onnx_path, 1)
    full_session = create_session(full_files.onnx_path, 1)
    if cascade_version is None:
        x_val = features(dataset.validation, dataset)
        spec = build_spec(
            full,
            run_batches(small_session, x_val, answer_batch_rows(small_files.onnx_path, x_val)),
            run_batches(full_session, x_val, answer_batch_rows(full_files.onnx_path, x_val)),
            truth(dataset.validation, dataset, CLASSIFICATION),
            Target(max_accuracy_loss_pp=args.max_accuracy_loss_pp),
        )
        cascade_name = f"v{small} + v{full}, built here"
    else:
        spec = CascadeSpec.from_json(registry.version_tags(model, cascade_version)[TAG_CASCADE])
        if spec.full_version != full:
            raise SystemExit(f"error: {model} v{cascade_version} escalates to v{spec.full_version}")
        cascade_name = f"v{cascade_version}"
    small_in, full_in = small_session.get_inputs()[0].name, full_session.get_inputs()[0].name

    def full_only(rows: np.ndarray) -> np.ndarray:
        return first_output(full_session, {full_in: rows})

    def small_only(rows: np.ndarray) -> np.ndarray:
        return first_output(small_session, {small_in: rows})

    def cascade(rows: np.ndarray) -> np.ndarray:
        logits = first_output(small_session, {small_in: rows})
        answered = cascade_answer(logits, spec.temperature, spec.threshold)
        if not answered.all():
            logits[~answered] = first_output(full_session, {full_in: rows[~answered]})
        return logits

    small_logits = np.concatenate([first_output(small_session, {small_in: r[None]}) for r in x])
    answered = cascade_answer(small_logits, spec.temperature, spec.threshold)
    full_labels = np.concatenate([full_only(r[None]) for r in x]).argmax(axis=1)
    cascade_labels = np.concatenate([cascade(r[None]) for r in x]).argmax(axis=1)
    rng = np.random.default_rng(0)
    full_times: list[float] = []
    cascade_times: list[float] = []
    # The small tier alone, timed in the same rounds: what the cascade costs above it.
    small_times: list[float] = []
    for _ in range(args.rounds):
        rows = x[rng.integers(0, len(x), size=args.rows_per_round)]
        timed_rows(full_only, rows[:10])  # warm both before each round's timing
        timed_rows(cascade, rows[:10])
        full_times += timed_rows(full_only, rows)
        cascade_times += timed_rows(cascade, rows)
        small_times += timed_rows(small_only, rows)
    return {
        "model": model,
        "cascade": f"{cascade_name} ({spec.target})",
        "small": f"v{small} ({small_files.tags.get(TAG_CANDIDATE, 'trained')})",
        "full": f"v{full}",
        "temperature": spec.temperature,
        "threshold": spec.threshold,
        "ece": (spec.ece_before, spec.ece_after),
        "validation_escalation": spec.validation_escalation_share,
        "test_rows": len(y),
        "small_share": float(answered.mean()),
        "full_accuracy": float((full_labels == y).mean()),
        "cascade_accuracy": float((cascade_labels == y).mean()),
        "small_alone_mean_ratio": float(np.mean(small_times) / np.mean(full_times)),
        **latency_figures(full_times, cascade_times),
    }, TestSplit(x, y, request_rows(dataset.test, dataset))


# --ports FIRST: the gateways and proxies this run starts listen on FIRST, FIRST + 1, ...
# (a range agreed with others sharing the machine); by default on any free port.
PORTS: list[int] = []


def next_port() -> int:
    if not PORTS:
        return free_port()
    PORTS[0] += 1
    return PORTS[0] - 1


def placed(gateway: GatewayProcess) -> GatewayProcess:
    gateway.port = next_port()
    gateway.url = f"http://127.0.0.1:{gateway.port}"
    return gateway


class DelayProxy:
    """A loopback TCP proxy to `target_port` that holds every chunk half the round trip in
    each direction before passing it on (a delay line: chunks keep their spacing), in a
    thread of this process. The delay is simulated; the bytes are the real ones."""

    def __init__(self, target_port: int, rtt_ms: float) -> None:
        self.target_port = target_port
        self.half = rtt_ms / 2000
        self.port = next_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None

    async def pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def receive() -> None:
            try:
                while data := await reader.read(65536):
                    queue.put_nowait((self.loop.time() + self.half, data))
            except ConnectionError:
                pass
            queue.put_nowait((0.0, b""))

        async def send() -> None:
            try:
                while True:
                    due, data = await queue.get()
                    if not data:
                        break
                    if (wait := due - self.loop.time()) > 0:
                        await asyncio.sleep(wait)
                    writer.write(data)
                    await writer.drain()
            except ConnectionError:
                pass
            finally:
                writer.close()

        await asyncio.gather(receive(), send())

    async def connect(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self.pump(client_r, server_w), self.pump(server_r, client_w))

    def start(self) -> None:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self.connect, "127.0.0.1", self.port), self.loop
        ).result(timeout=10)

    def stop(self) -> None:
        if self.server is not None:
            self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def gateway_home(source: Path, home: Path, model: str, champion: int) -> Path:
    """A home for one gateway: a copy of the registry database (its versions' artifacts stay
    where they are) and signing key, with `champion` made the champion there."""
    if ChassisSettings(home=source).tracking_is_remote():
        raise SystemExit(
            "error: the HTTP setting copies a local registry; unset CHASSIS_TRACKING_URI"
        )
    home.mkdir(parents=True)
    shutil.copy2(source / "mlflow.db", home / "mlflow.db")
    if (source / "registry-signing-key").exists():
        shutil.copy2(source / "registry-signing-key", home / "registry-signing-key")
    registry = Registry.from_settings(ChassisSettings(home=home))
    current = registry.version_for_alias(model, "champion")
    if current != champion:
        registry.promote(
            model, champion, expected_champion=current, actor="benchmark", reason="cascade bench"
        )
    return home


def predict(client: httpx.Client, url: str, model: str, instances: list[Any]) -> dict:
    answer = client.post(f"{url}/v1/models/{model}/predict", json={"instances": instances})
    answer.raise_for_status()
    return answer.json()


def cascade_rows(url: str, model: str, version: int) -> tuple[float, float]:
    """The edge's rows answered by the small tier and escalated, so far."""
    labels = {"model": model, "version": str(version)}
    return (
        metric_sum(url, "chassis_cascade_rows_total", tier="small", **labels),
        metric_sum(url, "chassis_cascade_rows_total", tier="full", **labels),
    )


def http_bench(
    model: str, full: int, cascade_version: int, split: TestSplit, args, work: Path
) -> list[dict]:
    """Full-only (the cloud) against the cascade (the edge, escalating to the cloud), per
    simulated round trip and rows per request."""
    source = ChassisSettings().home
    cloud = placed(
        GatewayProcess(gateway_home(source, work / "cloud", model, full), models=(model,))
    )
    edge_home = gateway_home(source, work / "edge", model, cascade_version)
    spec = CascadeSpec.from_json(
        Registry.from_settings(ChassisSettings(home=edge_home)).version_tags(
            model, cascade_version
        )[TAG_CASCADE]
    )
    results = []
    cloud.start()
    try:
        for rtt_ms in args.cloud_rtt_ms:
            proxy = DelayProxy(cloud.port, rtt_ms) if rtt_ms > 0 else None
            if proxy is not None:
                proxy.start()
            upstream = proxy.url if proxy is not None else cloud.url
            env = {
                "CHASSIS_GATEWAY_UPSTREAM": upstream,
                "CHASSIS_GATEWAY_LOCAL_DIR": str(work / f"edge-{rtt_ms:g}"),
            }
            edge = placed(GatewayProcess(edge_home, env=env, models=(model,)))
            try:
                edge.start()
                with httpx.Client(timeout=60) as to_cloud, httpx.Client(timeout=60) as to_edge:
                    full_url = upstream  # the client reaches the cloud over the same link
                    # Answers over the whole test split, one row a request: accuracy and share.
                    before = cascade_rows(edge.url, model, cascade_version)
                    rows = [[row] for row in split.instances]
                    full_answers = [predict(to_cloud, full_url, model, r) for r in rows]
                    edge_answers = [predict(to_edge, edge.url, model, r) for r in rows]
                    after = cascade_rows(edge.url, model, cascade_version)
                    assert {a["version"] for a in full_answers} == {full}, "cloud not on FULL"
                    assert {a["version"] for a in edge_answers} == {cascade_version}
                    full_labels = np.array([a["predictions"][0] for a in full_answers])
                    edge_labels = np.array([a["predictions"][0] for a in edge_answers])
                    small, escalated = after[0] - before[0], after[1] - before[1]
                    for batch in args.http_batch:
                        full_t, cascade_t = http_times(
                            to_cloud, full_url, to_edge, edge.url, model, split, batch, args
                        )
                        results.append(
                            {
                                "model": model,
                                "cascade": f"v{cascade_version} ({spec.target}, "
                                f"threshold {spec.threshold:.4f})",
                                "rtt_ms": rtt_ms,
                                "batch": batch,
                                "test_rows": len(split.y),
                                "small_share": small / (small + escalated),
                                "full_accuracy": float((full_labels == split.y).mean()),
                                "cascade_accuracy": float((edge_labels == split.y).mean()),
                                **latency_figures(full_t, cascade_t),
                            }
                        )
            finally:
                edge.stop()
                if proxy is not None:
                    proxy.stop()
    finally:
        cloud.stop()
    return results


def http_times(
    to_cloud: httpx.Client,
    cloud_url: str,
    to_edge: httpx.Client,
    edge_url: str,
    model: str,
    split: TestSplit,
    batch: int,
    args,
) -> tuple[list[float], list[float]]:
    """Seconds per request, full-only and cascade alternating request by request (which goes
    first swapped every round), the same rows for both."""
    rng = np.random.default_rng(1)
    full_t: list[float] = []
    cascade_t: list[float] = []
    targets = [(to_cloud, cloud_url, full_t), (to_edge, edge_url, cascade_t)]
    for round_ in range(args.http_rounds):
        requests = [
            [split.instances[int(i)] for i in rng.integers(0, len(split.y), size=batch)]
            for _ in range(args.rows_per_round)
        ]
        for rows in requests[:10]:  # warm both connections and paths
            for client, url, _ in targets:
                predict(client, url, model, rows)
        order = targets if round_ % 2 == 0 else targets[::-1]
        for rows in requests:
            for client, url, times in order:
                started = time.perf_counter()
                predict(client, url, model, rows)
                times.append(time.perf_counter() - started)
    return full_t, cascade_t


def latency_figures(full_t: list[float], cascade_t: list[float]) -> dict:
    return {
        "mean_ratio": float(np.mean(cascade_t) / np.mean(full_t)),
        "p99_ratio": float(np.percentile(cascade_t, 99) / np.percentile(full_t, 99)),
        "full_mean_ms": float(np.mean(full_t) * 1000),
        "full_p99_ms": float(np.percentile(full_t, 99) * 1000),
        "cascade_mean_ms": float(np.mean(cascade_t) * 1000),
        "cascade_p99_ms": float(np.percentile(cascade_t, 99) * 1000),
    }


def report(results: list[dict]) -> str:
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {time.strftime('%Y-%m-%d', time.gmtime())}.",
        "",
        "| model | cascade (target) | small tier | full | T | threshold | ECE before -> after "
        "| val. escalated | test rows | answered by small | accuracy full -> cascade (pp) "
        "| mean latency cascade/full | p99 latency cascade/full | mean latency small alone/full |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        change = (r["cascade_accuracy"] - r["full_accuracy"]) * 100
        lines.append(
            f"| {r['model']} | {r['cascade']} | {r['small']} | {r['full']} | "
            f"{r['temperature']:.2f} | "
            f"{r['threshold']:.4f} | {r['ece'][0]:.4f} -> {r['ece'][1]:.4f} | "
            f"{r['validation_escalation']:.1%} | {r['test_rows']} | {r['small_share']:.1%} | "
            f"{r['full_accuracy']:.4f} -> {r['cascade_accuracy']:.4f} ({change:+.2f}) | "
            f"{r['mean_ratio']:.2f}x ({r['cascade_mean_ms']:.3f} vs {r['full_mean_ms']:.3f} ms)"
            f" | {r['p99_ratio']:.2f}x ({r['cascade_p99_ms']:.3f} vs {r['full_p99_ms']:.3f} ms) |"
            f" {r['small_alone_mean_ratio']:.2f}x |"
        )
    return "\n".join(lines)


def http_report(results: list[dict]) -> str:
    lines = [
        "| model | cascade (target, threshold) | cloud RTT (simulated) | rows/request "
        "| test rows | answered by small "
        "| accuracy full -> cascade (pp) | mean latency cascade/full | p99 latency cascade/full |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        change = (r["cascade_accuracy"] - r["full_accuracy"]) * 100
        lines.append(
            f"| {r['model']} | {r['cascade']} | {r['rtt_ms']:g} ms | {r['batch']} | "
            f"{r['test_rows']} | "
            f"{r['small_share']:.1%} | {r['full_accuracy']:.4f} -> {r['cascade_accuracy']:.4f} "
            f"({change:+.2f}) | {r['mean_ratio']:.2f}x ({r['cascade_mean_ms']:.2f} vs "
            f"{r['full_mean_ms']:.2f} ms) | {r['p99_ratio']:.2f}x ({r['cascade_p99_ms']:.2f} vs "
            f"{r['full_p99_ms']:.2f} ms) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("cascades", nargs="+", help="MODEL:SMALL:FULL[:CASCADE]")
    parser.add_argument("--max-accuracy-loss-pp", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--rows-per-round", type=int, default=200)
    parser.add_argument("--http-rounds", type=int, default=5)
    parser.add_argument(
        "--cloud-rtt-ms",
        type=float,
        nargs="+",
        default=[0.0],
        help="simulated edge-cloud round trips to measure (0: plain loopback, no proxy)",
    )
    parser.add_argument("--http-batch", type=int, nargs="+", default=[1])
    parser.add_argument(
        "--no-http", action="store_true", help="in process only, even for entries naming CASCADE"
    )
    parser.add_argument("--ports", type=int, default=None, help="first port to listen on")
    args = parser.parse_args()
    if args.ports is not None:
        PORTS.append(args.ports)
    registry = Registry.from_settings(ChassisSettings())
    results = []
    http_results = []
    measured: dict[tuple[str, int, int, int | None], TestSplit] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        for entry in args.cascades:
            model, small, full, *cascade = entry.split(":")
            work = Path(folder) / entry.replace(":", "-")
            key = (model, int(small), int(full), int(cascade[0]) if cascade else None)
            if key not in measured:
                result, measured[key] = bench(registry, *key, args, work)
                results.append(result)
            if cascade and not args.no_http:
                http_results += http_bench(
                    model, int(full), int(cascade[0]), measured[key], args, work
                )
    load_after = os.getloadavg()
    print(report(results))
    if http_results:
        print()
        print(http_report(http_results))
    print()
    print(f"Load average (1, 5, 15 min) at start {load_before}, at end {load_after}.")


if __name__ == "__main__":
    main()
