"""Terminal output: a live status line during long flows and a short summary after.

The summaries render the same documents `--json` prints (chassis_cli/documents.py), so a
table and its JSON never disagree.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.table import Table

from chassis.aliases import describe_aliases

if TYPE_CHECKING:
    from chassis.settings import ChassisSettings
    from chassis_cli.documents import (
        AliasChangeDocument,
        AliasMoveEntry,
        GatesDocument,
        HistoryDocument,
        ReleaseDocument,
        TrainingDocument,
        VersionEntry,
        VersionsDocument,
    )

# Wide enough for any line Chassis prints; not unbounded, since rich sizes some buffers by it.
UNCUT_WIDTH = 10_000


class UncutConsole(Console):
    """A terminal's console, as rich sizes it; anything else (a pipe, a file) is as wide as
    each line's content: rich would otherwise take 80 columns and cut a table's digests and
    run ids to fit them."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        return size if self.is_terminal else ConsoleDimensions(UNCUT_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size  # as rich's own setter does


console = Console(stderr=True)
out = UncutConsole()


class StepStatus(logging.Handler):
    """Shows the step Prefect runs now, with its latest log line, on the status line. A
    step's start is announced by its run name (chassis.progress.step); its end line
    ("Finished in state ...") is left out, so the status never names a finished step as
    if it still ran."""

    def __init__(self, update: Any) -> None:
        super().__init__(logging.INFO)
        self.update = update

    def emit(self, record: logging.LogRecord) -> None:
        step = next(
            (
                name
                for field in ("task_run_name", "task_name", "flow_run_name", "flow_name")
                if isinstance(name := getattr(record, field, None), str) and name
            ),
            None,
        )
        message = record.getMessage()
        if step and not message.startswith("Finished in state"):
            line = escape(message.splitlines()[0][:70] if message else "")
            self.update(f"[bold cyan]{escape(step)}[/] {line}")


@contextmanager
def progress(flow_name: str, status: str = "starting ...") -> Iterator[None]:
    """While a flow (or other long work) runs: a status line with the current step and a
    bar per tracked piece of work (chassis.progress), on stderr; nothing when the display
    is off (not a terminal, CHASSIS_PROGRESS=off): then Prefect's plain logs say it."""
    from chassis import progress as tracking
    from chassis_cli.progress_display import LiveDisplay

    if not tracking.enabled():
        yield
        return
    # Prefect configures logging once, on import, replacing the handlers of its loggers:
    # import it first so the status line's handler below is not removed.
    import prefect.main  # noqa: F401

    # CHASSIS_PROGRESS=on draws on a stderr that is not a terminal too.
    shown_on = console if console.is_terminal else Console(stderr=True, force_terminal=True)
    with LiveDisplay(shown_on, f"[bold cyan]{escape(flow_name)}[/] {escape(status)}") as display:
        handler = StepStatus(display.status)
        logger = logging.getLogger("prefect")
        logger.addHandler(handler)
        try:
            with tracking.install(display):
                yield
        finally:
            logger.removeHandler(handler)


