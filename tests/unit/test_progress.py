"""Progress of long work (chassis/progress.py) and the CLI's display of it
(chassis_cli/progress_display.py): off without a terminal, counts on one, paced log lines in
Prefect runs, stderr only, safe from many threads."""

import io
import logging
import threading
from dataclasses import dataclass, field

import httpx
import pytest
from rich.console import Console

from chassis import progress
from chassis.errors import SettingsError
from chassis_cli.progress_display import LiveDisplay
from tests.unit.test_rollout_runner import FakeFleet, ScriptedSteps, candidate

LOG = logging.getLogger("test.progress")


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@dataclass
class Recorded:
    description: str
    total: float | None
    unit: str
    rate: bool
    completed: float = 0.0
    details: list[str] = field(default_factory=list)
    closed: bool = False

    def advance(self, amount: float = 1, detail: str | None = None) -> None:
        self.completed += amount
        if detail is not None:
            self.details.append(detail)

    def update(
        self,
        *,
        completed: float | None = None,
        total: float | None = None,
        detail: str | None = None,
    ) -> None:
        if completed is not None:
            self.completed = completed
        if total is not None:
            self.total = total
        if detail is not None:
            self.details.append(detail)

    def close(self) -> None:
        self.closed = True


class Recorder:
    """A display that keeps every tracker it was given."""

    def __init__(self) -> None:
        self.trackers: list[Recorded] = []
        self.steps: list[str] = []

    def start(self, description: str, total: float | None, unit: str, rate: bool) -> Recorded:
        self.trackers.append(Recorded(description, total, unit, rate))
        return self.trackers[-1]

    def step(self, name: str) -> None:
        self.steps.append(name)


@pytest.fixture(autouse=True)
def auto_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(progress.ENVIRONMENT_VARIABLE, raising=False)


def test_the_display_is_off_when_stderr_is_not_a_terminal():
    assert not progress.enabled(io.StringIO())
    assert progress.enabled(Terminal())


def test_chassis_progress_overrides_the_terminal_check_and_a_typo_is_an_error(monkeypatch):
    monkeypatch.setenv("CHASSIS_PROGRESS", "off")
    assert not progress.enabled(Terminal())
    monkeypatch.setenv("CHASSIS_PROGRESS", "on")
    assert progress.enabled(io.StringIO())
    monkeypatch.setenv("CHASSIS_PROGRESS", "sometimes")
    with pytest.raises(SettingsError, match=r"CHASSIS_PROGRESS must be one of auto, on, off"):
        progress.enabled(Terminal())


def test_without_a_display_tracking_costs_nothing_and_shows_nothing(capsys):
    assert progress.current() is progress.NULL_REPORTER
    with progress.track("training", total=3, unit="epochs") as bar:
        bar.advance(1, detail="loss 0.5")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_the_cli_progress_on_a_piped_stderr_installs_no_display(capsys):
    from chassis_cli.display import progress as cli_progress

    with cli_progress("train"):
        assert progress.current() is progress.NULL_REPORTER
    assert capsys.readouterr().err == ""


def test_the_display_on_a_terminal_shows_each_trackers_counts():
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=140)
    display = LiveDisplay(console, "release: train-baseline")
    with (
        display,
        progress.install(display),
        progress.track("training", total=40, unit="epochs") as epochs,
    ):
        epochs.advance(12, detail="val accuracy 0.9500")
        with progress.track("requests to digits-mlp", 500, "requests", rate=True) as sent:
            sent.advance(123)
            display.live.refresh()
    shown = screen.getvalue()
    assert "release: train-baseline" in shown
    assert "training" in shown and "12/40 epochs" in shown and "val accuracy 0.9500" in shown
    assert "123/500 requests" in shown  # its rate appears once rich has two samples
    assert progress.current() is progress.NULL_REPORTER  # uninstalled afterwards


def test_the_cli_display_draws_on_stderr_and_never_on_stdout(capsys, monkeypatch):
    from chassis_cli.display import progress as cli_progress

    monkeypatch.setenv("CHASSIS_PROGRESS", "on")  # capsys's stderr is no terminal
    with cli_progress("compress"):
        display = progress.current()
        assert isinstance(display, LiveDisplay)
        with progress.track("building candidates", total=8, unit="candidates") as bar:
            bar.advance(3, detail="pruned")
            display.live.refresh()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "3/8 candidates" in captured.err and "pruned" in captured.err


def paced_lines(advances: int, step_seconds: float, total: float | None) -> list[str]:
    lines: list[str] = []
    now = [0.0]
    reporter = progress.LogReporter(lines.append, clock=lambda: now[0])
    tracker = reporter.start("requests to m", total, "requests", True)
    for _ in range(advances):
        now[0] += step_seconds
        tracker.advance()
    tracker.close()
    return lines


