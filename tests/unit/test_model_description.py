"""The audit trail rendered as a markdown table in the registered model's description."""

from chassis.registry.audit import AuditRecord
from chassis.registry.description import HEADING, MAX_DESCRIPTION, render, user_text

Move = tuple[str, int | None, int | None]  # alias, from, to


def record(sequence: int, action: str, moves: list[Move], reason: str = "r") -> AuditRecord:
    return AuditRecord(
        sequence=sequence,
        at=f"2026-12-02T10:00:{sequence % 60:02d}+00:00",
        actor="ana via flow run brave-owl",
        action=action,
        moves=[{"alias": alias, "from": before, "to": after} for alias, before, after in moves],
        reason=reason,
        evidence={},
    )


PROMOTE = record(
    2, "promote", [("champion", 1, 2), ("previous", None, 1)], "canary | clean\nall steps"
)
ROLLBACK = record(3, "rollback", [("champion", 2, 1), ("previous", 1, None)], "p99 regression")
RETIRE = record(4, "retire-challenger", [("challenger", 5, None)])


def test_the_table_lists_moves_newest_first_below_the_users_text():
    text = render("Classifies blobs.", [PROMOTE, ROLLBACK, RETIRE], "blobs")
    assert text.startswith(f"Classifies blobs.\n\n{HEADING}\n")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| # | when (UTC) | who | action | version |")
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| 4", "| 3", "| 2"]
    assert "| 2026-12-02 10:00:03 | ana via flow run brave-owl | rollback | v1 |" in rows[2]
    assert "champion: v2 → v1; previous: v1 → none" in rows[2]
    # A retirement is about the version that lost its alias.
    assert "| retire-challenger | v5 | challenger: v5 → none |" in rows[1]
    # A reason cannot break the table: one line, pipes escaped.
    assert rows[3].endswith("| canary \\| clean all steps |")
    assert "All 3 moves, newest first. Full trail: `chassis history --model blobs`." in text


def test_rendering_again_replaces_the_section_and_keeps_the_users_text():
    first = render("Classifies blobs.", [PROMOTE], "blobs")
    second = render(first, [PROMOTE, ROLLBACK], "blobs")
    assert second.count(HEADING) == 1
    assert user_text(second) == "Classifies blobs."
    assert "| rollback |" in second
    assert render(None, [PROMOTE], "blobs").startswith(HEADING)


def test_a_long_trail_keeps_the_newest_rows_that_fit_mlflows_column():
    trail = [record(n, "promote", [("champion", n - 1, n)], "x" * 400) for n in range(1, 200)]
    text = render("About the model.", trail, "blobs")
    assert len(text) <= MAX_DESCRIPTION
    assert "| 199 |" in text and "| 1 | " not in text
    shown = sum(1 for line in text.splitlines() if line.startswith("| ") and "promote" in line)
    assert f"Latest {shown} of 199 moves, newest first." in text
    assert "x" * 120 not in text  # reasons are cut to keep more rows
