"""`--json`, tables that keep every identifier when piped, and failures as one line.

The registry here is a real MLflow store on SQLite with a model written straight into it
(no training, no Prefect): what `versions` and `history` read, without a release."""

import datetime
import io
import json
import logging
import math
import os
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from mlflow import MlflowClient

from chassis.compression.latency import LatencyRatio
from chassis.compression.measure import Measurement
from chassis.compression.select import SelectionPolicy, select_candidate
from chassis.mlflow_links import MlflowLinks
from chassis.registry.audit import AuditRecord
from chassis.traffic import TrafficReport
from chassis_cli import display
from chassis_cli.argtypes import aware_time
from chassis_cli.documents import (
    CandidateEntry,
    GatesDocument,
    HistoryDocument,
    TrafficDocument,
)
from chassis_cli.flow_console import RunFailuresFilter, failures_reported_by_the_cli
from chassis_cli.main import error_kind
from flows.promotion import GatesOutcome
from tasks.compression import table_rows
from tests.fixtures.cli import chassis_commands, chassis_in_process

MODEL = "draft"
UNCROWNED = "uncrowned"  # a model with a version and no champion
STARTED = datetime.datetime(2026, 12, 3, 5, 4, 55, tzinfo=datetime.UTC)
DIGEST = "0123456789abcdef" * 4  # 64 hex digits, as a sha256 is
RUN_ID = "f" * 32
# Commands that neither read nor decide: a server, the UIs, and a command whose output is
# already a JSON file (scaffold-suite).
WITHOUT_JSON = {"serve", "ui", "webhook-relay", "scaffold-suite"}


@pytest.fixture(scope="module")
def registry_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CHASSIS_HOME with model `draft`: v1 (champion, digest DIGEST) and one audit record.
    Made once (a new MLflow database takes seconds); the tests only read it."""
    tmp_path = tmp_path_factory.mktemp("json")
    home = tmp_path / "chassis"
    home.mkdir()
    client = MlflowClient(tracking_uri=f"sqlite:///{home}/mlflow.db")
    client.create_registered_model(MODEL)
    client.create_model_version(
        MODEL,
        source=str(tmp_path / "model"),
        run_id=None,
        tags={"chassis.onnx_sha256": DIGEST, "chassis.spec": "tests.fixtures.specs:good"},
    )
    client.set_registered_model_alias(MODEL, "champion", "1")
    client.create_registered_model(UNCROWNED)
    client.create_model_version(UNCROWNED, source=str(tmp_path / "model"), run_id=None)
    record = AuditRecord(
        sequence=1,
        at="2026-12-02T10:00:00+00:00",
        actor="ana via flow run 'brave-otter'",
        action="promote",
        moves=[{"alias": "champion", "from": None, "to": 1}],
        reason="first version to pass its gates",
        evidence={"flow_run": f"http://127.0.0.1:4200/runs/flow-run/{RUN_ID}"},
    )
    client.set_registered_model_tag(MODEL, "chassis.audit.000001", record.to_json())
    return home


@pytest.fixture
def home(registry_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHASSIS_HOME", str(registry_home))
    # Commands prepare the environment in this process: no Prefect server is looked for.
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    return registry_home


def test_every_command_that_reads_or_decides_takes_json():
    for name, command in chassis_commands().items():
        has_json = any("--json" in action.option_strings for action in command._actions)
        assert has_json == (name not in WITHOUT_JSON), name


def test_versions_json_is_one_document_with_the_whole_digest(home):
    code, stdout, stderr = chassis_in_process("versions", "--model", MODEL, "--json")
    assert code == 0, stderr
    document = json.loads(stdout)  # the whole of stdout is one document
    (version,) = document["versions"]
    assert version["version"] == 1 and isinstance(version["version"], int)
    assert version["onnx_sha256"] == DIGEST
    assert version["aliases"] == ["champion"]
    assert version["created_at"].endswith("Z") and "T" in version["created_at"]


def test_history_json_names_the_version_and_each_move(home):
    code, stdout, stderr = chassis_in_process("history", "--model", MODEL, "--json")
    assert code == 0, stderr
    document = json.loads(stdout)
    assert document["aliases"] == {"champion": 1}
    (record,) = document["records"]
    assert record["version"] == 1
    assert record["moves"] == [{"alias": "champion", "from_version": None, "to_version": 1}]
    assert record["evidence"]["flow_run"].endswith(RUN_ID)


def test_history_is_a_table_with_who_when_action_version_moves_and_reason(home):
    code, stdout, stderr = chassis_in_process("history", "--model", MODEL)
    assert code == 0, stderr
    header = next(line for line in stdout.splitlines() if "when (UTC)" in line)
    columns = [c.strip() for c in header.strip("┃ ").split("┃")]
    assert columns == ["#", "when (UTC)", "who", "action", "version", "from -> to", "reason"]
    row = next(line for line in stdout.splitlines() if "promote" in line)
    for cell in ("2026-12-02 10:00:00", "ana via flow run 'brave-otter'", "v1"):
        assert cell in row
    assert "champion - -> v1" in row
    assert f"#1 flow_run: http://127.0.0.1:4200/runs/flow-run/{RUN_ID}" in stdout


# The versions table of VERSIONS_ROW, printed by a process whose stdout is a pipe.
PIPED_TABLE = """
import sys
from chassis_cli.display import print_versions
from chassis_cli.documents import VersionsDocument

