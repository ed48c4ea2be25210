"""Drift benchmark: Chassis's drift judgement vs a plain Evidently call, 1,000,000 x 20.

Each side runs in its own process so its peak memory (max RSS) is its own. All get the
same reference and current frames (generated with fixed seeds; 5 of 20 columns shifted);
their dataset-level verdicts must agree. Three sides:

- `evidently`: a plain `Report([DataDriftPreset()]).run(...)` on the two in-memory frames;
- `chassis`: `chassis.drift.detect_drift` on the same frames (the judgement alone);
- `chassis-flow`: what the `drift_check` flow does with its inputs: the reference snapshot
  read from Parquet and the window read from a prediction log of Parquet files (written
  beforehand by the gateway's own `PredictionLogger`, 100,000 rows per file), then the
  judgement. Its time includes both reads.

Run with `make bench-drift`.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


MODEL = "bench-model"
ROWS_PER_FILE = 100_000


def write_flow_inputs(folder: Path) -> None:
    """The reference snapshot and a prediction log, as the registry and gateway store them."""
    import numpy as np

    from chassis.serving.prediction_log import PredictionLogger
    from chassis.settings import ChassisSettings
    from chassis.storage import BlobStore

    reference, current, names = frames()
    reference.to_parquet(folder / "reference.parquet")
    store = BlobStore(ChassisSettings(home=folder / "home"), str(folder / "log"))
    log = PredictionLogger(MODEL, names, store.write, capacity=ROWS_PER_FILE)
    values = current.to_numpy()
    labels = np.zeros(len(values), dtype=np.int64)
    for start in range(0, len(values), ROWS_PER_FILE):
        log.record(1, values[start : start + ROWS_PER_FILE], labels[start : start + ROWS_PER_FILE])
        log.flush()


def read_flow_inputs(folder: Path):
    from datetime import UTC, datetime, timedelta

    import pandas as pd

    from chassis.serving.prediction_log import read_window
    from chassis.settings import ChassisSettings
    from chassis.storage import BlobStore

    reference = pd.read_parquet(folder / "reference.parquet")
    store = BlobStore(ChassisSettings(home=folder / "home"), str(folder / "log"))
    end = datetime.now(UTC)
    current = read_window(store, MODEL, end - timedelta(hours=1), end)
    return reference, current, list(reference.columns)


def run(side: str, folder: Path) -> dict:
    if side != "chassis-flow":
        reference, current, names = frames()
    started = time.perf_counter()
    if side == "chassis-flow":
        from chassis.drift import DriftPolicy, detect_drift

        reference, current, names = read_flow_inputs(folder)
        assert len(current) == ROWS, f"the window holds {len(current)} rows, not {ROWS}"
        result = detect_drift(reference, current, names, DriftPolicy(drift_share=0.2))
        verdict, share = result.verdict, result.drifted_share
    elif side == "chassis":
        from chassis.drift import DriftPolicy, detect_drift

        result = detect_drift(reference, current, names, DriftPolicy(drift_share=0.2))
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


SIDES = {
    "chassis-flow": "Chassis: Parquet reads + judgement",
    "chassis": "Chassis: judgement alone",
    "evidently": "plain Evidently",
}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--side":
        print(json.dumps(run(sys.argv[2], Path(sys.argv[3]))))
        return
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as folder:
        write_flow_inputs(Path(folder))
        for side in SIDES:
            out = subprocess.run(
                [sys.executable, __file__, "--side", side, folder],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            results[side] = json.loads(out.strip().splitlines()[-1])
    plain = results["evidently"]
    print(f"Machine: {os.cpu_count()} cores; {ROWS:,} rows x {COLUMNS} columns, 5 shifted.\n")
    print("| | wall s | peak MiB (process) | drifted share | verdict | time / plain |")
    print("|---|---|---|---|---|---|")
    for side, name in SIDES.items():
        r = results[side]
        print(
            f"| {name} | {r['seconds']:.1f} | {r['peak_mib']:.0f} | {r['share']:.2f} "
            f"| {r['verdict']} | {r['seconds'] / plain['seconds']:.2f}x |"
        )
    agree = len({r["verdict"] for r in results.values()}) == 1
    print(f"\nverdicts agree: {agree}")
    if not agree:
        sys.exit("the verdicts disagree")


if __name__ == "__main__":
    main()
