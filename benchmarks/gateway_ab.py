"""A/B of the gateway's hot path against the floor: the digits MLP behind the minimal server
(benchmarks/minimal_server.py) and behind `chassis serve` running this checkout's code and,
with `--before PATH`, another checkout's, all up together and taking turns under wrk on
loopback (the order rotated each round).

benchmarks/serving.py measures one gateway against the floor; this one puts a change and
what it replaces in the same run, so that a machine shared with other work moves both
alike. Per server and round: requests/s, the server process's CPU (user + system, /proc)
per request and wrk's p99; the tables give medians over rounds, each gateway's per-round
ratio to the floor (requests/s, and the floor's CPU per request over the gateway's), and
each server's CPU over all its rounds (a full garbage collection lands in one round of
several, which a median leaves out). `--home DIR` keeps the released model between runs.
Run: `python benchmarks/gateway_ab.py --before /work/main`. Nothing here is a test.
"""

import argparse
import contextlib
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
from pathlib import Path
from statistics import median
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FLOOR = "floor"
MODEL = "digits-mlp"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per point")
    parser.add_argument("--connections", default="8,32", help="wrk connection counts")
    parser.add_argument("--rounds", type=int, default=5, help="rotations per count")
    parser.add_argument("--before", type=Path, help="another checkout's code, a second gateway")
    parser.add_argument("--home", type=Path, help="CHASSIS_HOME to keep (default: a temp dir)")
    parser.add_argument("--first-port", type=int, default=0, help="ports from here (0: free)")
    return parser.parse_args()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server(command: list[str], env: dict[str, str], url: str, body: bytes) -> Iterator[int]:
    log = Path(env["CHASSIS_HOME"]) / f"server-{url.split(':')[2].split('/')[0]}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    request = urllib.request.Request(
                        url, data=body, headers={"content-type": "application/json"}
                    )
                    with urllib.request.urlopen(request, timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError(f"{command} did not answer; see {log}") from None
                    time.sleep(0.3)
            yield process.pid
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def run_wrk(pid: int, url: str, body: str, c: int, seconds: int) -> dict[str, float]:
    script = Path(tempfile.gettempdir()) / f"chassis-ab-{os.getpid()}.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body)}\n"
    )
    before = cpu_seconds(pid)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{c}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    used = cpu_seconds(pid) - before
    count = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)", out, re.M)
    assert count and rps and p99, f"unexpected wrk output:\n{out}"
    assert "Non-2xx" not in out, out
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    return {
        "rps": float(rps.group(1)),
        "cpu_us": used / int(count.group(1)) * 1e6,
        "cpu_s": used,
        "requests": int(count.group(1)),
        "p99": float(p99.group(1)) * scale,
    }


def release(home: Path, env: dict[str, str]) -> Path:
    """The digits MLP released once into `home`; its ONNX file (for the floor)."""
    model = home / "bench-model"
    if not any(model.rglob("*.onnx")):
        subprocess.run(
            [str(BIN / "chassis"), "release", "--epochs", "10", "--compression", "off"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        from chassis.registry import Registry
        from chassis.settings import ChassisSettings

        Registry.from_settings(ChassisSettings()).fetch_version(MODEL, 1, model)
    return next(model.rglob("*.onnx"))


def main() -> None:
    args = parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="bench-gateway-ab-"))
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CHASSIS_HOME": str(home), "CHASSIS_GATEWAY_FOLLOW_SECONDS": "0"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    for name, value in (("ORT_DISABLE_TELEMETRY", "1"), ("MLFLOW_DISABLE_TELEMETRY", "true")):
        env.setdefault(name, value)
    os.environ.update(env)
    onnx_path = release(home, {**env, "PYTHONPATH": str(REPO)})
    from sklearn.datasets import load_digits

    digits: Any = load_digits()  # sklearn has no types
    body = json.dumps({"instances": [[float(v) for v in digits.data[0]]]})
    checkouts = {"gateway": REPO} | ({"before": args.before} if args.before else {})
    names = [FLOOR, *checkouts]
    ports = [args.first_port + i if args.first_port else free_port() for i in range(len(names))]
    urls = {}
    with contextlib.ExitStack() as stack:
        pids = {}
        for name, port in zip(names, ports, strict=True):
            if name == FLOOR:
                urls[name] = f"http://127.0.0.1:{port}/"
                command = [sys.executable, str(REPO / "benchmarks" / "minimal_server.py")]
                command += [str(onnx_path), str(port)]
                own = env
            else:
                urls[name] = f"http://127.0.0.1:{port}/v1/models/{MODEL}/predict"
                command = [sys.executable, "-m", "chassis_cli.main", "serve", "--model", MODEL]
                command += ["--port", str(port)]
                own = {**env, "PYTHONPATH": str(checkouts[name])}
                own["CHASSIS_GATEWAY_LOCAL_DIR"] = str(home / f"local-{port}")
            pids[name] = stack.enter_context(server(command, own, urls[name], body.encode()))
        for name in names:
            run_wrk(pids[name], urls[name], body, 8, 2)  # warm-up, discarded
        results: dict[int, dict[str, list[dict[str, float]]]] = {}
        for c in [int(c) for c in args.connections.split(",")]:
            for round_ in range(args.rounds):
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for name in order:
                    point = run_wrk(pids[name], urls[name], body, c, args.seconds)
                    results.setdefault(c, {}).setdefault(name, []).append(point)
    report(results, args, names)


def report(
    results: dict[int, dict[str, list[dict[str, float]]]],
    args: argparse.Namespace,
    names: list[str],
) -> None:
    print(f"wrk -t1, {args.seconds} s x {args.rounds} rotations; load {os.getloadavg()}")
    print("| conns | server | req/s | CPU us/req | all rounds CPU us/req | p99 ms |")
    print("|---|---|---|---|---|---|")
    for c, by in results.items():
        for name in names:
            points = by[name]
            total = sum(p["cpu_s"] for p in points) / sum(p["requests"] for p in points) * 1e6
            print(
                f"| {c} | {name} | {median(p['rps'] for p in points):.0f} "
                f"| {median(p['cpu_us'] for p in points):.1f} | {total:.1f} "
                f"| {median(p['p99'] for p in points):.2f} |"
            )
    print("\n| conns | server | / floor req/s (median, range) | floor CPU / its CPU (median) |")
    print("|---|---|---|---|")
    for c, by in results.items():
        for name in names[1:]:
            pairs = list(zip(by[name], by[FLOOR], strict=True))
            rps = sorted(g["rps"] / f["rps"] for g, f in pairs)
            cpu = sorted(f["cpu_us"] / g["cpu_us"] for g, f in pairs)
            print(
                f"| {c} | {name} | {median(rps):.3f} ({rps[0]:.2f}-{rps[-1]:.2f}) "
                f"| {median(cpu):.3f} ({cpu[0]:.2f}-{cpu[-1]:.2f}) |"
            )


if __name__ == "__main__":
    main()