print_versions(VersionsDocument.of("draft", [dict(
    version=3, created="2026-12-02 10:00:00 UTC", aliases=["champion"], run_id=sys.argv[2],
    tags={"chassis.onnx_sha256": sys.argv[1], "chassis.spec": "tests.fixtures.specs:good"},
)]))
"""


def test_a_table_piped_to_another_process_keeps_every_identifier_whole():
    """Through a real pipe (not a terminal), where rich took 80 columns and cut digests."""
    result = subprocess.run(
        [sys.executable, "-c", PIPED_TABLE, DIGEST, RUN_ID],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "80"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "champion" in line)
    assert DIGEST in row and RUN_ID in row and "…" not in result.stdout
    assert len(row) > 80  # one line per row, as wide as its content


def test_a_narrow_terminal_folds_identifiers_instead_of_cutting_them(monkeypatch):
    screen = io.StringIO()
    terminal = display.UncutConsole(file=screen, force_terminal=True, width=60)
    monkeypatch.setattr(display, "out", terminal)
    document = HistoryDocument.of(
        MODEL,
        [
            AuditRecord(1, "2026-12-02T10:00:00+00:00", "ana", "promote", [], "why", {}),
        ],
        {},
    )
    model_page = MlflowLinks("http://127.0.0.1:5000").registered_model(MODEL)
    display.print_history(document, model_page)
    from chassis_cli.documents import VersionsDocument

    versions = VersionsDocument.of(
        MODEL,
        [
            {
                "version": 3,
                "created": "2026-12-02 10:00:00 UTC",
                "aliases": [],
                "run_id": RUN_ID,
                "tags": {"chassis.onnx_sha256": DIGEST},
            }
        ],
    )
    display.print_versions(versions)
    shown = screen.getvalue()
    assert "…" not in shown
    # The model's MLflow page, where the same trail is, as one line a terminal can open.
    assert f"alias history in its description): {model_page}\n" in shown
    # Folded: the digest's characters are all there, in order, across the lines.
    cells = "".join(
        line.split("│")[5].strip() for line in shown.splitlines() if line.count("│") >= 6
    )
    assert DIGEST in cells


def test_a_piped_console_is_as_wide_as_its_content():
    piped = display.UncutConsole(file=io.StringIO())
    assert not piped.is_terminal
    assert piped.width >= display.UNCUT_WIDTH
    assert display.UncutConsole(file=io.StringIO(), force_terminal=True, width=70).width == 70


def gates_outcome(skipped_parity: bool) -> GatesOutcome:
    gates = [
        {"gate": "accuracy vs baseline", "passed": True, "observed": "+0.0", "threshold": ">= 0"},
        {"gate": "ONNX parity", "passed": True, "observed": "-", "threshold": "-"},
        {"gate": "ONNX size", "passed": True, "observed": "6,864 B", "threshold": "<= 1 B"},
    ]
    gates[1]["skipped"] = skipped_parity
    report = {"gates": gates, "baseline_version": 1, "champion_version": None}
    return GatesOutcome(
        model_name=MODEL, version=2, passed=True, report=report, report_uri="file:///r.json"
    )


def test_the_gate_summary_counts_a_skipped_gate_as_skipped_not_passed():
    document = GatesDocument.of(gates_outcome(skipped_parity=True))
    assert document.tally.describe(document.passed) == "passed (2/2, 1 skipped: ONNX parity)"
    assert [g.result for g in document.gates] == ["pass", "skipped", "pass"]
    judged = GatesDocument.of(gates_outcome(skipped_parity=False))
    assert judged.tally.describe(judged.passed) == "passed (3/3)"


def test_a_gates_document_has_numbers_as_numbers_and_no_markup():
    text = GatesDocument.of(gates_outcome(skipped_parity=True)).to_json()
    document = json.loads(text)
    assert document["tally"] == {
        "passed": 2,
        "failed": 0,
        "skipped": 1,
        "skipped_gates": ["ONNX parity"],
    }
    assert document["baseline_version"] == 1 and document["champion_version"] is None
    assert "[bold" not in text and "\x1b[" not in text


def test_the_compression_table_rows_as_published_make_a_document():
    """The rows tasks/compression.py publishes (the baseline's latency ratio is the text
    "reference") are what the release and compress documents are built from."""
    reference = Measurement(
        "baseline", {}, {"accuracy": 0.97}, {"b1_p50": 0.02}, 10, 5, "0", Path("b")
    )
    int8 = replace(reference, name="int8", latency_vs_baseline=LatencyRatio(1.2, 1.1, 1.3, 9))
    selection = select_candidate([reference, int8], "baseline", "accuracy", SelectionPolicy())
    rows = table_rows([reference, int8], selection)
    entries = [CandidateEntry.of(row) for row in rows]
    assert entries[0].latency_vs_baseline == "reference"
    assert (entries[1].latency_vs_baseline or "").startswith("1.20x (95% 1.10-1.30)")
    assert entries[0].quality == {"accuracy": 0.97}
    json.loads(CandidateEntry.of(rows[1]).to_json())


def test_a_number_that_is_not_finite_is_null_so_the_document_stays_json():
    row = {
        **{"candidate": "int8", "selected": "yes", "passed": "no", "size_bytes": 10},
        **{"parameters": 5, "score": 0.5, "reason": "-", "accuracy": math.nan},
        "b1_p50_ms": 0.25,
    }
    candidate = CandidateEntry.of(row)
    assert candidate.selected and not candidate.passed
    assert candidate.latency_ms == {"b1_p50": 0.25}
    document = json.loads(candidate.to_json())  # NaN is not JSON: strict parsers refuse it
    assert document["quality"] == {"accuracy": None}


def test_traffic_counts_no_answer_as_a_null_status():
    report = TrafficReport(sent=3, statuses=Counter({200: 2, 0: 1}), seconds=1.5)
    document = TrafficDocument.of(MODEL, "http://127.0.0.1:8000", STARTED, report)
    statuses = [(s.status, s.count) for s in document.statuses]
    assert statuses == [(None, 1), (200, 2)]
    assert document.requests_per_second == 2.0


def test_traffic_says_when_it_started_in_utc_as_drift_check_since_takes_it():
    report = TrafficReport(sent=1, statuses=Counter({200: 1}), seconds=0.1)
    local = STARTED.astimezone(datetime.timezone(datetime.timedelta(hours=2)))
    document = TrafficDocument.of(MODEL, "http://127.0.0.1:8000", local, report)
    assert document.started_at == "2026-12-03T05:04:55Z"
    assert aware_time(document.started_at) == STARTED


def test_an_error_with_json_is_one_line_on_stderr_and_one_document_on_stdout(home):
    code, stdout, stderr = chassis_in_process("versions", "--model", "ghost", "--json")
    assert code == 1
    assert stderr == "error: no registered model named 'ghost'\n"
    assert json.loads(stdout) == {
        "error": "no registered model named 'ghost'",
        "kind": "registry_error",
    }


def test_error_kinds_are_the_error_class_in_snake_case():
    from chassis.errors import GatesFailed, PromotionConflict

    assert error_kind(PromotionConflict("x")) == "promotion_conflict"
    assert error_kind(GatesFailed("x")) == "gates_failed"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["promote", "--model", MODEL, "--version", "9"], "'draft' has no version 9 (its "),
        (["promote", "--model", "drfat", "--version", "1"], "no registered model named 'drfat'"),
        (["rollback", "--model", "drfat"], "no registered model named 'drfat'"),
        (["gates", "--model", MODEL, "--version", "2"], "'draft' has no version 2"),
        (["compress", "--model", MODEL, "--version", "4"], "'draft' has no version 4"),
        (["rollout", "--model", MODEL, "--version", "5"], "'draft' has no version 5"),
        (["drift-check", "--model", "drfat"], "no registered model named 'drfat'"),
        (
            ["drift-check", "--model", UNCROWNED],
            f"{UNCROWNED} has no champion, so nothing is served to check",
        ),
        (
            ["drift-check", "--model", MODEL, "--since", "2099-01-01T00:00:00Z"],
            "since 2099-01-01T00:00:00+00:00 is not before now",
        ),
        (
            ["traffic", "--model", UNCROWNED],
            f"{UNCROWNED} has no champion, so nothing is served to send traffic to",
        ),
    ],
    ids=[
        "promote-version",
        "promote-model",
        "rollback",
        "gates",
        "compress",
        "rollout",
        "drift-check-model",
        "drift-check-no-champion",
        "drift-check-since-future",
        "traffic-no-champion",
    ],
)
def test_a_typo_is_refused_in_one_line_before_any_flow_run(home, argv, message):
    """No flow runs, so none shows as failed on the Prefect dashboard: the no-servers guard
    of this folder fails the test if Prefect's temporary server were started for one."""
    code, stdout, stderr = chassis_in_process(*argv)
    assert code == 1
    assert stdout == ""
    (line,) = stderr.splitlines()
    assert line.startswith("error: ") and message in line


