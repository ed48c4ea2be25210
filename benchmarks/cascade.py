"""Cascade vs full-only: share answered by the small tier, accuracy change, and mean and p99
latency of one row, on registered versions (a compressed small tier and its baseline).

    CHASSIS_HOME=... python benchmarks/cascade.py MODEL:SMALL:FULL [MODEL:SMALL:FULL ...]
        [--max-accuracy-loss-pp 0.5] [--rounds 9] [--rows-per-round 200]

For each cascade: calibration and threshold on the validation split exactly as `chassis
cascade` chooses them (chassis.cascade.build), then on the test split: accuracy of the full
tier alone and of the cascade, the share of rows the small tier answers, and the time to
answer one row (batch 1, one ONNX Runtime thread), as the gateway's cascade does it: small
tier, calibrated confidence, full tier when escalated. Full-only and cascade are timed in
interleaved rounds over the same rows, so load on the machine weighs on both; latency ratios
are cascade / full-only (below 1: the cascade is faster). In-process (no HTTP): the HTTP
cost, the same for both, would only dilute the ratio.
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from chassis.cascade.build import build_spec
from chassis.cascade.rule import cascade_answer
from chassis.cascade.threshold import Target
from chassis.data import features, load_dataset, truth
from chassis.modelspec import load_spec
from chassis.registry import Registry
from chassis.registry.tags import TAG_CANDIDATE, TAG_SPEC
from chassis.runtime import answer_batch_rows, create_session, first_output, run_batches
from chassis.settings import ChassisSettings
from chassis.task import CLASSIFICATION


def timed_rows(call, rows: np.ndarray) -> list[float]:
    times = []
    for row in rows:
        one = row[None, :]
        started = time.perf_counter()
        call(one)
        times.append(time.perf_counter() - started)
    return times


def bench(registry: Registry, model: str, small: int, full: int, args, workdir: Path) -> dict:
    small_files = registry.fetch_version(model, small, workdir / f"v{small}")
    full_files = registry.fetch_version(model, full, workdir / f"v{full}")
    spec_module = load_spec(full_files.tags[TAG_SPEC])
    dataset = load_dataset(spec_module.load_data, spec_module.name, CLASSIFICATION)
    x_val = features(dataset.validation, dataset)
    y_val = truth(dataset.validation, dataset, CLASSIFICATION)
    x, y = features(dataset.test, dataset), truth(dataset.test, dataset, CLASSIFICATION)
    small_session = create_session(small_files.onnx_path, 1)
    full_session = create_session(full_files.onnx_path, 1)
    spec = build_spec(
        full,
        run_batches(small_session, x_val, answer_batch_rows(small_files.onnx_path, x_val)),
        run_batches(full_session, x_val, answer_batch_rows(full_files.onnx_path, x_val)),
        y_val,
        Target(max_accuracy_loss_pp=args.max_accuracy_loss_pp),
    )
    small_in, full_in = small_session.get_inputs()[0].name, full_session.get_inputs()[0].name

    def full_only(rows: np.ndarray) -> np.ndarray:
        return first_output(full_session, {full_in: rows})

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
    for _ in range(args.rounds):
        rows = x[rng.integers(0, len(x), size=args.rows_per_round)]
        timed_rows(full_only, rows[:10])  # warm both before each round's timing
        timed_rows(cascade, rows[:10])
        full_times += timed_rows(full_only, rows)
        cascade_times += timed_rows(cascade, rows)
    return {
        "model": model,
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
        "mean_ratio": float(np.mean(cascade_times) / np.mean(full_times)),
        "p99_ratio": float(np.percentile(cascade_times, 99) / np.percentile(full_times, 99)),
        "full_mean_ms": float(np.mean(full_times) * 1000),
        "full_p99_ms": float(np.percentile(full_times, 99) * 1000),
        "cascade_mean_ms": float(np.mean(cascade_times) * 1000),
        "cascade_p99_ms": float(np.percentile(cascade_times, 99) * 1000),
    }


def report(results: list[dict]) -> str:
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {time.strftime('%Y-%m-%d', time.gmtime())}.",
        "",
        "| model | small tier | full | T | threshold | ECE before -> after | val. escalated "
        "| test rows | answered by small | accuracy full -> cascade (pp) | mean latency "
        "cascade/full | p99 latency cascade/full |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        change = (r["cascade_accuracy"] - r["full_accuracy"]) * 100
        lines.append(
            f"| {r['model']} | {r['small']} | {r['full']} | {r['temperature']:.2f} | "
            f"{r['threshold']:.4f} | {r['ece'][0]:.4f} -> {r['ece'][1]:.4f} | "
            f"{r['validation_escalation']:.1%} | {r['test_rows']} | {r['small_share']:.1%} | "
            f"{r['full_accuracy']:.4f} -> {r['cascade_accuracy']:.4f} ({change:+.2f}) | "
            f"{r['mean_ratio']:.2f}x ({r['cascade_mean_ms']:.3f} vs {r['full_mean_ms']:.3f} ms)"
            f" | {r['p99_ratio']:.2f}x ({r['cascade_p99_ms']:.3f} vs {r['full_p99_ms']:.3f} ms) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("cascades", nargs="+", help="MODEL:SMALL:FULL")
    parser.add_argument("--max-accuracy-loss-pp", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--rows-per-round", type=int, default=200)
    args = parser.parse_args()
    registry = Registry.from_settings(ChassisSettings())
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for entry in args.cascades:
            model, small, full = entry.rsplit(":", 2)
            results.append(bench(registry, model, int(small), int(full), args, Path(folder)))
    print(report(results))


if __name__ == "__main__":
    main()
