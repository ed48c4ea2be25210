"""Terminal output: a live status line during long flows and a short summary after."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from chassis.settings import ChassisSettings

console = Console(stderr=True)
out = Console()


class StepStatus(logging.Handler):
    """Shows the task Prefect is running (and its latest log line) on the status line."""

    def __init__(self, update: Any) -> None:
        super().__init__(logging.INFO)
        self.update = update

    def emit(self, record: logging.LogRecord) -> None:
        step = getattr(record, "task_name", None) or getattr(record, "flow_name", None)
        if step:
            message = record.getMessage().splitlines()[0][:70]
            self.update(f"[bold cyan]{step}[/] {message}")


@contextmanager
def progress(flow_name: str) -> Iterator[None]:
    """A spinner with the current step while a flow runs (plain logs when not a terminal)."""
    if not console.is_terminal:
        yield
        return
    with console.status(f"[bold cyan]{flow_name}[/] starting Prefect ...") as status:
        handler = StepStatus(lambda text: status.update(text))
        logger = logging.getLogger("prefect")
        logger.addHandler(handler)
        try:
            yield
        finally:
            logger.removeHandler(handler)


def print_training(outcome: Any, settings: "ChassisSettings") -> None:
    metrics = outcome.metrics
    title = (
        f"{outcome.model_name} version {outcome.version} registered"
        if getattr(outcome, "registered", True)
        else f"{outcome.model_name}: not registered (equal to v{outcome.version})"
    )
    table = Table(title=title, show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value", overflow="fold")
    from chassis.evaluation import METRIC_LABELS

    for name, label in METRIC_LABELS.items():  # the test metrics of the version's task
        if f"test_{name}" in metrics:
            table.add_row(f"test {label}", f"{metrics[f'test_{name}']:.4f}")
    parity = metrics.get("parity_max_abs_diff")
    table.add_row(
        "ONNX parity max |diff|",
        "not measured (imported ONNX: no torch twin)" if parity is None else f"{parity:.2e}",
    )
    table.add_row("ONNX sha256", outcome.onnx_sha256)
    table.add_row("MLflow run", outcome.run_id)
    out.print(table)
    if getattr(outcome, "identical_to", None) is not None:
        out.print(
            f"note: the same ONNX bytes as v{outcome.identical_to} (registered anyway; "
            "tagged chassis.identical_to)"
        )
    print_where_to_look(outcome.mlflow_version_url, None, settings)


def print_release(outcome: Any, settings: "ChassisSettings") -> None:
    print_training(outcome.training, settings)
    if outcome.no_change:
        out.print(
            f"Release: {outcome.no_change}. Nothing was gated or rolled out; no alias moved.",
            soft_wrap=True,
        )
        print_where_to_look(None, outcome.prefect_flow_run_url, settings)
        return
    if outcome.compression is not None:
        compressed = outcome.compression
        out.print(
            f"Compression: selected {compressed.selected} -> "
            f"{outcome.training.model_name} v{outcome.candidate_version}",
            soft_wrap=True,
        )
    failed = [g for g in outcome.gates.report["gates"] if not g["passed"]]
    out.print(
        f"Gates: {'passed' if outcome.gates.passed else 'FAILED'} "
        f"({len(outcome.gates.report['gates']) - len(failed)}/{len(outcome.gates.report['gates'])})"
    )
    print_alias_outcome(outcome.alias)
    if outcome.rollout is not None:
        steps = list(dict.fromkeys(row["step"] for row in outcome.rollout.steps))
        out.print(
            f"Rollout ({outcome.rollout.strategy}): {' -> '.join(steps)}; "
            f"v{outcome.rollout.version} promoted to champion",
            soft_wrap=True,
        )
    print_where_to_look(None, outcome.prefect_flow_run_url, settings)


def print_where_to_look(
    mlflow_url: str | None, prefect_url: str | None, settings: "ChassisSettings"
) -> None:
    if mlflow_url:
        out.print(f"MLflow version: {mlflow_url}", soft_wrap=True)
    if prefect_url:
        out.print(f"Prefect flow run: {prefect_url}", soft_wrap=True)
        out.print(f"Start both UIs with `make ui` (or `chassis ui`); state is in {settings.home}")


def print_versions(model: str, versions: list[dict[str, Any]]) -> None:
    if not versions:
        out.print(f"{model}: no versions registered")
        return
    table = Table(title=f"{model} versions")
    for column in ("version", "created", "aliases", "run id", "onnx sha256", "spec"):
        table.add_column(column)
    for v in versions:
        table.add_row(
            str(v["version"]),
            v["created"],
            ", ".join(v["aliases"]) or "-",
            v["run_id"],
            v["tags"].get("chassis.onnx_sha256", "-")[:16],
            v["tags"].get("chassis.spec", "-"),
        )
    out.print(table)


def print_gates(outcome: Any) -> None:
    report = outcome.report
    table = Table(
        title=f"Gates for {outcome.model_name} v{outcome.version}: "
        + ("PASSED" if outcome.passed else "FAILED")
    )
    for column in ("gate", "result", "observed", "threshold"):
        table.add_column(column, overflow="fold")
    for gate in report["gates"]:
        result = "skipped" if gate["skipped"] else ("pass" if gate["passed"] else "FAIL")
        table.add_row(gate["gate"], result, gate["observed"], gate["threshold"])
    out.print(table)
    out.print(f"Report stored at {outcome.report_uri}", soft_wrap=True)


def print_alias_outcome(outcome: Any) -> None:
    if outcome.noop:
        out.print(f"{outcome.model_name}: nothing to do, already {outcome.aliases_after}")
        return
    out.print(
        f"{outcome.model_name}: {outcome.action} recorded as audit #{outcome.audit_sequence}; "
        f"aliases {outcome.aliases_before} -> {outcome.aliases_after}"
    )


def print_history(model: str, records: list[Any], aliases: dict[str, int]) -> None:
    """One block per alias move, newest last, like `git log` reads."""
    now = ", ".join(f"@{a} v{v}" for a, v in sorted(aliases.items())) or "no aliases"
    out.print(f"[bold]{model}[/]: {len(records)} alias move(s); now {now}")
    for r in records:
        moves = ", ".join(f"{m['alias']} {_v(m['from'])} -> {_v(m['to'])}" for m in r.moves)
        out.print(f"\n[bold]#{r.sequence}[/] {r.at}  [cyan]{r.action}[/]  {moves}")
        out.print(f"    who: {r.actor}", soft_wrap=True)
        out.print(f"    why: {r.reason}", soft_wrap=True)
        for key, value in r.evidence.items():
            out.print(f"    {key}: {value}", soft_wrap=True)


def _v(version: int | None) -> str:
    return "-" if version is None else f"v{version}"