def engine_record(name: str, level: int, message: str, traceback: bool) -> logging.LogRecord:
    """A record as Prefect's engine logs it about a failing run (see flow_console)."""
    exc_info = None
    if traceback:
        try:
            raise ValueError("no registered model named 'x'")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord(name, level, __file__, 1, message, None, exc_info)


def test_the_console_keeps_progress_and_drops_the_runs_failure_reports():
    from prefect.logging.handlers import PrefectConsoleHandler

    stream = io.StringIO()
    console = PrefectConsoleHandler(stream=stream)
    console.addFilter(RunFailuresFilter())
    for record in (
        engine_record("prefect.task_runs", logging.INFO, "v2 verified: sha256 1f7d", False),
        engine_record("prefect.task_runs", logging.ERROR, "Task run failed with exc", True),
        engine_record("prefect.task_runs", logging.ERROR, "Finished in state Failed()", False),
        engine_record("prefect.flow_runs", logging.ERROR, "Encountered exception during", True),
        engine_record("prefect.flow_runs", logging.INFO, "Finished in state Failed('x')", False),
        engine_record("prefect.flow_runs", logging.INFO, "Finished in state Completed()", False),
        engine_record("prefect", logging.WARNING, "the temporary server is slow", False),
    ):
        console.handle(record)
    shown = stream.getvalue()
    assert "Traceback" not in shown and "Failed" not in shown and "Encountered" not in shown
    for kept in ("v2 verified", "Finished in state Completed()", "temporary server is slow"):
        assert kept in shown


