"""What the result cache costs a miss over HTTP: `chassis serve` processes side by side, the
cache off on one and on (every request a new row: 0 % hits) on the other, taking turns
under wrk on loopback.

The figure is the gateway process's own CPU per request (user + system, /proc), as in
benchmarks/access_log.py, whose process handling this reuses: on a shared machine requests
per second follow the machine's load, the CPU a request costs the gateway does not. The
model is the tiny registered one (y = x + c): the gateway's own work dominates, the worst
case for the cache's share. `--before PATH`: a third gateway, cache on, running the code of
another checkout (PATH), so a change is measured against what it replaces in one run;
`--again`: a second cache-off gateway, the A/A noise floor. Besides the median of the
rounds' ratios, each gateway's CPU over all its rounds (the sum over the requests' sum):
a full garbage collection (0.1-0.4 s here) lands in one round of several, which a median
leaves out. Run: `python benchmarks/result_cache_http.py` (Linux, wrk). Nothing here is a test.
"""

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from access_log import cpu_seconds, free_port, gateway  # noqa: E402

MODEL = "bench-access"  # access_log.gateway serves this name

# Every request a row never sent before: a counter from a base that differs per wrk run
# (float32 holds every integer below 2**24 exactly, so no two rows collide).
SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = %d
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, '{"instances":[[' .. n .. ']]}')
end
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=6, help="wrk duration per point")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=7, help="alternations")
    parser.add_argument("--before", type=Path, help="another checkout's code, cache on")
    parser.add_argument("--again", action="store_true", help="a second gateway, cache off")
    parser.add_argument(
        "--first-port", type=int, default=0, help="the gateways' ports from here (0: free ones)"
    )
    return parser.parse_args()


def cpu_per_request(
    pid: int, port: int, base: int, step: int, c: int, seconds: int
) -> tuple[float, int]:
    """The gateway's CPU seconds over one wrk run, and the requests it answered."""
    script = Path(tempfile.gettempdir()) / f"chassis-cache-bench-{port}.lua"
    script.write_text(SCRIPT % base)
    before = cpu_seconds(pid)
    url = f"http://127.0.0.1:{port}/v1/models/{MODEL}/predict"
    out = subprocess.run(
        ["wrk", "-t1", f"-c{c}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    used = cpu_seconds(pid) - before
    match = re.search(r"(\d+) requests in", out)
    assert match, f"no request count in wrk's output:\n{out}"
    assert "Non-2xx" not in out, out
    count = int(match.group(1))
    assert count < step, f"{count} requests overran the run's {step} distinct rows"
    return used, count


def cache_levels(port: int) -> str:
    """The gateway's local-level hits and misses, from /metrics (empty: cache off)."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    found = re.findall(
        r'chassis_cache_requests_total\{[^}]*level="local",[^}]*result="(\w+)"\} (\S+)', text
    )
    return ", ".join(f"{result} {float(count):.0f}" for result, count in found)


def main() -> None:
    args = parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-cache-http-"))
    env = {**os.environ, "CHASSIS_HOME": str(home), "CHASSIS_GATEWAY_FOLLOW_SECONDS": "0"}
    for name, value in (("ORT_DISABLE_TELEMETRY", "1"), ("MLFLOW_DISABLE_TELEMETRY", "true")):
        env.setdefault(name, value)
    os.environ.update(env)
    sys.path.insert(0, str(REPO))
    from tests.fixtures.registries import home_registry
    from tests.fixtures.registry_versions import register_tiny_versions

    [version] = register_tiny_versions(MODEL, 1)
    home_registry().promote(MODEL, version, expected_champion=None, actor="bench", reason="bench")
    cached = {"CHASSIS_GATEWAY_CACHE_MODELS": MODEL}
    setups = {"off": (REPO, {}), "on": (REPO, cached)}
    if args.again:
        setups["off (again)"] = (REPO, {})
    if args.before is not None:
        setups["on (before)"] = (args.before.resolve(), cached)
    results: dict[str, list[float]] = {name: [] for name in setups}
    totals = {name: [0.0, 0] for name in setups}  # CPU seconds, requests
    with contextlib.ExitStack() as stack:
        running: dict[str, tuple[int, int]] = {}
        for index, (name, (code, extra)) in enumerate(setups.items()):
            port = args.first_port + index if args.first_port else free_port()
            code_env = {**env, **extra, "PYTHONPATH": str(code)}
            running[name] = (stack.enter_context(gateway(code_env, port, False)).pid, port)
        # Each run's rows start at its own base: 2**24 split between the runs.
        step = 2**24 // (len(running) * (args.rounds + 1))
        base = 0
        for pid, port in running.values():  # warm-up, discarded
            cpu_per_request(pid, port, base, step, args.connections, 2)
            base += step
        names = list(running)
        for round_ in range(args.rounds):
            # Rotated each round: none runs twice in a row (a process that just ran finds
            # its memory in the CPU's caches) and each takes every place in turn.
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                pid, port = running[name]
                used, count = cpu_per_request(pid, port, base, step, args.connections, args.seconds)
                results[name].append(used / count * 1e6)
                totals[name][0] += used
                totals[name][1] += count
                base += step
        levels = {name: cache_levels(port) for name, (_, port) in running.items()}
    off = results["off"]
    off_total = totals["off"][0] / totals["off"][1]
    print(
        f"gateway CPU per request (us), 0 % hits, wrk -t1 -c{args.connections}, "
        f"{args.seconds} s x {args.rounds} rounds"
    )
    print(
        "| gateway | CPU per request (median, min) | / off (median of rounds, range) "
        "| all rounds: CPU per request, / off |"
    )
    print("|---|---|---|---|")
    for name, values in results.items():
        ratios = [v / o for v, o in zip(values, off, strict=True)]
        total = totals[name][0] / totals[name][1]
        print(
            f"| {name} | {median(values):.1f}, {min(values):.1f} us | {median(ratios):.3f} "
            f"({min(ratios):.2f}-{max(ratios):.2f}) | {total * 1e6:.1f} us, "
            f"{total / off_total:.3f} |"
        )
    for name, counted in levels.items():
        print(f"{name}: local level {counted or 'off'}")


if __name__ == "__main__":
    main()
