"""Compression selection's latency verdict, repeated: the interleaved CPU-time comparison
(chassis.compression.measure.latency_against) against the plain ratio of two separately
timed p50s, three trials per candidate, on the ONNX files of one compress run.

    python benchmarks/selection_latency.py <folder holding */artifacts/onnx/*.onnx>

Prints, per candidate and trial, the comparison's median ratio, its 95 % interval, the
ratio selection uses (`settled`) and the sequential p50 ratio.
"""

import sys
from pathlib import Path

import numpy as np

from chassis.compression.latency import batch_of, time_runs_ms
from chassis.compression.measure import MeasureSettings, latency_against
from chassis.runtime import create_session


def main(folder: str) -> None:
    files = {p.stem: p for p in Path(folder).glob("*/artifacts/onnx/*.onnx")}
    base = files["baseline"]
    width = create_session(base, 1).get_inputs()[0].shape[1]
    rows = np.random.default_rng(0).normal(size=(20, int(width))).astype(np.float32)
    feeds = {str(create_session(base, 1).get_inputs()[0].name): rows}
    settings = MeasureSettings()
    for name, path in sorted(files.items()):
        for _ in range(3):
            ratio = latency_against(base, path, feeds, settings)
            one = batch_of(feeds, 1)
            p50_base = time_runs_ms(create_session(base, 1), one, warmup=10, repeats=100)["p50"]
            p50_cand = time_runs_ms(create_session(path, 1), one, warmup=10, repeats=100)["p50"]
            print(
                f"{name:14s} {ratio.describe():72s} settled {ratio.settled:.2f}  "
                f"sequential p50 ratio {p50_cand / p50_base:.2f}"
            )


if __name__ == "__main__":
    main(sys.argv[1])
