"""kill -9 of alias changes at every step, against a real MLflow registry (SQLite) and the real
`chassis` command: after the next operation or a recovery (`chassis recover`, or the function
it calls), the aliases are all before
or all after and the audit trail agrees (one record for a change that stands, none for one
undone). Also: rollback verifies what it reinstates, staggered promotions conflict, and a
waiter outwaits the lock of a killed holder.

The crashes are deterministic: CHASSIS_FAILPOINTS="<point>=kill" makes the command SIGKILL
itself at that step (chassis.failpoints). Each scenario registers its own model (tiny real
ONNX versions, about a second), so scenarios share one CHASSIS_HOME and stay independent.
"""

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chassis.registry import tags
from tests.fixtures.cli import chassis
from tests.fixtures.fault_report import FaultReport, ScenarioResult
from tests.fixtures.registries import home_registry
from tests.fixtures.registry_versions import register_tiny_versions, stored_onnx

# Short-lived locks: every kill leaves its lock behind, and the next command outwaits it.
TTL = "3"
KILL_POINTS = (
    "alias.after-intent",
    "alias.after-move-1",
    "alias.after-move-2",
    "alias.before-audit",
    "alias.before-intent-clear",
)
COMMITTED_POINTS = ("alias.before-intent-clear",)  # the audit record is already written


@dataclass(frozen=True)
class Operation:
    """A command, the aliases it starts from and the aliases it leaves when it completes."""

    name: str
    before: dict[str, int]
    after: dict[str, int]
    args: tuple[str, ...]
    action: str


