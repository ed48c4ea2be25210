"""Writes prefect-kubernetes.yaml from prefect.yaml, so the deployments are written once.

The Kubernetes variant is prefect.yaml's text with the `&work_pool` anchor moved from the
process pool to the kubernetes pool (both defined under `definitions.work_pools`): every
deployment says `work_pool: *work_pool`, so each lands on the kubernetes pool and nothing
else changes, comments included.

    python -m deployments.kubernetes          # rewrite prefect-kubernetes.yaml
    python -m deployments.kubernetes --check  # exit 1 if it is not what prefect.yaml makes
"""

import argparse
import re
import sys
from pathlib import Path

SOURCE = Path(__file__).with_name("prefect.yaml")
TARGET = Path(__file__).with_name("prefect-kubernetes.yaml")

# Each (pool, anchor in prefect.yaml, anchor in the Kubernetes variant).
ANCHOR_MOVES = (
    ("process", "work_pool", "process_pool"),
    ("kubernetes", "kubernetes_pool", "work_pool"),
)

HEADER = """\
# GENERATED from prefect.yaml by `make kubernetes-deployments`: edit prefect.yaml, then
# regenerate (tests/unit/test_deployments.py fails while this file is stale). The same
# deployments as prefect.yaml, on the `chassis-kubernetes` work pool.
#
"""


def kubernetes_variant(source: str) -> str:
    """prefect.yaml's text with every deployment on the kubernetes pool."""
    text = source
    for pool, anchor, moved_to in ANCHOR_MOVES:
        definition = re.compile(rf"^(\s+{pool}): &{anchor}[ \t]*$", re.MULTILINE)
        found = len(definition.findall(text))
        if found != 1:
            raise ValueError(
                f"prefect.yaml must define the {pool} pool once as `{pool}: &{anchor}` under "
                f"definitions.work_pools (found {found})"
            )
        text = definition.sub(rf"\1: &{moved_to}", text)
    return HEADER + text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write prefect-kubernetes.yaml from prefect.yaml.")
    parser.add_argument("--check", action="store_true", help="only check that the file is current")
    args = parser.parse_args(argv)
    expected = kubernetes_variant(SOURCE.read_text())
    if args.check:
        current = TARGET.read_text() if TARGET.exists() else ""
        if current != expected:
            print(f"{TARGET} is stale: run `make kubernetes-deployments`", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(expected)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
