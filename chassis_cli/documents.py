"""The JSON documents `chassis COMMAND --json` prints: every field of every command, defined
once here (README: "Machine-readable output" documents each).

These are the CLI's contract with scripts, so they are their own models rather than the flow
outcomes dumped as they are: a flow may rename or add an internal field without a script
breaking, and the loosely typed parts of the outcomes (gate reports, compression rows, alias
maps keyed by name) are given fixed, typed fields here. Field names are snake_case, numbers
are numbers (NaN and infinities become null), versions are integers, times are ISO 8601 in
UTC, and a field that does not apply is null rather than missing.

Imported only by handlers that print (pydantic is not loaded by `chassis --help`).
"""

import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from chassis.compression.candidates import LATENCY_VS_BASELINE_COLUMN
from chassis.live_accuracy import VersionAccuracy

if TYPE_CHECKING:
    from chassis.registry.audit import AuditRecord
    from chassis.sanitization import Sanitization
    from chassis.traffic import TrafficReport
    from flows.compression import CompressionOutcome
    from flows.diagnose import DiagnosisOutcome
    from flows.monitoring import DriftOutcome
    from flows.promotion import AliasOutcome, GatesOutcome
    from flows.release import ReleaseOutcome
    from flows.rollout import RolloutOutcome
    from flows.training import TrainingOutcome


class Document(BaseModel):
    """A document's fields are fixed: one a script does not expect is a Chassis bug."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self) -> str:
        # model_dump_json writes NaN and infinities as null: the output is strict JSON.
        return self.model_dump_json(indent=2) + "\n"


# Errors --------------------------------------------------------------------------------------


class ErrorDocument(Document):
    """What stdout carries when a command with --json fails (exit 1 or 130)."""

    error: str  # the same text as the `error: ...` line on stderr
    # The error's class in snake_case (gates_failed, promotion_conflict, registry_error, ...);
    # "interrupted" for Ctrl-C, "unexpected" for a Chassis bug.
    kind: str


# Registry reads ---------------------------------------------------------------------------------


class SpecEntry(Document):
    key: str
    reference: str


class SpecsDocument(Document):
    specs: list[SpecEntry]


class CascadeEntry(Document):
    """A cascade version's tiers (its `chassis.cascade` tag)."""

    # The version whose ONNX bytes it serves as its small tier (the earliest non-cascade
    # version with the same digest); null: none is registered any more.
    small_version: int | None
    full_version: int
    threshold: float


class VersionEntry(Document):
    version: int
    created_at: str
    aliases: list[str]
    run_id: str
    onnx_sha256: str | None
    spec: str | None
    cascade: CascadeEntry | None  # null: not a cascade, or its tag is unreadable
    tags: dict[str, str]


class VersionsDocument(Document):
    model: str
    versions: list[VersionEntry]  # newest first

    @classmethod
    def of(cls, model: str, described: list[dict[str, Any]]) -> "VersionsDocument":
        return cls(
            model=model,
            versions=[
                VersionEntry(
                    version=int(v["version"]),
                    created_at=iso_utc(str(v["created"])),
                    aliases=sorted(v["aliases"]),
                    run_id=str(v["run_id"]),
                    onnx_sha256=v["tags"].get("chassis.onnx_sha256"),
                    spec=v["tags"].get("chassis.spec"),
                    cascade=cascade_entry(v, described),
                    tags=dict(v["tags"]),
                )
                for v in described
            ],
        )


def cascade_entry(version: dict[str, Any], described: list[dict[str, Any]]) -> CascadeEntry | None:
    """`version`'s tiers if it is a cascade with a readable tag. The tag names the full tier
    only: the small tier is the version it copied the bytes of, found by their digest."""
    from chassis.cascade.spec import CascadeSpec
    from chassis.errors import CascadeError
    from chassis.registry.tags import TAG_CASCADE, TAG_ONNX_SHA256

    tag = version["tags"].get(TAG_CASCADE)
    if tag is None:
        return None
    try:
        spec = CascadeSpec.from_json(tag)
    except CascadeError:
        return None
    digest = version["tags"].get(TAG_ONNX_SHA256)
    same_bytes = [
        int(v["version"])
        for v in described
        if TAG_CASCADE not in v["tags"] and digest and v["tags"].get(TAG_ONNX_SHA256) == digest
    ]
    return CascadeEntry(
        small_version=min(same_bytes, default=None),
        full_version=spec.full_version,
        threshold=spec.threshold,
    )