# v1, v2 promoted in turn (champion v2, previous v1), then a challenger set: 2 or 3 moves each.
OPERATIONS = {
    "promote": Operation(
        "promote",
        {"champion": 2, "previous": 1, "challenger": 3},
        {"champion": 3, "previous": 2},
        ("promote", "--version", "3", "--reason", "canary clean"),
        "promote",
    ),
    "rollback": Operation(
        "rollback",
        {"champion": 2, "previous": 1, "challenger": 3},
        {"champion": 1, "challenger": 3},
        ("rollback", "--reason", "latency regression"),
        "rollback",
    ),
    "retire": Operation(
        "retire",
        {"champion": 2, "previous": 1, "challenger": 1},
        {"champion": 2},
        ("retire", "--version", "1", "--reason", "canary failed"),
        "retire-challenger",
    ),
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One CHASSIS_HOME (SQLite registry, local artifacts) for the module's scenarios."""
    folder = tmp_path_factory.mktemp("alias-crashes") / "chassis"
    saved = {name: os.environ.get(name) for name in ("CHASSIS_HOME", "CHASSIS_LOCK_TTL_SECONDS")}
    # This process recovers too (registry.recover): the same lock lifetime as the commands.
    os.environ.update({"CHASSIS_HOME": str(folder), "CHASSIS_LOCK_TTL_SECONDS": TTL})
    yield folder
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def cli_env(home: Path) -> dict[str, str]:
    """What every `chassis` subprocess gets: the module's home, the session's Prefect API."""
    from prefect.settings import PREFECT_API_URL

    return {
        "CHASSIS_HOME": str(home),
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "CHASSIS_LOCK_TTL_SECONDS": TTL,
    }


_models = iter(range(1, 10_000))


def model_at(start: dict[str, int]) -> str:
    """A new model with versions 1-3 whose aliases are `start`, reached through Chassis (so
    the audit trail is as a real history would leave it)."""
    model = f"crash-{next(_models)}"
    register_tiny_versions(model, 3)
    home_registry().promote(model, 1, expected_champion=None, actor="setup", reason="first")
    if start["champion"] == 2:
        home_registry().promote(model, 2, expected_champion=1, actor="setup", reason="second")
    if "challenger" in start:
        home_registry().set_challenger(model, start["challenger"], actor="setup", reason="rollout")
    assert home_registry().current_aliases(model) == start
    return model


def run(env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return chassis(*args, env={**env, **extra}, timeout=240)


def intent_tag(model: str) -> str | None:

    return home_registry().client.get_registered_model(model).tags.get(tags.TAG_INTENT)


def outcome(op: Operation, model: str, records_before: int) -> tuple[str, str]:
    """("before" | "after" | "inconsistent", description for the `lost` column)."""
    aliases = home_registry().current_aliases(model)
    trail = home_registry().history(model)
    new = trail[records_before:]
    if aliases == op.before and not new:
        return "before", "nothing: half-done change undone, no record"
    if aliases == op.after and [r.action for r in new] == [op.action]:
        return "after", "nothing: change stands, one audit record"
    return "inconsistent", f"aliases {aliases}, new records {[r.action for r in new]}"


@dataclass(frozen=True)
class Crash:
    """One kill scenario, run: the killed command, what it left, and the command after it."""

    op: Operation
    model: str
    records_before: int
    killed: "Ran"
    left_intent: bool
    half_state: dict[str, int]
    records_at_kill: int
    then: "Ran"
    killed_recovery: "Ran | None" = None  # RECOVER_KILLED: the recovery killed midway


Ran = subprocess.CompletedProcess[str]
RECOVER, REPEAT, RECOVER_KILLED = "recover", "repeat", "recover killed"
# Kills of these operations are resolved by the `chassis recover` command; the others by
# registry.recover in this process (the same code), which keeps the module's CPU in budget.
CLI_RECOVERS = ("promote",)
# Kill, then the same command again (no `recover`): the points where the aliases moved.
REPEATED = (("promote", "alias.after-move-1"), ("rollback", "alias.before-audit"))


def crash_then(env: dict[str, str], case: tuple[str, str, str], model: str) -> tuple:
    """Run the operation killed at the point, look at what it left, then run `chassis recover`
    (RECOVER) or the same command again (REPEAT)."""
    after, name, point = case
    op = OPERATIONS[name]
    killed = run(env, *op.args, "--model", model, CHASSIS_FAILPOINTS=f"{point}=kill")
    left = (intent_tag(model) is not None, home_registry().current_aliases(model))
    records_at_kill = len(home_registry().history(model))
    killed_recovery = None
    if after == RECOVER_KILLED:
        armed = "recover.after-move-1=kill"
        killed_recovery = run(env, "recover", "--model", model, CHASSIS_FAILPOINTS=armed)
    if after == RECOVER and name not in CLI_RECOVERS:
        return killed, *left, records_at_kill, recover_here(model), killed_recovery
    then = op.args if after == REPEAT else ("recover",)
    return killed, *left, records_at_kill, run(env, *then, "--model", model), killed_recovery


def recover_here(model: str) -> Ran:
    """`registry.recover`, the function `chassis recover` calls, in this process: the same
    lock wait and resolution without a second interpreter's imports (CPU the module needs)."""
    recovery = home_registry().recover(model, actor="fault test")
    described = "nothing to do" if recovery is None else recovery.describe()
    return subprocess.CompletedProcess(["registry.recover", model], 0, described, "")


@pytest.fixture(scope="module")
def crashes(home: Path, cli_env: dict[str, str]) -> dict[tuple[str, str, str], Crash]:
    """Every operation killed at every point, then `chassis recover`, plus the REPEATED
    cases, three scenarios at a time (each on its own model): the commands spend most of
    their time importing, and overlapping them keeps the module within its time budget."""
    from concurrent.futures import ThreadPoolExecutor

    cases = [(RECOVER, name, point) for name in sorted(OPERATIONS) for point in KILL_POINTS]
    cases += [(REPEAT, name, point) for name, point in REPEATED]
    cases += [(RECOVER_KILLED, "promote", "alias.before-audit")]
    models = {case: model_at(OPERATIONS[case[1]].before) for case in cases}
    records = {case: len(home_registry().history(models[case])) for case in cases}
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {case: pool.submit(crash_then, cli_env, case, models[case]) for case in cases}
        return {
            case: Crash(OPERATIONS[case[1]], models[case], records[case], *future.result())
            for case, future in futures.items()
        }


def record_row(fault_report: FaultReport, scenario: str, lost: str) -> None:
    fault_report.add(
        ScenarioResult(
            scenario=scenario,
            sent=0,
            answered=0,
            good_failed=0,
            alias_matches_served=None,  # no gateway in these scenarios
            unvalidated_served=0,
            lost=lost,
        )
    )


@pytest.mark.parametrize("point", KILL_POINTS)
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_kill_at_each_step_then_recover_leaves_all_before_or_all_after(
    crashes: dict[tuple[str, str, str], Crash],
    fault_report: FaultReport,
    operation: str,
    point: str,
) -> None:
    crash = crashes[(RECOVER, operation, point)]
    state, lost = outcome(crash.op, crash.model, crash.records_before)
    how = "chassis recover" if operation in CLI_RECOVERS else "registry.recover"
    record_row(fault_report, f"kill -9 of {operation} at {point}, then {how}", lost)

    killed, recovered = crash.killed, crash.then
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert crash.left_intent, "the kill left no intent: the fail point fired outside the change"
    # The premise: the kill left a half-moved state (or, before the first move, none yet).
    assert crash.half_state != crash.op.before or point == "alias.after-intent"
    assert recovered.returncode == 0, recovered.stderr
    expected = "after" if point in COMMITTED_POINTS else "before"
    assert state == expected, (crash.half_state, lost)
    assert intent_tag(crash.model) is None
    if expected == "after":
        assert (
            home_registry().history(crash.model)[-1].intent
        )  # the record carries the intent token
        assert "had written its audit record: it stands" in recovered.stdout
        # The kill came before the MLflow description was rewritten; the recovery did it.
        last = home_registry().history(crash.model)[-1].sequence
        described = home_registry().client.get_registered_model(crash.model).description
        assert f"| {last} | " in (described or ""), described
    else:
        assert "undone, aliases restored" in recovered.stdout


@pytest.mark.parametrize(("operation", "point"), REPEATED)
def test_the_repeated_command_after_a_kill_does_the_change_exactly_once(
    crashes: dict[tuple[str, str, str], Crash],
    fault_report: FaultReport,
    operation: str,
    point: str,
) -> None:
    """No `recover`: the next alias command resolves the leftover intent, then does its work,
    so the user who gives the killed command again gets one change, not two."""
    crash = crashes[(REPEAT, operation, point)]
    state, lost = outcome(crash.op, crash.model, crash.records_before)
    record_row(fault_report, f"kill -9 of {operation} at {point}, then the same command", lost)

    assert crash.killed.returncode == -signal.SIGKILL, crash.killed.stderr
    # The premise: aliases moved and no audit record says so.
    assert crash.half_state != crash.op.before
    assert crash.records_at_kill == crash.records_before
    assert crash.then.returncode == 0, crash.then.stderr
    assert state == "after", lost  # done once: one record, not two rollbacks
    assert intent_tag(crash.model) is None
    recovery = home_registry().read_last_recovery(crash.model)
    assert recovery is not None and recovery["outcome"] == "undone"


def test_rollback_to_truncated_bytes_is_refused_and_nothing_moves(
    home: Path, cli_env: dict[str, str], fault_report: FaultReport
) -> None:
    op = OPERATIONS["rollback"]
    model = model_at(op.before)
    records = len(home_registry().history(model))
    onnx = stored_onnx(model, 1)
    onnx.write_bytes(onnx.read_bytes()[: onnx.stat().st_size // 2])

    refused = run(cli_env, "rollback", "--model", model)
    state, lost = outcome(op, model, records)
    fault_report.add(
        ScenarioResult(
            scenario="rollback to a version whose ONNX bytes were truncated",
            sent=0,
            answered=0,
            good_failed=0,
            alias_matches_served=None,
            unvalidated_served=0 if state == "before" else 1,
            lost=lost,
        )
    )

    assert refused.returncode == 1
    error = refused.stderr.strip().splitlines()[-1]  # Prefect's log lines come before it
    assert error.startswith(f"error: refusing to roll {model} back to v1: ")
    assert "model.onnx does not match its recorded digest" in error
    assert error.endswith("nothing was changed")
    assert state == "before", lost
    assert intent_tag(model) is None


def test_promotion_of_truncated_bytes_is_refused_and_nothing_moves(
    home: Path, cli_env: dict[str, str], fault_report: FaultReport
) -> None:
    op = OPERATIONS["promote"]
    model = model_at(op.before)
    records = len(home_registry().history(model))
    onnx = stored_onnx(model, 3)
    onnx.write_bytes(onnx.read_bytes()[: onnx.stat().st_size // 2])

    refused = run(cli_env, *op.args, "--model", model)
    state, lost = outcome(op, model, records)
    fault_report.add(
        ScenarioResult(
            scenario="promotion of a version whose ONNX bytes were truncated",
            sent=0,
            answered=0,
            good_failed=0,
            alias_matches_served=None,
            unvalidated_served=0 if state == "before" else 1,
            lost=lost,
        )
    )

    assert refused.returncode == 1
    error = refused.stderr.strip().splitlines()[-1]  # Prefect's log lines come before it
    assert error.startswith(f"error: {model} v3: model.onnx does not match its recorded digest")
    assert state == "before", lost
    assert intent_tag(model) is None


def test_rollback_to_a_version_whose_gates_failed_is_refused_and_nothing_moves(
    home: Path, cli_env: dict[str, str], fault_report: FaultReport
) -> None:
    op = OPERATIONS["rollback"]
    model = model_at(op.before)
    records = len(home_registry().history(model))
    home_registry().record_gate_report(model, 1, False, "report-of-a-failed-regate")

    refused = run(cli_env, "rollback", "--model", model)
    state, lost = outcome(op, model, records)
    fault_report.add(
        ScenarioResult(
            scenario="rollback to a version whose gate report failed",
            sent=0,
            answered=0,
            good_failed=0,
            alias_matches_served=None,
            unvalidated_served=0 if state == "before" else 1,
            lost=lost,
        )
    )

    assert refused.returncode == 1
    error = refused.stderr.strip().splitlines()[-1]  # Prefect's log lines come before it
    assert error.startswith(f"error: refusing to roll {model} back to v1: {model} v1 failed")
    assert "report-of-a-failed-regate" in error and error.endswith("nothing was changed")
    assert state == "before", lost


class Lines:
    """A subprocess's stdout, line by line, read in a thread so the test can wait for one."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert process.stdout is not None
        stream = process.stdout
        threading.Thread(target=lambda: [self.lines.put(x) for x in stream], daemon=True).start()

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.seen):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no line with {text!r} in {timeout} s: {self.seen}"
            try:
                self.seen.append(self.lines.get(timeout=remaining))
            except queue.Empty:
                continue


def test_staggered_promotions_expecting_the_same_champion_conflict_instead_of_chaining(
    home: Path, cli_env: dict[str, str], fault_report: FaultReport
) -> None:
    """B is given while v1 is champion, then stopped before its flow starts; A promotes v2
    meanwhile. B's flow starts after A finished: it must still expect v1, and conflict."""
    model = model_at({"champion": 1})
    command = [sys.executable, "-m", "chassis_cli.main", "promote", "--model", model]
    second = subprocess.Popen(
        [*command, "--version", "3"],
        env={**os.environ, **cli_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        Lines(second).wait_for(f"{model}: expecting champion v1", timeout=120)
        second.send_signal(signal.SIGSTOP)  # B has read the champion; its flow has not begun
        first = run(cli_env, "promote", "--model", model, "--version", "2")
    finally:
        second.send_signal(signal.SIGCONT)
    _, second_err = second.communicate(timeout=240)
    aliases = home_registry().current_aliases(model)
    fault_report.add(
        ScenarioResult(
            scenario="two promotions given while v1 is champion, the second run after the first",
            sent=0,
            answered=0,
            good_failed=0,
            alias_matches_served=None,
            unvalidated_served=0,
            lost="nothing" if aliases == {"champion": 2, "previous": 1} else f"chained: {aliases}",
        )
    )

    assert first.returncode == 0, first.stderr
    assert second.returncode == 1, second_err
    assert "expected v1 but found v2" in second_err
    assert aliases == {"champion": 2, "previous": 1}
    assert [r.actor for r in home_registry().history(model)][-1] != "setup"
    assert len(home_registry().history(model)) == 2  # setup's promotion of v1, then A's only


def test_a_waiter_with_a_short_wait_outwaits_the_lock_of_a_killed_holder(
    home: Path, cli_env: dict[str, str], fault_report: FaultReport
) -> None:
    """The killed promote held a 5 s lock; the rollback's own lifetime and wait are 1 s and
    1.5 s. It must wait for the lock it finds (not give up after its own 1.5 s), resolve the
    half-done promotion, then roll back from the state before it."""
    op = OPERATIONS["promote"]
    model = model_at(op.before)
    records = len(home_registry().history(model))
    killed = run(
        cli_env,
        *op.args,
        "--model",
        model,
        CHASSIS_FAILPOINTS="alias.after-move-2=kill",
        CHASSIS_LOCK_TTL_SECONDS="5",
    )

    lock = home_registry().client.get_registered_model(f"{model}{tags.LOCK_SUFFIX}")
    expires = float(lock.tags["chassis.lock_expires"])
    waited_from = time.time()
    rolled = run(cli_env, "rollback", "--model", model, CHASSIS_LOCK_TTL_SECONDS="1")
    done_at = time.time()
    aliases = home_registry().current_aliases(model)
    actions = [r.action for r in home_registry().history(model)[records:]]
    fault_report.add(
        ScenarioResult(
            scenario="kill -9 of promote holding a 5 s lock; a rollback with a 1 s lock waits",
            sent=0,
            answered=0,
            good_failed=0,
            alias_matches_served=None,
            unvalidated_served=0,
            lost="nothing" if actions == ["rollback"] else f"records {actions}, aliases {aliases}",
        )
    )

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert expires - waited_from > 1.5  # the premise: the lock outlives the waiter's own wait
    assert rolled.returncode == 0, rolled.stderr
    assert done_at > expires  # it got the lock only once the dead holder's had expired
    # The half-done promotion was undone first, so the rollback started from v2 champion.
    assert actions == ["rollback"]
    assert aliases == {"champion": 1, "challenger": 3}


def test_a_recovery_killed_midway_is_finished_by_the_next_one(
    crashes: dict[tuple[str, str, str], Crash], fault_report: FaultReport
) -> None:
    """Promote killed after its 3 moves; the recovery undoing them killed after its first
    undo; the next recovery undoes the rest: undo is idempotent."""
    crash = crashes[(RECOVER_KILLED, "promote", "alias.before-audit")]
    state, lost = outcome(crash.op, crash.model, crash.records_before)
    scenario = "kill -9 of promote at alias.before-audit, its recovery killed after one undo"
    record_row(fault_report, scenario, lost)

    assert crash.killed.returncode == -signal.SIGKILL, crash.killed.stderr
    assert crash.half_state == crash.op.after  # every alias moved, no record
    assert crash.killed_recovery is not None
    assert crash.killed_recovery.returncode == -signal.SIGKILL, crash.killed_recovery.stderr
    assert crash.then.returncode == 0, crash.then.stderr
    assert state == "before", lost
    assert intent_tag(crash.model) is None