def print_training(document: "TrainingDocument", settings: "ChassisSettings") -> None:
    title = (
        f"{document.model} version {document.version} registered"
        if document.registered
        else f"{document.model}: not registered (equal to v{document.version})"
    )
    table = Table(title=title, show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value", overflow="fold")
    from chassis.evaluation import METRIC_LABELS

    metrics = document.metrics
    for name, label in METRIC_LABELS.items():  # the test metrics of the version's task
        if f"test_{name}" in metrics:
            table.add_row(f"test {label}", number(metrics[f"test_{name}"], ".4f"))
    parity = metrics.get("parity_max_abs_diff")
    table.add_row(
        "ONNX parity max |diff|",
        "not measured (imported ONNX: no torch twin)" if parity is None else f"{parity:.2e}",
    )
    table.add_row("ONNX sha256", document.onnx_sha256)
    table.add_row("MLflow run", document.run_id)
    out.print(table)
    if document.identical_to is not None:
        out.print(
            f"note: the same ONNX bytes as v{document.identical_to} (registered anyway; "
            "tagged chassis.identical_to)"
        )
    print_where_to_look(document, None, settings)


def number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_release(document: "ReleaseDocument", settings: "ChassisSettings") -> None:
    print_training(document.training, settings)
    if document.no_change:
        out.print(
            f"Release: {document.no_change}. Nothing was gated or rolled out; no alias moved.",
            soft_wrap=True,
        )
        print_where_to_look(document.training, document.prefect_flow_run_url, settings)
        return
    if document.compression is not None:
        out.print(
            f"Compression: selected {document.compression.selected} -> "
            f"{document.training.model} v{document.candidate_version}",
            soft_wrap=True,
        )
    if document.gates is not None:
        out.print(f"Gates: {document.gates.tally.describe(document.gates.passed)}", soft_wrap=True)
    if document.alias is not None:
        print_alias_outcome(document.alias)
    if document.rollout is not None:
        rollout = document.rollout
        out.print(
            f"Rollout ({rollout.strategy}): {' -> '.join(rollout.steps)}; "
            f"v{rollout.version} promoted to champion",
            soft_wrap=True,
        )
    print_where_to_look(document.training, document.prefect_flow_run_url, settings)


def print_where_to_look(
    training: "TrainingDocument", prefect_url: str | None, settings: "ChassisSettings"
) -> None:
    """The MLflow pages of a trained version (its experiment's runs, the version) and the
    Prefect run that made it; how to open them if no `chassis ui` serves them now."""
    out.print(f"MLflow runs: {training.mlflow_experiment_url}", soft_wrap=True)
    out.print(f"MLflow version: {training.mlflow_version_url}", soft_wrap=True)
    if prefect_url:
        out.print(f"Prefect flow run: {prefect_url}", soft_wrap=True)
    if settings.running_ui() is None:
        out.print(f"Start both UIs with `make ui` (or `chassis ui`); state is in {settings.home}")


def print_versions(document: "VersionsDocument") -> None:
    if not document.versions:
        out.print(f"{document.model}: no versions registered")
        return
    table = Table(title=f"{document.model} versions")
    # In a narrow terminal every cell folds onto more lines; none is cut short ("…").
    columns = ("version", "created (UTC)", "aliases", "run id", "onnx sha256", "spec", "cascade")
    for column in columns:
        table.add_column(column, overflow="fold")
    for v in document.versions:
        table.add_row(
            str(v.version),
            v.created_at.replace("T", " ").removesuffix("Z"),
            ", ".join(v.aliases) or "-",
            v.run_id or "-",
            v.onnx_sha256 or "-",
            v.spec or "-",
            cascade_cell(v),
        )
    out.print(table)


def cascade_cell(version: "VersionEntry") -> str:
    """ "cascade of v2 -> v1, threshold 0.3000" for a cascade version, "-" for another."""
    cascade = version.cascade
    if cascade is None:
        return "unreadable chassis.cascade tag" if "chassis.cascade" in version.tags else "-"
    small = "?" if cascade.small_version is None else f"v{cascade.small_version}"
    return f"cascade of {small} -> v{cascade.full_version}, threshold {cascade.threshold:.4f}"


def print_gates(document: "GatesDocument") -> None:
    verdict = "PASSED" if document.passed else "FAILED"
    table = Table(
        title=f"Gates for {document.model} v{document.version}: {verdict} "
        f"({document.tally.counts()})"
    )
    for column in ("gate", "result", "observed", "threshold"):
        table.add_column(column, overflow="fold")
    for gate in document.gates:
        result = "FAIL" if gate.result == "fail" else gate.result
        table.add_row(gate.gate, result, gate.observed, gate.threshold)
    out.print(table)
    out.print(f"Report stored at {document.report_uri}", soft_wrap=True)


def print_alias_outcome(document: "AliasChangeDocument") -> None:
    if not document.changed:
        out.print(
            f"{document.model}: nothing to do, already {describe_aliases(document.aliases_after)}"
        )
        return
    out.print(
        f"{document.model}: {document.action} recorded as audit #{document.audit_sequence}; "
        f"aliases {describe_aliases(document.aliases_before)} -> "
        f"{describe_aliases(document.aliases_after)}",
        soft_wrap=True,
    )


def print_history(document: "HistoryDocument", model_url: str) -> None:
    """The audit trail as a table, oldest first, like `git log --reverse` reads; then each
    move's evidence (gate report, flow run) as whole lines, where a terminal can open the
    links (a table column would fold them); then the model's MLflow page (`model_url`),
    whose description shows the same trail."""
    now = describe_aliases(document.aliases) if document.aliases else "no aliases"
    if not document.records:
        out.print(f"{document.model}: no alias has moved yet; now {now}")
        return
    table = Table(title=f"{document.model}: {len(document.records)} alias move(s); now {now}")
    for column in ("#", "when (UTC)", "who", "action", "version", "from -> to", "reason"):
        # A narrow terminal folds cells onto more lines; none is cut short ("…").
        table.add_column(column, overflow="fold")
    for record in document.records:
        table.add_row(
            str(record.sequence),
            _when(record.at),
            record.actor,
            record.action,
            _v(record.version),
            "\n".join(_move(m) for m in record.moves) or "-",
            record.reason,
        )
    out.print(table)
    for record in document.records:
        for name, value in record.evidence.items():
            out.print(f"#{record.sequence} {name}: {value}", soft_wrap=True, highlight=False)
    out.print(
        f"In MLflow (alias history in its description): {model_url}",
        soft_wrap=True,
        highlight=False,
    )


def _move(move: "AliasMoveEntry") -> str:
    return f"{move.alias} {_v(move.from_version)} -> {_v(move.to_version)}"


def _when(at: str) -> str:
    """An audit time (ISO 8601, UTC) to the second, as a person reads it."""
    return at.replace("T", " ")[:19]


def _v(version: int | None) -> str:
    return "-" if version is None else f"v{version}"
