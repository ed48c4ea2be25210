"""Serving benchmark: Chassis's gateway vs `mlflow models serve` vs a minimal server (the
floor), the same registered ONNX model, under wrk on loopback; plus an in-process loop.

Run with `make bench-serving`. Each server runs alone while it is measured (2 cores: the
load generator and the server share them), one after another in the same run, and the
results are printed as a markdown table with ratios. Nothing here is a test.
"""

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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONNECTIONS = (1, 8, 32)
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
BIN = Path(sys.executable).parent


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


def wrk(url: str, body: str, connections: int) -> dict[str, float]:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body)}\n"
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{SECONDS}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    script.unlink()

    def millis(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": millis("50"),
        "p99": millis("99"),
        "non2xx": int(errors.group(1)) if errors else 0,
    }


def measure(name: str, command: list[str], url: str, body: str, env: dict[str, str]) -> dict:
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until(url, body.encode())
        wrk(url, body, 8)  # warm-up round, discarded
        return {c: wrk(url, body, c) for c in CONNECTIONS}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        print(f"measured {name}", file=sys.stderr)


def in_process(model_path: Path, row: list[float]) -> float:
    import numpy as np

    from chassis.runtime import create_session, measure_latency_ms

    session = create_session(model_path)
    return measure_latency_ms(session, np.asarray([row], dtype=np.float32), repeats=2000)["p50"]


def main() -> None:
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
    from chassis import registry, tracking
    from chassis.settings import ChassisSettings

    settings = ChassisSettings()
    tracking.connect(settings)
    files = registry.fetch_version("digits-mlp", 1, home / "bench-model")
    from sklearn.datasets import load_digits

    row = [float(v) for v in load_digits().data[0]]
    chassis_body = json.dumps({"instances": [row]})
    results = {}

    port = free_port()
    results["chassis gateway"] = measure(
        "chassis",
        [str(BIN / "chassis"), "serve", "--model", "digits-mlp", "--port", str(port)],
        f"http://127.0.0.1:{port}/v1/models/digits-mlp/predict",
        chassis_body,
        env,
    )
    port = free_port()
    results["minimal server (floor)"] = measure(
        "minimal",
        [
            sys.executable,
            str(REPO / "benchmarks" / "minimal_server.py"),
            str(files.onnx_path),
            str(port),
        ],
        f"http://127.0.0.1:{port}/",
        chassis_body,
        env,
    )
    port = free_port()
    mlflow_env = {**env, "MLFLOW_TRACKING_URI": settings.resolved_tracking_uri()}
    results["mlflow models serve"] = measure(
        "mlflow",
        [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            "models:/digits-mlp/1",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        f"http://127.0.0.1:{port}/invocations",
        json.dumps({"inputs": [row]}),
        mlflow_env,
    )
    in_process_p50 = in_process(files.onnx_path, row)
    shutil.rmtree(home, ignore_errors=True)
    report(results, in_process_p50)


def machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")), "?")
    return f"{os.cpu_count()} cores, {cpu}"


def report(results: dict, in_process_p50: float) -> None:
    print(f"\nMachine: {machine()}; wrk -t1, {SECONDS} s per point, one server at a time.\n")
    print("| server | conns | req/s | p50 ms | p99 ms | non-2xx |")
    print("|---|---|---|---|---|---|")
    for name, points in results.items():
        for c, m in points.items():
            print(
                f"| {name} | {c} | {m['rps']:.0f} | {m['p50']:.3f} | {m['p99']:.3f} "
                f"| {m['non2xx']} |"
            )
    gateway = results["chassis gateway"]
    floor = results["minimal server (floor)"]
    mlflow = results["mlflow models serve"]
    print(
        "\n| conns | gateway / floor (req/s) | gateway / mlflow (req/s) "
        "| gateway p99 / mlflow p99 | gateway p50 - floor p50 (ms) |"
    )
    print("|---|---|---|---|---|")
    for c in CONNECTIONS:
        g, f, m = gateway[c], floor[c], mlflow[c]
        print(
            f"| {c} | {g['rps'] / f['rps']:.2f}x | {g['rps'] / m['rps']:.1f}x "
            f"| {g['p99'] / m['p99']:.2f} | {g['p50'] - f['p50']:+.3f} |"
        )
    print(f"\nIn-process onnxruntime, batch 1: p50 {in_process_p50 * 1000:.1f} us per call.")


if __name__ == "__main__":
    main()
