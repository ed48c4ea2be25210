"""Rollout decisions benchmark: false rollbacks of an A/A candidate and detection of bad
ones, by Chassis's statistical analysis and by the rule it replaced, on the same data.

1. Setup: `chassis release` on the digits default (a champion), then the champion's own
   bytes registered again as a new version (the A/A candidate).
2. Record: a real `chassis serve` gateway runs the pair as a 50 % canary with mirroring
   while test rows are replayed against it (and, by default, a CPU hog runs beside it);
   its /metrics counters are scraped every `--scrape-seconds`.
3. Replay: `--simulations` rollouts each start at a random point of the recording and
   advance through it scrape by scrape, judged at the policy's look points by
   `chassis.rollout.window.WindowJudge` (the code the rollout task runs) and, separately,
   by the legacy rule (benchmarks/legacy_rollout_rule.py). Bad candidates are the same
   recording transformed: +5 pp errors, 2x latency (wall and CPU buckets shifted by one
   doubling), agreement 0.9.
4. Real: `--real` A/A rollouts through `chassis rollout` (each on its own gateway).

Nothing here is a test; figures go to BENCHMARKS.md.
"""

import argparse
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import median

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.legacy_rollout_rule import LegacyPolicy, legacy_verdict  # noqa: E402
from chassis.rollout.counts import VersionCounts, from_exposition  # noqa: E402
from chassis.rollout.policy import RolloutPolicy  # noqa: E402
from chassis.rollout.schedule import first_share, next_share  # noqa: E402
from chassis.rollout.window import WindowJudge  # noqa: E402

MODEL = "digits-mlp"
CHASSIS = [sys.executable, "-m", "chassis_cli.main"]
SHIFT_2X = 4  # buckets per doubling (chassis.serving.metrics.LATENCY_BUCKETS)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--home", type=Path, help="CHASSIS_HOME to use (default: a temp dir)")
    parser.add_argument("--record-seconds", type=float, default=240.0)
    parser.add_argument("--scrape-seconds", type=float, default=0.25)
    parser.add_argument("--simulations", type=int, default=400)
    parser.add_argument("--real", type=int, default=20, help="real A/A rollouts (0: none)")
    parser.add_argument("--hogs", type=int, default=1, help="CPU hog processes beside it")
    parser.add_argument("--recording", type=Path, help="reuse a recording (JSON)")
    parser.add_argument("--output", type=Path, default=Path("rollout_decisions.json"))
    return parser.parse_args()


# ---- setup and recording -------------------------------------------------------------


def chassis_env(home: Path) -> dict[str, str]:
    return {**os.environ, "CHASSIS_HOME": str(home), "ORT_DISABLE_TELEMETRY": "1"}


def prepare(home: Path) -> tuple[int, int]:
    """(champion, A/A copy) in `home`, running `chassis release` if there is no champion."""
    from chassis.errors import RegistryError
    from chassis.registry import Registry
    from chassis.settings import ChassisSettings

    os.environ["CHASSIS_HOME"] = str(home)
    registry = Registry.from_settings(ChassisSettings(home=home))
    try:
        existing = registry.version_for_alias(MODEL, "champion")
    except RegistryError:  # no such model yet
        existing = None
    if existing is None:
        subprocess.run(
            [sys.executable, "-m", "chassis_cli.main", "release"],
            env=chassis_env(home),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    champion = registry.version_for_alias(MODEL, "champion")
    assert champion is not None
    return champion, registry.register_copy(MODEL, champion, "rollout decisions benchmark")


class Hogs:
    """Busy loops beside the measurement: the machine a user's CI or laptop often is."""

    def __init__(self, count: int) -> None:
        self.processes = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)
        ]

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()


