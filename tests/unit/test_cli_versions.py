"""`chassis versions` marks a cascade version with its tiers and threshold, read from its
`chassis.cascade` tag, in the table and in its JSON document."""

import io
import json

import pytest

from chassis.cascade.spec import CascadeSpec
from chassis_cli import display
from chassis_cli.documents import VersionsDocument

FULL_DIGEST = "a" * 64
SMALL_DIGEST = "b" * 64
SPEC = CascadeSpec(1, 1.3, 0.3, 0.1, 0.05, 0.25, 0.2)


def version(number: int, digest: str, **tags: str) -> dict[str, object]:
    return {
        "version": number,
        "created": "2026-12-02 10:00:00 UTC",
        "aliases": [],
        "run_id": f"run{number}",
        "tags": {"chassis.onnx_sha256": digest, **tags},
    }


def table_rows(versions: VersionsDocument, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    screen = io.StringIO()
    monkeypatch.setattr(display, "out", display.UncutConsole(file=screen))
    display.print_versions(versions)
    rows = {}
    for line in screen.getvalue().splitlines():
        cells = [cell.strip() for cell in line.split("│")]
        if len(cells) > 2 and cells[1].isdigit():
            rows[cells[1]] = cells[-2]  # the last column: cascade
    return rows


def test_a_cascade_version_shows_its_tiers_and_threshold(monkeypatch):
    # v3: a cascade of v2 (the same bytes) -> v1; newest first, as the registry lists them.
    versions = VersionsDocument.of(
        "m",
        [
            version(3, SMALL_DIGEST, **{"chassis.cascade": SPEC.to_json()}),
            version(2, SMALL_DIGEST),
            version(1, FULL_DIGEST),
        ],
    )
    assert table_rows(versions, monkeypatch) == {
        "3": "cascade of v2 -> v1, threshold 0.3000",
        "2": "-",
        "1": "-",
    }
    entries = json.loads(versions.to_json())["versions"]
    assert entries[0]["cascade"] == {"small_version": 2, "full_version": 1, "threshold": 0.3}
    assert entries[1]["cascade"] is None and entries[2]["cascade"] is None


def test_a_cascade_whose_small_tier_is_gone_or_whose_tag_is_unreadable_says_so(monkeypatch):
    versions = VersionsDocument.of(
        "m",
        [
            version(5, "c" * 64, **{"chassis.cascade": "{not json"}),
            version(4, "d" * 64, **{"chassis.cascade": SPEC.to_json()}),
        ],
    )
    assert table_rows(versions, monkeypatch) == {
        "5": "unreadable chassis.cascade tag",
        "4": "cascade of ? -> v1, threshold 0.3000",
    }
    assert json.loads(versions.to_json())["versions"][0]["cascade"] is None