def iso_utc(shown: str) -> str:
    """The registry reader's "YYYY-MM-DD HH:MM:SS UTC" as ISO 8601 ("...T...Z")."""
    parsed = datetime.datetime.strptime(shown, "%Y-%m-%d %H:%M:%S UTC")
    return parsed.strftime("%Y-%m-%dT%H:%M:%SZ")


class AliasMoveEntry(Document):
    alias: str
    from_version: int | None  # null: the alias was not set
    to_version: int | None  # null: the alias was removed


class AuditEntry(Document):
    sequence: int
    at: str
    actor: str
    action: str
    version: int | None  # the version the action was about (see `subject_version`)
    moves: list[AliasMoveEntry]
    reason: str
    evidence: dict[str, str]


def subject_version(moves: list[AliasMoveEntry]) -> int | None:
    """The version an alias change was about: where its first alias (the champion of a
    promotion or rollback, the challenger of a set or retire) went, or, for a removal,
    the version it left."""
    if not moves:
        return None
    first = moves[0]
    return first.to_version if first.to_version is not None else first.from_version


class HistoryDocument(Document):
    model: str
    aliases: dict[str, int]  # the aliases now: champion, challenger, previous
    records: list[AuditEntry]  # oldest first

    @classmethod
    def of(
        cls, model: str, records: "list[AuditRecord]", aliases: dict[str, int]
    ) -> "HistoryDocument":
        entries: list[AuditEntry] = []
        for record in records:
            moves = [
                AliasMoveEntry(alias=m["alias"], from_version=m["from"], to_version=m["to"])
                for m in record.moves
            ]
            entries.append(
                AuditEntry(
                    sequence=record.sequence,
                    at=record.at,
                    actor=record.actor,
                    action=record.action,
                    version=subject_version(moves),
                    moves=moves,
                    reason=record.reason,
                    evidence={k: str(v) for k, v in record.evidence.items()},
                )
            )
        return cls(model=model, aliases=dict(sorted(aliases.items())), records=entries)


class RecoverDocument(Document):
    model: str
    recovered: bool  # false: no interrupted change was pending
    description: str | None  # how it was resolved
    aliases: dict[str, int]


# Gates and aliases ----------------------------------------------------------------------------


class GateEntry(Document):
    gate: str
    result: Literal["pass", "fail", "skipped"]
    observed: str
    threshold: str


class GateTally(Document):
    """The gates counted honestly: a skipped gate is neither passed nor failed."""

    passed: int
    failed: int
    skipped: int
    skipped_gates: list[str]

    @classmethod
    def of(cls, gates: list[GateEntry]) -> "GateTally":
        skipped = [g.gate for g in gates if g.result == "skipped"]
        return cls(
            passed=sum(g.result == "pass" for g in gates),
            failed=sum(g.result == "fail" for g in gates),
            skipped=len(skipped),
            skipped_gates=skipped,
        )

    def counts(self) -> str:
        """e.g. "5/5, 1 skipped: ONNX parity": passed of those judged, then the skipped."""
        text = f"{self.passed}/{self.passed + self.failed}"
        if self.skipped:
            text += f", {self.skipped} skipped: {', '.join(self.skipped_gates)}"
        return text

    def describe(self, passed: bool) -> str:
        """e.g. "passed (5/5, 1 skipped: ONNX parity)" or "FAILED (4/5)"."""
        return f"{'passed' if passed else 'FAILED'} ({self.counts()})"


class GatesDocument(Document):
    model: str
    version: int
    passed: bool
    tally: GateTally
    gates: list[GateEntry]
    baseline_version: int | None
    champion_version: int | None
    report_uri: str

    @classmethod
    def of(cls, outcome: "GatesOutcome") -> "GatesDocument":
        report: dict[str, Any] = dict(outcome.report)
        gates = [gate_entry(g) for g in report.get("gates", [])]
        return cls(
            model=outcome.model_name,
            version=outcome.version,
            passed=outcome.passed,
            tally=GateTally.of(gates),
            gates=gates,
            baseline_version=report.get("baseline_version"),
            champion_version=report.get("champion_version"),
            report_uri=outcome.report_uri,
        )