def record(home: Path, stable: int, candidate: int, args: argparse.Namespace) -> list[dict]:
    from chassis.registry import Registry
    from chassis.serving.client import GatewayClient
    from chassis.serving.embedded import free_port
    from chassis.settings import ChassisSettings
    from chassis.traffic import replay
    from flows.rollout import test_rows

    port = free_port()
    log = (home / "bench-gateway.log").open("ab")
    gateway = subprocess.Popen(
        [sys.executable, "-m", "chassis_cli.main", "serve", "--model", MODEL, "--port", str(port)],
        env=chassis_env(home),
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    client = GatewayClient(url, ChassisSettings(home=home).admin_token())
    try:
        deadline = time.monotonic() + 120
        while not client.ready():
            if gateway.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gateway did not start; see bench-gateway.log")
            time.sleep(0.2)
        client.set_rollout(MODEL, "canary", candidate, 50.0, mirror_percent=100.0)
        stop = threading.Event()
        rows = test_rows(Registry.from_settings(ChassisSettings(home=home)), MODEL, stable)
        driver = threading.Thread(
            target=replay,
            args=(url, MODEL, rows),
            kwargs={
                "max_requests": 10**9,
                "max_seconds": args.record_seconds + 30,
                "concurrency": 4,
                "stop": stop,
                "sticky_keys": 1000,
            },
            daemon=True,
        )
        driver.start()
        time.sleep(2)  # past the first requests' warm-up
        scrapes = []
        started = time.monotonic()
        while time.monotonic() - started < args.record_seconds:
            counts = from_exposition(client.metrics(), MODEL)
            scrapes.append(
                {
                    "t": time.monotonic() - started,
                    "versions": {
                        str(v): counts[v].__dict__ | {"bounds": list(counts[v].bounds)}
                        for v in (stable, candidate)
                        if v in counts
                    },
                }
            )
            time.sleep(args.scrape_seconds)
        stop.set()
        driver.join(timeout=30)
        return scrapes
    finally:
        client.close()
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=30)


# ---- replay ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Delta:
    seconds: float
    stable: VersionCounts
    candidate: VersionCounts


def load_deltas(scrapes: list[dict], stable: int, candidate: int) -> list[Delta]:
    def counts(scrape: dict, version: int) -> VersionCounts:
        raw = dict(scrape["versions"][str(version)])
        for key in ("bounds", "buckets", "cpu_buckets"):
            raw[key] = tuple(raw[key])
        return VersionCounts(**raw)

    deltas = []
    for before, after in itertools.pairwise(scrapes):
        deltas.append(
            Delta(
                after["t"] - before["t"],
                counts(after, stable).since(counts(before, stable)),
                counts(after, candidate).since(counts(before, candidate)),
            )
        )
    return deltas


Transform = Callable[[VersionCounts, np.random.Generator], VersionCounts]


def identity(counts: VersionCounts, rng: np.random.Generator) -> VersionCounts:
    return counts


def more_errors(counts: VersionCounts, rng: np.random.Generator) -> VersionCounts:
    """+5 pp of executions fail; a failed execution leaves the latency histogram."""
    failed = int(rng.binomial(counts.answered, 0.05)) if counts.answered else 0
    buckets = np.array(counts.buckets)
    if failed:
        removed = rng.multivariate_hypergeometric(buckets, failed)
        buckets = buckets - removed
    return replace(counts, errors=counts.errors + failed, buckets=tuple(int(b) for b in buckets))


def twice_as_slow(counts: VersionCounts, rng: np.random.Generator) -> VersionCounts:
    def shifted(buckets: tuple[int, ...]) -> tuple[int, ...]:
        moved = [0] * SHIFT_2X + list(buckets[:-SHIFT_2X])
        moved[-1] += sum(buckets[-SHIFT_2X:])
        return tuple(moved)

    return replace(counts, buckets=shifted(counts.buckets), cpu_buckets=shifted(counts.cpu_buckets))


def agreeing_90(counts: VersionCounts, rng: np.random.Generator) -> VersionCounts:
    return replace(counts, agreed=int(rng.binomial(counts.compared, 0.9)))


