"""Serving benchmark: Chassis's gateway vs `mlflow models serve` vs a minimal server (the
floor), the same registered ONNX model, under wrk on loopback; plus in-process loops.

Run with `make bench-serving` (`--help` for the options). The gateway and the floor are up
together and take turns under wrk (the one not measured waits idle: 2 cores, the load
generator and the server share them); with `--rounds N` they alternate N times per
connection count, and the tables give medians and the spread of the gateway/floor ratio,
which a machine shared with other work moves less than either rate. mlflow runs alone
afterwards. Besides HTTP, the cost of the two ASGI apps themselves is measured in process
(fake request messages, no server), and so is one ONNX Runtime call. Nothing here is a test.

With `--rivals bentoml,ray,litserve` (`make bench-serving-rivals`) it measures instead the
gateway against BentoML, Ray Serve and LitServe on the digits MLP and the MiniLM topic
classifier (`--models`): see benchmarks/rivals.py.
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from statistics import median
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GATEWAY, FLOOR, MLFLOW = "chassis gateway", "minimal server (floor)", "mlflow models serve"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--seconds",
        type=int,
        default=int(os.environ.get("BENCH_SECONDS", "10")),
        help="wrk duration per point (default BENCH_SECONDS or 10)",
    )
    parser.add_argument(
        "--connections",
        default="1,8,32",
        help="comma-separated wrk connection counts (default 1,8,32)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="gateway/floor alternations per connection count (default 1)",
    )
    parser.add_argument("--skip-mlflow", action="store_true", help="leave mlflow out")
    parser.add_argument(
        "--rivals",
        default="",
        help="comma-separated rival servers to measure the gateway against instead of the "
        "floor and mlflow: bentoml, ray, litserve (needs benchmarks/rivals_env.py's venv)",
    )
    parser.add_argument(
        "--models",
        default=None,
        help="with --rivals: comma-separated models, digits and/or minilm (default both)",
    )
    parser.add_argument(
        "--rival-workers",
        type=int,
        default=None,
        help="with --rivals: workers/replicas per rival (default 2, one per core)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="with --rivals: where the released models are kept between runs",
    )
    parser.add_argument("--json", type=Path, help="with --rivals: also write the results here")
    args = parser.parse_args(argv)
    rivals_only = {"--models": args.models, "--rival-workers": args.rival_workers}
    rivals_only |= {"--workdir": args.workdir, "--json": args.json}
    given = [name for name, value in rivals_only.items() if value is not None]
    if given and not args.rivals:
        # Ignoring them would run the whole floor/mlflow benchmark the user did not ask for.
        parser.error(f"{', '.join(given)} only apply with --rivals")
    args.models = args.models or "digits,minilm"
    args.rival_workers = 2 if args.rival_workers is None else args.rival_workers
    args.workdir = args.workdir or REPO / ".chassis" / "bench-rivals"
    return args


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(url: str, body: bytes | None, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(
                url, data=body, headers={"content-type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer in {seconds} s")


def wrk_script(body: str | list[str], script: Path) -> None:
    """A wrk script POSTing `body`, or each of a list of bodies in turn (read from a file
    beside the script, one a line: JSON bodies hold no raw newline, and a Lua literal could
    not hold JSON's \\u escapes)."""
    lines = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"']
    if isinstance(body, str):
        lines.append(f"wrk.body = {json.dumps(body)}")
    else:
        bodies = script.with_suffix(".bodies")
        bodies.write_text("".join(f"{one}\n" for one in body))
        lines += [
            "local bodies = {}",
            f"for line in io.lines({json.dumps(str(bodies))}) do bodies[#bodies + 1] = line end",
            "local next_body = 0",
            "request = function()",
            "  next_body = next_body % #bodies + 1",
            "  return wrk.format(nil, nil, nil, bodies[next_body])",
            "end",
        ]
    script.write_text("\n".join(lines) + "\n")


def wrk(url: str, body: str | list[str], connections: int, seconds: float) -> dict[str, float]:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    wrk_script(body, script)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    script.unlink()
    script.with_suffix(".bodies").unlink(missing_ok=True)

    def millis(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        assert match, f"no {label}% latency in wrk's output"
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rps, "no Requests/sec in wrk's output"
    return {
        "rps": float(rps.group(1)),
        "p50": millis("50"),
        "p99": millis("99"),
        "non2xx": int(errors.group(1)) if errors else 0,
    }


@contextlib.contextmanager
def running(
    name: str,
    command: list[str],
    url: str,
    body: str,
    env: dict[str, str],
    cwd: Path | None = None,
    startup_seconds: float = 180,
) -> "Iterator[subprocess.Popen[bytes]]":
    """The server up and warmed until the block ends; then it, and every process it
    started (workers in groups of their own included), stopped."""
    import process_tree

    process = subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(url, body.encode(), startup_seconds)
        wrk(url, body, 8, 3)  # warm-up round, discarded
        yield process
    finally:
        family = process_tree.identities(process_tree.descendants(process.pid)[1:])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        time.sleep(1)  # workers told to stop by their parent, given a moment
        process_tree.kill_all(family)
        print(f"stopped {name}", file=sys.stderr)


def in_process(model_path: Path, row: list[float]) -> float:
    import numpy as np

    from chassis.runtime import create_session, measure_latency_ms

    session = create_session(model_path)
    return measure_latency_ms(session, np.asarray([row], dtype=np.float32), repeats=2000)["p50"]


def app_costs(model_path: Path, body: bytes) -> dict[str, float]:
    """CPU microseconds per request of each ASGI app alone: fake messages, no server, so
    HTTP parsing and the socket are left out (best of 5 runs of 10,000 requests)."""
    from chassis.settings import ChassisSettings
    from chassis_cli.serve import build_app

    sys.path.insert(0, str(REPO / "benchmarks"))
    import minimal_server

    gateway_app = build_app(ChassisSettings(), ["digits-mlp"])
    gateway_app.gateway.start()
    apps = {
        GATEWAY: (gateway_app, "/v1/models/digits-mlp/predict"),
        FLOOR: (minimal_server.build_app(str(model_path)), "/"),
    }
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
    headers.append((b"content-length", str(len(body)).encode()))
    request = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> dict:
        return request

    async def send(message: dict) -> None:
        pass

    async def cost(app: Any, path: str) -> float:
        scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
        runs = []
        for _ in range(6):  # the first warms up
            started = time.thread_time()
            for _request in range(10_000):
                await app(dict(scope), receive, send)
            runs.append((time.thread_time() - started) / 10_000 * 1e6)
        return min(runs[1:])

    async def both() -> dict[str, float]:
        return {name: await cost(app, path) for name, (app, path) in apps.items()}

    try:
        import uvloop

        return uvloop.run(both())
    except ImportError:
        return asyncio.run(both())
    finally:
        for log in gateway_app.gateway.logs.values():
            log.close()


def main() -> None:
    args = parse_args()
    if args.rivals:
        sys.path.insert(0, str(REPO / "benchmarks"))
        import rivals

        rivals.run(args)
        return
    connections = [int(c) for c in args.connections.split(",")]
    home = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    env = {
        **os.environ,
        "CHASSIS_HOME": str(home),
        "CHASSIS_GATEWAY_FOLLOW_SECONDS": "0",
        # `mlflow models serve` execs `uvicorn` by name: the venv's bin must be on PATH.
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.setdefault("ORT_DISABLE_TELEMETRY", "1")
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("DO_NOT_TRACK", "1")
    subprocess.run(
        [str(BIN / "chassis"), "release", "--epochs", "10", "--compression", "off"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    os.environ.update(env)
    from chassis.registry import Registry
    from chassis.settings import ChassisSettings

    settings = ChassisSettings()
    files = Registry.from_settings(settings).fetch_version("digits-mlp", 1, home / "bench-model")
    from sklearn.datasets import load_digits

    digits: Any = load_digits()  # sklearn has no types
    row = [float(v) for v in digits.data[0]]
    chassis_body = json.dumps({"instances": [row]})
    # name -> connections -> one wrk result per round
    results: dict[str, dict[int, list[dict[str, float]]]] = {}

    gateway_port, floor_port = free_port(), free_port()
    urls = {
        GATEWAY: f"http://127.0.0.1:{gateway_port}/v1/models/digits-mlp/predict",
        FLOOR: f"http://127.0.0.1:{floor_port}/",
    }
    gateway = [str(BIN / "chassis"), "serve", "--model", "digits-mlp", "--port", str(gateway_port)]
    floor = [
        sys.executable,
        str(REPO / "benchmarks" / "minimal_server.py"),
        str(files.onnx_path),
        str(floor_port),
    ]
    with (
        running(GATEWAY, gateway, urls[GATEWAY], chassis_body, env),
        running(FLOOR, floor, urls[FLOOR], chassis_body, env),
    ):
        for c in connections:
            for _ in range(args.rounds):
                for name, url in urls.items():
                    point = wrk(url, chassis_body, c, args.seconds)
                    results.setdefault(name, {}).setdefault(c, []).append(point)
    if not args.skip_mlflow:
        port = free_port()
        mlflow_env = {**env, "MLFLOW_TRACKING_URI": settings.resolved_tracking_uri()}
        mlflow = [str(BIN / "mlflow"), "models", "serve", "-m", "models:/digits-mlp/1"]
        mlflow += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
        mlflow += ["--workers", "1"]
        url = f"http://127.0.0.1:{port}/invocations"
        mlflow_body = json.dumps({"inputs": [row]})
        with running(MLFLOW, mlflow, url, mlflow_body, mlflow_env):
            results[MLFLOW] = {c: [wrk(url, mlflow_body, c, args.seconds)] for c in connections}
    onnx_p50 = in_process(files.onnx_path, row)
    costs = app_costs(files.onnx_path, chassis_body.encode())
    shutil.rmtree(home, ignore_errors=True)
    report(results, connections, args, onnx_p50, costs)


def machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")), "?")
    return f"{os.cpu_count()} cores, {cpu}"


def middle(points: list[dict[str, float]], key: str) -> float:
    return median(point[key] for point in points)


def report(
    results: dict[str, dict[int, list[dict[str, float]]]],
    connections: list[int],
    args: argparse.Namespace,
    onnx_p50: float,
    costs: dict[str, float],
) -> None:
    rounds = f"median of {args.rounds} alternating rounds" if args.rounds > 1 else "one round"
    print(f"\nMachine: {machine()}; wrk -t1, {args.seconds} s per point, {rounds}.\n")
    print("| server | conns | req/s | p50 ms | p99 ms | non-2xx |")
    print("|---|---|---|---|---|---|")
    for name, by_connections in results.items():
        for c, points in by_connections.items():
            print(
                f"| {name} | {c} | {middle(points, 'rps'):.0f} | {middle(points, 'p50'):.3f} "
                f"| {middle(points, 'p99'):.3f} | {sum(p['non2xx'] for p in points)} |"
            )
    mlflow = results.get(MLFLOW)
    print(
        "\n| conns | gateway / floor (req/s) | gateway / mlflow (req/s) "
        "| gateway p99 / mlflow p99 | gateway p50 - floor p50 (ms) |"
    )
    print("|---|---|---|---|---|")
    for c in connections:
        gateway, floor = results[GATEWAY][c], results[FLOOR][c]
        ratios = sorted(g["rps"] / f["rps"] for g, f in zip(gateway, floor, strict=True))
        spread = f" ({ratios[0]:.2f}-{ratios[-1]:.2f})" if len(ratios) > 1 else ""
        rps, p99 = middle(gateway, "rps"), middle(gateway, "p99")
        versus = "| - | - "
        if mlflow is not None:
            versus = (
                f"| {rps / middle(mlflow[c], 'rps'):.1f}x | {p99 / middle(mlflow[c], 'p99'):.2f} "
            )
        print(
            f"| {c} | {median(ratios):.2f}x{spread} {versus}"
            f"| {middle(gateway, 'p50') - middle(floor, 'p50'):+.3f} |"
        )
    print(f"\nIn-process onnxruntime, batch 1: p50 {onnx_p50 * 1000:.1f} us per call.")
    print(
        f"In-process ASGI app, no server: gateway {costs[GATEWAY]:.1f} us per request, "
        f"floor {costs[FLOOR]:.1f} us (CPU time)."
    )


if __name__ == "__main__":
    main()
