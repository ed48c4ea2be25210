"""What a step is called where people look: Prefect task run names that say what ran on
which model and version (tasks/options.py), and the CLI status line that names the step
running now, not the one that last logged (chassis_cli/display.py::StepStatus)."""

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from chassis import progress
from chassis_cli.display import StepStatus
from tasks import options
from tests.unit.test_progress import Recorder


@dataclass
class Spec:
    name: str


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    monkeypatch.setattr(options.current_task_run, "task_name", "judge-gates", raising=False)
    recorded = Recorder()
    with progress.install(recorded):
        yield recorded


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"model_name": "digits-mlp", "version": 3}, "judge-gates digits-mlp v3"),
        ({"model": "churn", "version": 12}, "judge-gates churn v12"),
        ({"spec": Spec("digits-mlp"), "dataset": object()}, "judge-gates digits-mlp"),
        ({"model_name": "digits-mlp", "version": None}, "judge-gates digits-mlp"),
        ({"version": 3}, "judge-gates"),  # a version of nothing named says nothing
        ({}, "judge-gates"),
    ],
)
def test_a_task_run_is_named_for_its_model_and_version_and_announced(
    recorder: Recorder, parameters: dict[str, Any], expected: str
):
    assert options.named_for_its_model(parameters) == expected
    assert recorder.steps == [expected]


def test_a_template_name_reads_the_parameters_attributes_and_is_announced(recorder: Recorder):
    @dataclass
    class Candidate:
        model: str
        version: int

    name = options.named("{label} {candidate.model} v{candidate.version}")
    assert name({"label": "canary 25%", "candidate": Candidate("digits-mlp", 3)}) == (
        "canary 25% digits-mlp v3"
    )
    assert recorder.steps == ["canary 25% digits-mlp v3"]


def test_every_shared_task_option_set_names_runs_for_their_model():
    assert options.NO_CACHE_TASK["task_run_name"] is options.named_for_its_model
    assert options.REMOTE_READ_TASK["task_run_name"] is options.named_for_its_model


def record(message: str, **extra: str) -> logging.LogRecord:
    entry = logging.LogRecord("prefect.task_runs", logging.INFO, __file__, 1, message, (), None)
    entry.__dict__.update(extra)
    return entry


def test_the_status_line_names_the_run_and_skips_its_end_line():
    shown: list[str] = []
    status = StepStatus(shown.append)
    run = {"task_run_name": "judge-gates digits-mlp v3", "task_name": "judge-gates"}
    status.emit(record("gates passed", **run))
    status.emit(record("Finished in state Completed()", **run))
    status.emit(record("Beginning flow run", flow_run_name="release digits-mlp v3"))
    assert shown == [
        "[bold cyan]judge-gates digits-mlp v3[/] gates passed",
        "[bold cyan]release digits-mlp v3[/] Beginning flow run",
    ]
