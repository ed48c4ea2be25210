"""What the gateway's access log costs: two `chassis serve` processes side by side, one with
`--access-log`, one without, taking turns under wrk on loopback.

The figure reported is the gateway process's own CPU time per request (user + system, from
/proc): on a machine shared with other work, requests per second move more with the
machine's load than with the log, while the CPU a request costs the gateway does not.
The model is a tiny registered ONNX file (y = x + c), so the gateway's own work dominates:
the worst case for the log's share. Run: `python benchmarks/access_log.py` (Linux, wrk).
Nothing here is a test.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parent.parent
MODEL = "bench-access"
BODY = json.dumps({"instances": [[0.5]]})


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=8, help="wrk duration per point")
    parser.add_argument("--connections", default="1,8,32", help="wrk connection counts")
    parser.add_argument("--rounds", type=int, default=3, help="off/on alternations per count")
    return parser.parse_args()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def gateway(env: dict[str, str], port: int, access_log: bool) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "chassis_cli.main", "serve", "--model", MODEL]
    command += ["--port", str(port), "--access-log" if access_log else "--no-access-log"]
    local = {"CHASSIS_GATEWAY_LOCAL_DIR": str(Path(env["CHASSIS_HOME"]) / f"local-{port}")}
    with (Path(env["CHASSIS_HOME"]) / f"gateway-{port}.log").open("wb") as log:
        process = subprocess.Popen(command, env={**env, **local}, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError(f"gateway on {port} did not get ready") from None
                    time.sleep(0.3)
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def cpu_per_request(process: subprocess.Popen[bytes], port: int, c: int, seconds: int) -> float:
    """The gateway's CPU microseconds per request over one wrk run."""
    script = Path(tempfile.gettempdir()) / "chassis-access-bench.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(BODY)}\n"
    )
    before = cpu_seconds(process.pid)
    url = f"http://127.0.0.1:{port}/v1/models/{MODEL}/predict"
    out = subprocess.run(
        ["wrk", "-t1", f"-c{c}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    used = cpu_seconds(process.pid) - before
    match = re.search(r"(\d+) requests in", out)
    assert match, f"no request count in wrk's output:\n{out}"
    return used / int(match.group(1)) * 1e6


def main() -> None:
    args = parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-access-log-"))
    env = {**os.environ, "CHASSIS_HOME": str(home), "CHASSIS_GATEWAY_FOLLOW_SECONDS": "0"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    for name, value in (("ORT_DISABLE_TELEMETRY", "1"), ("MLFLOW_DISABLE_TELEMETRY", "true")):
        env.setdefault(name, value)
    os.environ.update(env)
    sys.path.insert(0, str(REPO))
    from tests.fixtures.registries import home_registry
    from tests.fixtures.registry_versions import register_tiny_versions

    [version] = register_tiny_versions(MODEL, 1)
    home_registry().promote(MODEL, version, expected_champion=None, actor="bench", reason="bench")
    off_port, on_port = free_port(), free_port()
    results: dict[int, dict[bool, list[float]]] = {}
    with gateway(env, off_port, False) as off, gateway(env, on_port, True) as on:
        processes = {False: (off, off_port), True: (on, on_port)}
        for process, port in processes.values():
            cpu_per_request(process, port, 8, 3)  # warm-up, discarded
        for c in [int(c) for c in args.connections.split(",")]:
            for round_ in range(args.rounds):
                for logged in (False, True) if round_ % 2 == 0 else (True, False):
                    process, port = processes[logged]
                    point = cpu_per_request(process, port, c, args.seconds)
                    results.setdefault(c, {}).setdefault(logged, []).append(point)
    print(f"gateway CPU per request (us), wrk -t1, {args.seconds} s x {args.rounds} rounds")
    print("| connections | access log off | on | on/off |")
    print("|---|---|---|---|")
    for c, by in results.items():
        ratios = [b / a for a, b in zip(by[False], by[True], strict=True)]
        print(
            f"| {c} | {median(by[False]):.0f} | {median(by[True]):.0f} | "
            f"{median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) |"
        )


if __name__ == "__main__":
    main()
