"""Drift benchmark: Chassis's drift judgement vs a plain Evidently call, 1,000,000 x 20.

Each side runs in its own process so its peak memory (max RSS) is its own. Both get the
same reference and current frames (generated with fixed seeds; 5 of 20 columns shifted);
their dataset-level verdicts must agree. Run with `make bench-drift`.
"""

import json
import os
import resource
import subprocess
import sys
import time

ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
COLUMNS = 20


def frames():
    import numpy as np
    import pandas as pd

    names = [f"c{i}" for i in range(COLUMNS)]
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(rng.normal(size=(ROWS, COLUMNS)).astype(np.float32), columns=names)
    current_values = rng.normal(size=(ROWS, COLUMNS)).astype(np.float32)
    current_values[:, :5] += 0.5  # a quarter of the columns move by half a std
    return reference, pd.DataFrame(current_values, columns=names), names


def run(side: str) -> dict:
    reference, current, names = frames()
    started = time.perf_counter()
    if side == "chassis":
        from chassis.drift import DriftConfig, detect_drift

        result = detect_drift(reference, current, names, DriftConfig(drift_share=0.2))
        verdict, share = result.verdict, result.drifted_share
    else:
        from evidently import Report
        from evidently.presets import DataDriftPreset

        snapshot = Report([DataDriftPreset(drift_share=0.2)]).run(
            reference_data=reference, current_data=current
        )
        counts = next(
            m["value"]
            for m in snapshot.dict()["metrics"]
            if str(m["config"].get("type", "")).endswith(":DriftedColumnsCount")
        )
        share = counts["share"]
        verdict = "drift" if share >= 0.2 else "no-drift"
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "side": side,
        "seconds": seconds,
        "peak_mib": peak_mib,
        "verdict": verdict,
        "share": share,
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--side":
        print(json.dumps(run(sys.argv[2])))
        return
    results = {}
    for side in ("chassis", "evidently"):
        out = subprocess.run(
            [sys.executable, __file__, "--side", side], capture_output=True, text=True, check=True
        ).stdout
        results[side] = json.loads(out.strip().splitlines()[-1])
    c, e = results["chassis"], results["evidently"]
    print(f"Machine: {os.cpu_count()} cores; {ROWS:,} rows x {COLUMNS} columns, 5 shifted.\n")
    print("| | wall s | peak MiB (process) | drifted share | verdict |")
    print("|---|---|---|---|---|")
    for name, r in (("chassis drift check", c), ("plain Evidently", e)):
        print(
            f"| {name} | {r['seconds']:.1f} | {r['peak_mib']:.0f} | {r['share']:.2f} "
            f"| {r['verdict']} |"
        )
    print(
        f"\nratio chassis/plain: time {c['seconds'] / e['seconds']:.2f}x, "
        f"memory {c['peak_mib'] / e['peak_mib']:.2f}x; "
        f"verdicts agree: {c['verdict'] == e['verdict']}"
    )


if __name__ == "__main__":
    main()
