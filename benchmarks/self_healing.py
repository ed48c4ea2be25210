"""Fault to recovered, with no person: how long each step of the self-healing loop takes.

The loop of tests/e2e/test_self_healing.py, every piece a real process on loopback (two
gateways, Prometheus scraping and evaluating every 5 s with the shipped rules, Alertmanager
with the shipped route and waits, `chassis webhook-relay`, a Prefect server, a process
worker polling every second, the `diagnose` deployment as shipped). Each trial promotes the
faulty v2 by hand, lets it serve clean traffic, then sends rows half of which make it
raise; the clock starts there and stops when every replica answers with v1 again.
Run: `python benchmarks/self_healing.py --trials 3` (about 3 minutes a trial). Nothing
here is a test.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fixtures.gateway import MODEL
from tests.fixtures.self_healing import (
    OUTLIERS,
    SCRAPE_INTERVAL,
    SelfHealingLoop,
    clean_rows,
    wait_for,
)

ALERT = "ChassisErrorSpike"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3, help="faults injected, one at a time")
    parser.add_argument("--output", type=Path, help="write the timelines here as JSON")
    return parser.parse_args()


def trial(loop: SelfHealingLoop) -> dict[str, float | None]:
    """One fault, from a healthy-looking v2 champion to every replica serving v1."""
    if loop.registry().current_aliases(MODEL).get("champion") != 2:
        loop.cli("promote", "--model", MODEL, "--version", "2")  # by hand, as in the test
    with loop.traffic(clean_rows()):
        wait_for("every replica serving v2", lambda: loop.stable_versions() == [2, 2], 120)
        # The last trial's alert must have resolved, or this fault's would be deduplicated.
        wait_for(
            f"no {ALERT} firing",
            lambda: not loop.prometheus.firing(ALERT) and not loop.pending(ALERT),
            300,
            1,
        )
    fault_at = time.time()
    watch = loop.watch_recovery(fault_at, previous=1, alert=ALERT)
    with loop.traffic(OUTLIERS):
        timeline = watch.wait_recovered(300)
    return timeline.seconds()


def main() -> None:
    args = parse_args()
    os.environ.setdefault("DO_NOT_TRACK", "1")
    with tempfile.TemporaryDirectory(prefix="chassis-self-healing-") as folder:
        loop = SelfHealingLoop(Path(folder)).start()
        try:
            timelines = []
            for number in range(1, args.trials + 1):
                seconds = trial(loop)
                timelines.append(seconds)
                print(f"trial {number}: " + ", ".join(f"{k} {v} s" for k, v in seconds.items()))
        finally:
            loop.stop()
    print(f"\nscrape and rule evaluation every {SCRAPE_INTERVAL}; Alertmanager's shipped waits")
    print(
        "| step (seconds after the fault) | "
        + " | ".join(f"trial {i + 1}" for i in range(len(timelines)))
        + " | median |"
    )
    print("|---|" + "---|" * (len(timelines) + 1))
    for step in timelines[0]:
        values = [t[step] for t in timelines]
        known = [v for v in values if v is not None]
        middle = f"{median(known):.1f}" if known else "-"
        print(
            f"| {step} | "
            + " | ".join("-" if v is None else f"{v:.1f}" for v in values)
            + f" | {middle} |"
        )
    if args.output:
        args.output.write_text(json.dumps(timelines, indent=2))


if __name__ == "__main__":
    main()