def test_a_long_loop_logs_a_bounded_number_of_lines():
    # 100 000 steps over 100 s: every 10 % (10 s apart) and a last line, never a line a step.
    lines = paced_lines(100_000, 0.001, total=100_000)
    assert 10 <= len(lines) <= 12
    assert lines[0] == "requests to m: 10000/100000 requests (10%), 1000.0/s, 10.0 s"
    assert lines[-1].startswith("requests to m: 100000/100000 requests (100%), 1000.0/s, done in")
    assert sum("(100%)" in line for line in lines) == 1  # the end is said once
    # An open-ended hour: one line per 10 s, not per request.
    assert 359 <= len(paced_lines(360_000, 0.01, total=None)) <= 361
    # A burst of a second or less: at most one line.
    assert len(paced_lines(1_000, 0.0005, total=1_000)) <= 1


def test_the_log_fallback_writes_through_the_run_logger_and_a_display_wins(caplog):
    now = [0.0]
    with (
        caplog.at_level(logging.INFO, logger=LOG.name),
        progress.log_fallback(LOG, clock=lambda: now[0]),
    ):
        with progress.track("training", total=20, unit="epochs") as bar:
            for _ in range(20):
                now[0] += 2.0
                bar.advance(1, detail="loss 0.1")
        recorder = Recorder()
        with progress.install(recorder), progress.track("measuring v2", total=3):
            pass
    lines = [r.getMessage() for r in caplog.records if r.name == LOG.name]
    assert lines[0] == "training: 2/20 epochs (10%), 4.0 s, loss 0.1"
    assert 10 <= len(lines) <= 11
    assert [t.description for t in recorder.trackers] == ["measuring v2"]


def test_the_log_fallback_is_silent_with_chassis_progress_off(caplog, monkeypatch):
    monkeypatch.setenv("CHASSIS_PROGRESS", "off")
    now = [0.0]
    with (
        caplog.at_level(logging.INFO, logger=LOG.name),
        progress.log_fallback(LOG, clock=lambda: now[0]),
        progress.track("training", total=10, unit="epochs") as bar,
    ):
        for _ in range(10):
            now[0] += 20.0
            bar.advance()
    assert not [r for r in caplog.records if r.name == LOG.name]


def hammer(tracker: progress.Tracker, threads: int = 8, each: int = 2_000) -> None:
    def work() -> None:
        for _ in range(each):
            tracker.advance()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_trackers_count_every_advance_from_many_threads():
    log_tracker = progress.LogReporter(lambda line: None).start("x", 16_000, "", False)
    hammer(log_tracker)
    assert isinstance(log_tracker, progress._LogTracker)
    assert log_tracker.completed == 16_000

    display = LiveDisplay(Console(file=io.StringIO(), force_terminal=True))
    with display:
        bar = display.start("x", 16_000, "", False)
        hammer(bar)
        assert display.bars.tasks[0].completed == 16_000


def test_replayed_traffic_reports_requests_sent_of_the_total_with_a_rate(monkeypatch):
    from chassis import traffic

    client = httpx.Client

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"predictions": [0]}, headers={"x-model-version": "1"})

    monkeypatch.setattr(
        traffic.httpx,
        "Client",
        lambda timeout: client(transport=httpx.MockTransport(answer), timeout=timeout),
    )
    recorder = Recorder()
    with progress.install(recorder):
        report = traffic.replay("http://gateway", "m", [[1.0]], max_requests=25, max_seconds=30)
    assert report.sent == 25
    [sent] = recorder.trackers
    assert (sent.description, sent.total, sent.unit, sent.rate) == (
        "requests to m",
        25,
        "requests",
        True,
    )
    assert sent.completed == 25 and sent.closed


def test_a_rollout_shows_each_step_with_its_verdict_so_far():
    from chassis.rollout.runner import run_steps

    fleet = FakeFleet()
    steps = ScriptedSteps(fleet, "pass", "pass", "pass")
    recorder = Recorder()
    with progress.install(recorder):
        run_steps(fleet, candidate(), steps, lambda reason: None, lambda *a: None, LOG)
    [rollout] = recorder.trackers
    assert rollout.description == "canary v2" and rollout.completed == 3
    assert rollout.details[-2:] == [
        "shadow: pass; canary 50%: pass; canary 100%: judging",
        "shadow: pass; canary 50%: pass; canary 100%: pass",
    ]


def test_a_rollout_step_shows_samples_collected_of_those_needed():
    from chassis.rollout.counts import ModelCounts, VersionCounts
    from chassis.rollout.policy import RolloutPolicy
    from chassis.rollout.runner import watch_window

    policy = RolloutPolicy(step_seconds=60)
    n = policy.required_samples
    healthy = VersionCounts(n, 0, n, n, (0.001, 0.01), (n, 0, 0), (n, 0, 0))

    class Busy(FakeFleet):
        def window(self, now: list[ModelCounts], start: list[ModelCounts]) -> ModelCounts:
            return {2: healthy, 1: healthy}

    recorder = Recorder()
    with progress.install(recorder):
        watch_window(Busy(), 2, 1, "canary 10%", policy, True, LOG, sleep=lambda s: None)
    [step] = recorder.trackers
    assert (step.description, step.total, step.unit) == ("canary 10%", n, "samples")
    assert step.completed == n and step.details == ["window 1 of 3"]