CASES: dict[str, Transform] = {
    "A/A (same bytes)": identity,
    "+5 pp errors": more_errors,
    "2x latency": twice_as_slow,
    "agreement 0.9": agreeing_90,
}


@dataclass(frozen=True)
class Decision:
    rolled_back: bool
    requests: int  # requests sent to the gateway until the decision (mirrored rows)
    seconds: float
    why: str


def simulate_chassis(
    deltas: list[Delta], policy: RolloutPolicy, transform: Transform, seed: int
) -> Decision:
    rng = np.random.default_rng(seed)
    position = random.Random(seed).randrange(len(deltas))
    requests, seconds = 0, 0.0
    plan: list[tuple[str, float]] = [("shadow", 0.0)] if policy.shadow_first else []
    percent: float | None = first_share(policy)
    steps_taken = 0
    while True:
        if plan:
            label, share = plan.pop(0)
        elif percent is not None:
            label, share = f"canary {percent:g}%", percent
        else:
            return Decision(False, requests, seconds, "promoted")
        judge = WindowJudge(label, policy, compare=True)
        stable, candidate, elapsed = VersionCounts(), VersionCounts(), 0.0
        while True:
            delta = deltas[position % len(deltas)]
            position += 1
            stable = stable + delta.stable
            candidate = candidate + transform(delta.candidate, rng)
            elapsed += delta.seconds
            requests += delta.candidate.compared
            seconds += delta.seconds
            analysis = judge.observe(candidate, stable, elapsed)
            if analysis is not None:
                break
        steps_taken += 1
        if analysis.verdict in ("fail", "paused"):
            return Decision(analysis.verdict == "fail", requests, seconds, analysis.reason)
        if label == "shadow":
            continue
        step = next_share(policy, share, analysis.verdict, steps_taken)
        if step.rollback:
            return Decision(True, requests, seconds, f"{analysis.reason}; {step.reason}")
        percent = step.percent


def _draw_latencies_ms(counts: VersionCounts, rng: np.random.Generator) -> np.ndarray:
    """Latencies (ms) spread log-uniformly inside each recorded bucket."""
    bounds = np.array(counts.bounds)
    lower = np.concatenate([[bounds[0] / 2 ** (1 / 4)], bounds])
    upper = np.concatenate([bounds, [bounds[-1] * 2]])
    samples = [
        np.exp(rng.uniform(np.log(lower[i]), np.log(upper[i]), size=count))
        for i, count in enumerate(counts.buckets)
        if count
    ]
    return np.concatenate(samples) * 1000 if samples else np.array([])


def simulate_legacy(deltas: list[Delta], transform: Transform, seed: int) -> Decision:
    rng = np.random.default_rng(seed)
    policy = LegacyPolicy()
    position = random.Random(seed).randrange(len(deltas))
    requests, seconds = 0, 0.0
    for label in ("shadow", "canary 10%", "canary 25%", "canary 50%", "canary 100%"):
        stable, candidate, elapsed = VersionCounts(), VersionCounts(), 0.0
        for window in range(policy.max_extensions + 1):
            while (
                candidate.executions < policy.min_requests
                and elapsed < (window + 1) * policy.step_seconds
            ):
                delta = deltas[position % len(deltas)]
                position += 1
                stable = stable + delta.stable
                candidate = candidate + transform(delta.candidate, rng)
                elapsed += delta.seconds
                requests += delta.candidate.compared
                seconds += delta.seconds
            agreement = (
                candidate.agreed / candidate.compared
                if label == "shadow" and candidate.compared
                else None
            )
            verdict, why = legacy_verdict(
                candidate.errors,
                candidate.executions,
                _draw_latencies_ms(candidate, rng),
                _draw_latencies_ms(stable, rng),
                agreement,
                policy,
            )
            if verdict != "inconclusive":
                break
        if verdict != "pass":
            return Decision(True, requests, seconds, f"{label}: {why or verdict}")
    return Decision(False, requests, seconds, "promoted")