def gate_entry(gate: dict[str, Any]) -> GateEntry:
    result = "skipped" if gate.get("skipped") else ("pass" if gate["passed"] else "fail")
    return GateEntry(
        gate=str(gate["gate"]),
        result=result,
        observed=str(gate["observed"]),
        threshold=str(gate["threshold"]),
    )


class AliasChangeDocument(Document):
    """promote, rollback, retire: what moved."""

    model: str
    action: str
    changed: bool  # false: nothing to do (a repeated promotion)
    aliases_before: dict[str, int]
    aliases_after: dict[str, int]
    audit_sequence: int | None  # the audit record written (null when nothing changed)

    @classmethod
    def of(cls, outcome: "AliasOutcome") -> "AliasChangeDocument":
        return cls(
            model=outcome.model_name,
            action=outcome.action,
            changed=not outcome.noop,
            aliases_before=dict(sorted(outcome.aliases_before.items())),
            aliases_after=dict(sorted(outcome.aliases_after.items())),
            audit_sequence=outcome.audit_sequence,
        )


# Training, compression, rollout, release ----------------------------------------------------------


class TrainingDocument(Document):
    """train and import: the version registered (or, with registered false, the existing
    version whose bytes the new model equals)."""

    model: str
    version: int
    registered: bool
    no_change: str | None
    identical_to: int | None  # an earlier version with the same ONNX bytes (registered anyway)
    run_id: str
    experiment_id: str
    onnx_sha256: str
    dataset_fingerprint: str
    metrics: dict[str, float | None]
    mlflow_version_url: str
    mlflow_run_url: str
    mlflow_experiment_url: str

    @classmethod
    def of(cls, outcome: "TrainingOutcome") -> "TrainingDocument":
        return cls(
            model=outcome.model_name,
            version=outcome.version,
            registered=outcome.registered,
            no_change=outcome.no_change,
            identical_to=outcome.identical_to,
            run_id=outcome.run_id,
            experiment_id=outcome.experiment_id,
            onnx_sha256=outcome.onnx_sha256,
            dataset_fingerprint=outcome.dataset_fingerprint,
            metrics=dict(sorted(outcome.metrics.items())),
            mlflow_version_url=outcome.mlflow_version_url,
            mlflow_run_url=outcome.mlflow_run_url,
            mlflow_experiment_url=outcome.mlflow_experiment_url,
        )


# The compression table's fixed columns; the others are quality metrics, or latencies ("_ms").
CANDIDATE_COLUMNS = frozenset(
    {
        "candidate",
        "selected",
        "passed",
        "size_bytes",
        "parameters",
        "score",
        "reason",
        LATENCY_VS_BASELINE_COLUMN,
    }
)


class CandidateEntry(Document):
    name: str
    selected: bool
    passed: bool  # within the accuracy (or RMSE) tolerance
    quality: dict[str, float | None]  # e.g. accuracy, macro_f1; a regressor's rmse, mae, r2
    latency_ms: dict[str, float | None]  # e.g. b1_p50, b1_p99
    size_bytes: int
    parameters: int | None
    score: float | None
    reason: str
    # One-row latency over the baseline's with its 95% interval, as the table shows it
    # ("reference" for the baseline; null when not timed against it).
    latency_vs_baseline: str | None = None

    @classmethod
    def of(cls, row: dict[str, Any]) -> "CandidateEntry":
        rest = {k: v for k, v in row.items() if k not in CANDIDATE_COLUMNS}
        return cls(
            name=str(row["candidate"]),
            selected=row.get("selected") == "yes",
            passed=row.get("passed") == "yes",
            quality={k: float(v) for k, v in rest.items() if not k.endswith("_ms")},
            latency_ms={
                k.removesuffix("_ms"): float(v) for k, v in rest.items() if k.endswith("_ms")
            },
            size_bytes=int(row["size_bytes"]),
            parameters=None if row.get("parameters") is None else int(row["parameters"]),
            score=None if row.get("score") is None else float(row["score"]),
            reason=str(row.get("reason", "")),
            latency_vs_baseline=row.get(LATENCY_VS_BASELINE_COLUMN),
        )


