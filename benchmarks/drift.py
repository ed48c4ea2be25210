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

`--scale ROWS` (e.g. `nice -n 10 python benchmarks/drift.py --scale 10000000`) is the
streamed check (chassis/drift_stream.py) on a window too large to hold: ROWS x 20 columns
written as prediction-log Parquet files of SCALE_FILE_ROWS rows, generated one file at a
time (never whole in memory), 4 of 20 columns shifted and one four-valued column's shares
moved. One process times the streamed summary + `detect_drift_streamed` against a 5,000-row
reference (the size the registry stores), with its peak RSS, read in 1 part, then another
in 2 parts on 2 threads (what the flow's default task runner does with policy
stream_parts=2; the results must be identical); another runs Evidently (through
`detect_drift`) on a uniform sample of the window's rows kept while generating
(SCALE_SAMPLE_ROWS), the full-precision computation the per-column decisions and the verdict
are compared with. `--folder DIR` keeps the files there (reused when already written).
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
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


SCALE_COLUMNS = [f"c{i}" for i in range(COLUMNS - 2)] + ["level0", "level1"]
SCALE_SHIFTED = ["c0", "c1", "c2", "c3", "level0"]
SCALE_FILE_ROWS = 1_000_000
SCALE_SAMPLE_ROWS = 200_000
SCALE_REFERENCE_ROWS = 5000


def scale_chunk(rng, rows: int, drifted: bool):
    """`rows` x 20 float32: 18 normal columns and two with four values."""
    import numpy as np

    values = rng.standard_normal((rows, COLUMNS), dtype=np.float32)
    values[:, -2:] = rng.integers(0, 4, (rows, 2))
    if drifted:
        values[:, :4] += 0.5
        moved = rng.random(rows) < 0.3  # a third of the level0 rows say 3
        values[moved, -2] = 3
    return values