# ---- real rollouts --------------------------------------------------------------------


def real_aa_rollouts(home: Path, count: int) -> list[dict]:
    from chassis.registry import Registry
    from chassis.settings import ChassisSettings

    registry = Registry.from_settings(ChassisSettings(home=home))

    results = []
    for index in range(count):
        champion = registry.version_for_alias(MODEL, "champion")
        assert champion is not None
        copy = registry.register_copy(MODEL, champion, "rollout decisions benchmark, real A/A")
        started = time.monotonic()
        done = subprocess.run(
            [*CHASSIS, "rollout", "--model", MODEL, "--version", str(copy), "--traffic", "always"],
            env=chassis_env(home),
            capture_output=True,
            text=True,
        )
        results.append(
            {
                "run": index + 1,
                "version": copy,
                "promoted": done.returncode == 0,
                "seconds": round(time.monotonic() - started, 1),
                "said": (done.stdout + done.stderr).strip().splitlines()[-1:],
            }
        )
        print(f"real A/A {index + 1}/{count}: {results[-1]}", flush=True)
    return results


# ---- report ---------------------------------------------------------------------------


def summarize(decisions: list[Decision]) -> dict:
    caught = [d for d in decisions if d.rolled_back]
    return {
        "rolled_back": len(caught),
        "paused": sum(d.why.startswith("still inconclusive") for d in decisions),
        "of": len(decisions),
        "rate": len(caught) / len(decisions),
        "median_requests": median(d.requests for d in caught) if caught else None,
        "median_seconds": round(median(d.seconds for d in caught), 2) if caught else None,
        "reasons": sorted({d.why.split(" (")[0][:60] for d in caught})[:4],
    }


def main() -> None:
    args = parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="chassis-rollout-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    stable, candidate = prepare(home)
    hogs = Hogs(args.hogs)
    try:
        if args.recording and args.recording.exists():
            recorded = json.loads(args.recording.read_text())
            scrapes, stable, candidate = (
                recorded["scrapes"],
                recorded["stable"],
                recorded["candidate"],
            )
        else:
            scrapes = record(home, stable, candidate, args)
            recording = args.recording or home / "recording.json"
            recording.write_text(
                json.dumps({"scrapes": scrapes, "stable": stable, "candidate": candidate})
            )
        deltas = load_deltas(scrapes, stable, candidate)
        policy = RolloutPolicy()
        report: dict = {
            "machine": f"{os.cpu_count()} cores, {args.hogs} CPU hog(s) beside the run",
            "recording": {
                "seconds": round(scrapes[-1]["t"], 1),
                "scrapes": len(scrapes),
                "requests": sum(d.candidate.compared for d in deltas),
            },
            "policy": {"z": round(policy.z, 3), "samples_per_step": policy.required_samples},
            "cases": {},
        }
        for name, transform in CASES.items():
            chassis = [
                simulate_chassis(deltas, policy, transform, seed)
                for seed in range(args.simulations)
            ]
            legacy = [simulate_legacy(deltas, transform, seed) for seed in range(args.simulations)]
            report["cases"][name] = {"chassis": summarize(chassis), "legacy": summarize(legacy)}
            print(name, json.dumps(report["cases"][name]), flush=True)
        if args.real:
            real = real_aa_rollouts(home, args.real)
            report["real_aa"] = {
                "promoted": sum(r["promoted"] for r in real),
                "of": len(real),
                "median_seconds": median(r["seconds"] for r in real),
                "runs": real,
            }
    finally:
        hogs.stop()
    args.output.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "real_aa"}, indent=2))
    if "real_aa" in report:
        real_aa = report["real_aa"]
        print(
            f"real A/A: {real_aa['promoted']}/{real_aa['of']} promoted, "
            f"median {real_aa['median_seconds']} s"
        )


if __name__ == "__main__":
    main()