class CompressionDocument(Document):
    model: str
    parent_version: int
    selected: str  # the winning candidate's name ("baseline" when none beat it)
    fallback_to_baseline: bool
    version: int  # the registered compressed version, or the parent when the baseline won
    registered: bool
    identical_to: int | None  # an earlier version with the same ONNX bytes (registered anyway)
    explanation: str
    candidates: list[CandidateEntry]
    skipped: dict[str, str]  # candidate -> why it was not built

    @classmethod
    def of(cls, outcome: "CompressionOutcome") -> "CompressionDocument":
        return cls(
            model=outcome.model_name,
            parent_version=outcome.parent_version,
            selected=outcome.selected,
            fallback_to_baseline=outcome.fallback_to_baseline,
            version=outcome.version,
            registered=outcome.registered,
            identical_to=outcome.identical_to,
            explanation=outcome.explanation,
            candidates=[CandidateEntry.of(row) for row in outcome.rows],
            skipped=dict(outcome.skipped),
        )


class StatusCount(Document):
    status: int | None  # HTTP status; null: no answer (connection refused, timeout)
    count: int


class RolloutCheck(Document):
    step: str
    check: str
    result: str
    observed: str
    threshold: str
    verdict: str


class RolloutDocument(Document):
    model: str
    version: int
    strategy: str
    promoted: bool
    steps: list[str]  # in the order they ran
    checks: list[RolloutCheck]  # every analysis check of every step, in order
    traffic: list[StatusCount]  # the test rows it replayed, by answer (empty: none driven)

    @classmethod
    def of(cls, outcome: "RolloutOutcome") -> "RolloutDocument":
        checks = [RolloutCheck.model_validate(row) for row in outcome.steps]
        return cls(
            model=outcome.model_name,
            version=outcome.version,
            strategy=outcome.strategy,
            promoted=outcome.promoted,
            steps=list(dict.fromkeys(c.step for c in checks)),
            checks=checks,
            traffic=[
                StatusCount(status=int(s) or None, count=n)
                for s, n in sorted(outcome.traffic.items(), key=lambda item: int(item[0]))
            ],
        )


class ReleaseDocument(Document):
    training: TrainingDocument
    no_change: str | None  # set: nothing was registered, gated or rolled out
    candidate_version: int
    compression: CompressionDocument | None
    gates: GatesDocument | None
    alias: AliasChangeDocument | None
    rollout: RolloutDocument | None
    prefect_flow_run_url: str

    @classmethod
    def of(cls, outcome: "ReleaseOutcome") -> "ReleaseDocument":
        return cls(
            training=TrainingDocument.of(outcome.training),
            no_change=outcome.no_change,
            candidate_version=outcome.candidate_version,
            compression=None
            if outcome.compression is None
            else CompressionDocument.of(outcome.compression),
            gates=None if outcome.gates is None else GatesDocument.of(outcome.gates),
            alias=None if outcome.alias is None else AliasChangeDocument.of(outcome.alias),
            rollout=None if outcome.rollout is None else RolloutDocument.of(outcome.rollout),
            prefect_flow_run_url=outcome.prefect_flow_run_url,
        )


# Serving side ---------------------------------------------------------------------------------


class VersionCount(Document):
    version: int
    count: int


class TrafficDocument(Document):
    model: str
    gateway_url: str
    # When the first request was about to be sent (ISO 8601, UTC, whole seconds): the
    # `--since` of a drift check that judges this traffic alone.
    started_at: str
    sent: int
    failed: int  # answers other than 200, and no answers
    seconds: float
    requests_per_second: float
    statuses: list[StatusCount]
    versions: list[VersionCount]  # which version answered, from the gateway's header

    @classmethod
    def of(
        cls, model: str, url: str, started: datetime.datetime, report: "TrafficReport"
    ) -> "TrafficDocument":
        return cls(
            model=model,
            gateway_url=url,
            started_at=started.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z"),
            sent=report.sent,
            failed=report.failed,
            seconds=round(report.seconds, 3),
            requests_per_second=round(report.sent / report.seconds, 1) if report.seconds else 0.0,
            statuses=[
                StatusCount(status=s or None, count=n)
                for s, n in sorted(report.statuses.items(), key=lambda item: item[0] or 0)
            ],
            versions=[VersionCount(version=v, count=n) for v, n in sorted(report.versions.items())],
        )