def test_only_the_console_is_quieted_and_only_while_the_command_runs():
    from prefect.logging.handlers import APILogHandler, PrefectConsoleHandler

    root = logging.getLogger().handlers
    run_handlers = logging.getLogger("prefect.flow_runs").handlers
    with failures_reported_by_the_cli():
        consoles = [h for h in root if isinstance(h, PrefectConsoleHandler)]
        assert consoles and all(
            any(isinstance(f, RunFailuresFilter) for f in h.filters) for h in consoles
        )
        # The run's logs still reach the Prefect API (its UI) unfiltered.
        apis = [h for h in run_handlers if isinstance(h, APILogHandler)]
        assert apis and not any(h.filters for h in apis)
    assert not any(isinstance(f, RunFailuresFilter) for h in root for f in h.filters)


def test_the_drift_document_carries_every_field_of_the_flows_outcome():
    from chassis_cli.documents import DriftDocument
    from flows.monitoring import DriftOutcome

    outcome = DriftOutcome(
        model_name=MODEL,
        champion_version=3,
        verdict="drift",
        drifted_share=0.5,
        drifted_columns=["x1"],
        judged_columns=2,
        drift_share_needed=0.5,
        window_start="2026-12-03T04:05:14.000+00:00",
        window_end="2026-12-03T05:05:14.000+00:00",
        served_rows=300,
        non_finite_rows_dropped=0,
        skipped_files=[],
        serving_suite="not run",
        serving_suite_failures=[],
        report_uri="file:///tmp/report.html",
        event_emitted=True,
        report_url="http://127.0.0.1:5000/#/experiments/1/runs/r/artifactPath/drift/r.html",
        plot_uri="file:///tmp/drift/drift-over-time.png",
        plot_url="http://127.0.0.1:5000/#/experiments/1/runs/r/artifactPath/drift/drift-over-time.png",
        metrics_pushed=True,
    )
    document = json.loads(DriftDocument.of(outcome).model_dump_json())
    fields = outcome.model_dump()
    fields["model"] = fields.pop("model_name")
    assert document == fields
