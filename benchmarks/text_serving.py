"""Text serving benchmark: the gateway serving the MiniLM topic classifier
(chassis.specs.text_topics) with micro-batching on against off, under wrk on loopback.

Run with `make bench-text-serving` (`--help` for the options). Both gateways serve the same
registered version and are up together; they take turns under wrk (the one not measured
waits idle: 2 cores, the load generator and the server share them), `--rounds` times per
connection count, and the tables give medians and the spread of the on/off ratio. Each
request is one text (a held-out docstring), tokenized by the gateway and padded to the
model's 64 tokens. Nothing here is a test.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import BIN, free_port, machine, running, wrk

MODEL = "text-topics"
SPEC = "chassis.specs.text_topics:spec"
ON, OFF = "batching on", "batching off"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per point")
    parser.add_argument("--connections", default="1,8,32", help="wrk connection counts")
    parser.add_argument("--rounds", type=int, default=2, help="on/off alternations per point")
    parser.add_argument(
        "--max-batch", type=int, default=32, help="rows per ONNX Runtime call with batching on"
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=0.0,
        help="how long a batch waits for more requests with batching on (0: greedy, the "
        "gateway's default)",
    )
    return parser.parse_args()


def chassis(*args: str, env: dict[str, str]) -> None:
    subprocess.run([str(BIN / "chassis"), *args], env=env, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    args = parse_args()
    connections = [int(c) for c in args.connections.split(",")]
    home = Path(tempfile.mkdtemp(prefix="bench-text-"))
    env = {**os.environ, "CHASSIS_HOME": str(home), "CHASSIS_GATEWAY_FOLLOW_SECONDS": "0"}
    env.setdefault("ORT_DISABLE_TELEMETRY", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    chassis("import", "--spec", SPEC, env=env)
    chassis("gates", "--model", MODEL, "--version", "1", env=env)
    chassis("promote", "--model", MODEL, "--version", "1", "--reason", "benchmark", env=env)
    print(f"registered, gated, promoted in {time.monotonic() - started:.0f} s", file=sys.stderr)

    from chassis.specs.text_topics import load_topics_dataset

    text = str(load_topics_dataset().test["text"].iloc[0])
    body = json.dumps({"instances": [text]})
    ports = {ON: free_port(), OFF: free_port()}
    urls = {
        name: f"http://127.0.0.1:{port}/v1/models/{MODEL}/predict" for name, port in ports.items()
    }
    serve = [str(BIN / "chassis"), "serve", "--model", MODEL]
    commands = {
        ON: [
            *serve,
            *("--port", str(ports[ON]), "--max-batch", str(args.max_batch)),
            *("--max-wait-ms", str(args.max_wait_ms)),
        ],
        OFF: [*serve, "--port", str(ports[OFF]), "--max-batch", "1"],
    }
    results: dict[str, dict[int, list[dict[str, float]]]] = {}
    with (
        running(ON, commands[ON], urls[ON], body, env),
        running(OFF, commands[OFF], urls[OFF], body, env),
    ):
        for c in connections:
            for round_index in range(args.rounds):
                # Alternate which goes first: a machine that slows down mid-round would
                # otherwise always favour the same one.
                order = (ON, OFF) if round_index % 2 == 0 else (OFF, ON)
                for name in order:
                    point = wrk(urls[name], body, c, args.seconds)
                    results.setdefault(name, {}).setdefault(c, []).append(point)
    shutil.rmtree(home, ignore_errors=True)
    report(results, connections, args, text)


def report(
    results: dict[str, dict[int, list[dict[str, float]]]],
    connections: list[int],
    args: argparse.Namespace,
    text: str,
) -> None:
    print(f"## Text serving: MiniLM topic classifier, batching on vs off ({machine()})\n")
    print(
        f"`python benchmarks/text_serving.py --seconds {args.seconds} --rounds {args.rounds} "
        f"--max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms:g}`; one text a request "
        f"({len(text)} characters), padded to 64 tokens; medians of {args.rounds} rounds.\n"
    )
    print(
        "| connections | on req/s | off req/s | on/off req/s (min-max) | on p50 ms | off p50 ms "
        "| on p99 ms | off p99 ms | non-2xx |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for c in connections:
        on, off = results[ON][c], results[OFF][c]
        ratios = [a["rps"] / b["rps"] for a, b in zip(on, off, strict=True)]
        errors = sum(p["non2xx"] for p in on + off)
        print(
            f"| {c} | {median(p['rps'] for p in on):.1f} | {median(p['rps'] for p in off):.1f} "
            f"| {median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) "
            f"| {median(p['p50'] for p in on):.1f} | {median(p['p50'] for p in off):.1f} "
            f"| {median(p['p99'] for p in on):.1f} | {median(p['p99'] for p in off):.1f} "
            f"| {errors} |"
        )


if __name__ == "__main__":
    main()