class DriftDocument(Document):
    model: str
    champion_version: int
    verdict: str
    drifted_share: float
    drifted_columns: list[str]
    judged_columns: int  # the columns counted in the verdict
    drift_share_needed: float  # the share of them that is drift (policy drift_share)
    window_start: str  # the window judged, [start, end), ISO 8601 in UTC
    window_end: str
    served_rows: int
    non_finite_rows_dropped: int
    skipped_files: list[str]
    serving_suite: str
    serving_suite_failures: list[str]
    report_uri: str | None  # where the store keeps the Evidently report (file://, s3://)
    report_url: str | None  # the report's page in the MLflow UI
    event_emitted: bool
    # Each version's live accuracy from feedback in the window (chassis/live_accuracy.py).
    live_accuracy: list[VersionAccuracy]
    accuracy_event_emitted: bool
    # The drift-over-time plot (PNG) in the store, and its page in the MLflow UI; null when
    # none was written (data quality stopped the check, or the plot failed: a warning).
    plot_uri: str | None = None
    plot_url: str | None = None
    metrics_pushed: bool = False  # the result went to the Pushgateway (CHASSIS_PUSHGATEWAY_URL)

    @classmethod
    def of(cls, outcome: "DriftOutcome") -> "DriftDocument":
        fields = outcome.model_dump()
        fields["model"] = fields.pop("model_name")
        return cls.model_validate(fields)


class DiagnosisDocument(Document):
    model: str
    failing_branch: str | None  # service, model, data, business; null: nothing wrong found
    summary: str
    failing_checks: list[str]
    report_uri: str | None
    recovery: str  # none, fallback, sanitize, unsanitize, restart (done), suggest
    recovery_explanation: str
    replicas_following: list[str]
    sanitization: str  # the model's sanitization after the run: off, or its mode
    replicas_restarted: list[str] = []
    replicas_back: list[str] = []

    @classmethod
    def of(cls, outcome: "DiagnosisOutcome") -> "DiagnosisDocument":
        return cls(
            model=outcome.model_name,
            failing_branch=outcome.failing_branch,
            summary=outcome.summary,
            failing_checks=outcome.failing_checks,
            report_uri=outcome.report_uri,
            recovery=outcome.recovery,
            recovery_explanation=outcome.recovery_explanation,
            replicas_following=outcome.replicas_following,
            sanitization=outcome.sanitization,
            replicas_restarted=outcome.replicas_restarted,
            replicas_back=outcome.replicas_back,
        )


# Sanitization ---------------------------------------------------------------------------------


class SanitizationDocument(Document):
    model: str
    mode: Literal["off", "clip", "refuse"]
    describe: str  # e.g. "clip (4 features from v1's reference)"
    changed: bool  # this command wrote a new setting
    version: int | None  # the version whose reference gave the ranges
    ranges: dict[str, list[float]]  # feature -> [low, high, fill]
    set_at: str | None
    set_by: str | None
    reason: str | None

    @classmethod
    def of(
        cls, model: str, setting: "Sanitization | None", changed: bool
    ) -> "SanitizationDocument":
        if setting is None:
            return cls(
                model=model,
                mode="off",
                describe="off",
                changed=changed,
                version=None,
                ranges={},
                set_at=None,
                set_by=None,
                reason=None,
            )
        return cls(
            model=model,
            mode=setting.mode,
            describe=setting.describe(),
            changed=changed,
            version=setting.version,
            ranges={
                name: [low, high, fill]
                for name, low, high, fill in zip(
                    setting.features, setting.low, setting.high, setting.fill, strict=True
                )
            },
            set_at=setting.at or None,
            set_by=setting.by or None,
            reason=setting.reason or None,
        )