def write_scale_inputs(folder: Path, rows: int) -> bool:
    """Whether the files were written (False: the folder held them already)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from chassis.serving.prediction_log import PREDICTION, TIME, VERSION

    if (folder / "done").exists() and (folder / "done").read_text() == str(rows):
        return False
    rng = np.random.default_rng(0)
    reference = scale_chunk(rng, SCALE_REFERENCE_ROWS, drifted=False)
    pd.DataFrame(reference, columns=SCALE_COLUMNS).to_parquet(folder / "reference.parquet")
    day = folder / "log" / MODEL / f"date={time.strftime('%Y-%m-%d', time.gmtime())}"
    day.mkdir(parents=True, exist_ok=True)
    samples = []
    keep = min(1.0, SCALE_SAMPLE_ROWS / rows)
    stamp = int((time.time() - 60) * 1e6)  # a minute ago: inside the checked window
    for number, first in enumerate(range(0, rows, SCALE_FILE_ROWS)):
        size = min(SCALE_FILE_ROWS, rows - first)
        values = scale_chunk(rng, size, drifted=True)
        samples.append(values[rng.random(size) < keep])
        arrays = [pa.array(values[:, i]) for i in range(COLUMNS)]
        arrays += [
            pa.array(np.zeros(size, dtype=np.int64)),
            pa.array(np.ones(size, dtype=np.int64)),
            pa.array(np.full(size, stamp, dtype=np.int64), type=pa.timestamp("us", tz="UTC")),
        ]
        names = [*SCALE_COLUMNS, PREDICTION, VERSION, TIME]
        pq.write_table(pa.Table.from_arrays(arrays, names=names), day / f"{number:05d}.parquet")
    sample = pd.DataFrame(np.concatenate(samples), columns=SCALE_COLUMNS)
    sample.to_parquet(folder / "sample.parquet")
    (folder / "done").write_text(str(rows))
    return True


def run_scale(side: str, folder: Path) -> dict:
    from datetime import UTC, datetime, timedelta

    import pandas as pd

    from chassis.drift import DriftPolicy, detect_drift
    from chassis.drift_stream import (
        combine,
        detect_drift_streamed,
        reference_grids,
        split_files,
        summarize_files,
        window_files,
    )
    from chassis.settings import ChassisSettings
    from chassis.storage import BlobStore

    reference = pd.read_parquet(folder / "reference.parquet")
    policy = DriftPolicy(drift_share=0.2)
    started = time.perf_counter()
    if side.startswith("streamed-"):  # streamed-N: N parts on N threads, as the flow runs them
        parts = int(side.removeprefix("streamed-"))
        store = BlobStore(ChassisSettings(home=folder / "home"), str(folder / "log"))
        end = datetime.now(UTC)
        start = end - timedelta(hours=1)
        grids = reference_grids(reference, SCALE_COLUMNS)
        groups = split_files(window_files(store, MODEL, start, end), parts)
        with ThreadPoolExecutor(parts) as pool:
            summaries = list(
                pool.map(lambda files: summarize_files(store, files, start, end, grids), groups)
            )
        result = detect_drift_streamed(reference, combine(summaries), SCALE_COLUMNS, policy)
    else:  # Evidently on the sample, every row of it
        sample = pd.read_parquet(folder / "sample.parquet")
        whole = policy.model_copy(update={"max_rows": len(sample)})
        result = detect_drift(reference, sample, SCALE_COLUMNS, whole)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "side": side,
        "rows": result.current_rows,
        "seconds": seconds,
        # The whole process's CPU (imports and reference read too): the busy machine's
        # wall time is not this code's.
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "verdict": result.verdict,
        "share": result.drifted_share,
        "columns": {c.column: [c.method, c.score, c.drifted] for c in result.columns},
        "notes": list(result.explanations),
    }


def scale(rows: int, folder: Path) -> None:
    started = time.perf_counter()
    written = write_scale_inputs(folder, rows)
    generated = time.perf_counter() - started
    origin = f"written in {generated:.0f} s" if written else "already written"
    results = {}
    for side in ("streamed-1", "streamed-2", "sample"):
        out = subprocess.run(
            [sys.executable, __file__, "--scale-side", side, str(folder)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        results[side] = json.loads(out.strip().splitlines()[-1])
    streamed, two, sample = results["streamed-1"], results["streamed-2"], results["sample"]
    load = os.getloadavg()
    print(
        f"Machine: {os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f} after the run; {rows:,} rows x {COLUMNS} columns in "
        f"{-(-rows // SCALE_FILE_ROWS)} files ({origin}), "
        f"{len(SCALE_SHIFTED)} moved.\n"
    )
    print("| | rows judged | wall s | CPU s | peak MiB (process) | drifted share | verdict |")
    print("|---|---|---|---|---|---|---|")
    sides = (
        ("streamed check, whole window, 1 part", streamed),
        ("streamed check, whole window, 2 parts on 2 threads", two),
        ("Evidently, sample", sample),
    )
    for name, r in sides:
        print(
            f"| {name} | {r['rows']:,} | {r['seconds']:.1f} | {r['cpu_seconds']:.0f} "
            f"| {r['peak_mib']:.0f} "
            f"| {r['share']:.2f} | {r['verdict']} |"
        )
    agree = [streamed["columns"][c][2] == sample["columns"][c][2] for c in SCALE_COLUMNS]
    gaps = [abs(streamed["columns"][c][1] - sample["columns"][c][1]) for c in SCALE_COLUMNS]
    drifted = sorted(c for c in SCALE_COLUMNS if streamed["columns"][c][2])
    print(
        f"\nper-column decisions agree: {sum(agree)} of {len(agree)}; largest score gap "
        f"(sampling error of the sample): {max(gaps):.4f}; drifted: {', '.join(drifted)}; "
        f"rows/s streamed: {streamed['rows'] / streamed['seconds']:,.0f}"
    )
    for note in streamed["notes"]:
        print(f"note: {note}")
    print(f"2 parts / 1 part, wall: {two['seconds'] / streamed['seconds']:.2f}x")
    if not all(agree) or streamed["verdict"] != sample["verdict"]:
        sys.exit("the streamed check and Evidently on the sample disagree")
    if two["columns"] != streamed["columns"] or two["rows"] != streamed["rows"]:
        sys.exit("the streamed check in 2 parts differs from the one in 1 part")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--scale-side":
        print(json.dumps(run_scale(sys.argv[2], Path(sys.argv[3]))))
        return
    if len(sys.argv) >= 3 and sys.argv[1] == "--scale":
        rows = int(sys.argv[2])
        if len(sys.argv) == 5 and sys.argv[3] == "--folder":
            folder = Path(sys.argv[4])
            folder.mkdir(parents=True, exist_ok=True)
            scale(rows, folder)
            return
        with tempfile.TemporaryDirectory(prefix="bench-drift-scale-") as temporary:
            scale(rows, Path(temporary))
        return
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
