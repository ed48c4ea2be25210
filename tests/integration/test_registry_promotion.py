"""Alias moves against a real MLflow registry (SQLite), including real multi-process races."""

import multiprocessing
import os

import mlflow
import pytest

from chassis.aliases import PromotionConflict, RetiredChallenger
from chassis.errors import RegistryError
from tests.fixtures.registries import home_registry
from tests.fixtures.registry_versions import register_tiny_versions

MODEL = "race-model"


def make_versions(count: int, gates: tuple[str, ...] = ()) -> None:
    """Versions with real ONNX bytes (rollback verifies their sha256) and a passed gate
    report unless listed in `gates` as failed/missing."""
    register_tiny_versions(MODEL, count, gates)


@pytest.fixture
def store(chassis_home):
    return chassis_home


def promote(version, expected, reason="test"):
    return home_registry().promote(
        MODEL,
        version,
        expected_champion=expected,
        actor="user:test",
        reason=reason,
        evidence={"gate_report": f"report-{version}"},
    )


def test_promote_rollback_and_history(store):
    make_versions(3)
    promote(1, None)
    promote(2, 1)
    change = promote(3, 2, reason="better accuracy")
    assert change.aliases_after == {"champion": 3, "previous": 2}
    assert not change.noop

    again = promote(3, 2)
    assert again.noop and again.audit is None  # repeating a completed promotion

    rolled = home_registry().rollback(MODEL, actor="user:test", reason="bad canary")
    assert rolled.aliases_after == {"champion": 2, "previous": 1}
    records = home_registry().history(MODEL)
    assert [r.action for r in records] == ["promote", "promote", "promote", "rollback"]
    assert [r.sequence for r in records] == [1, 2, 3, 4]
    third = records[2]
    assert third.reason == "better accuracy" and third.actor == "user:test"
    assert {"alias": "champion", "from": 2, "to": 3} in third.moves
    assert third.evidence == {"gate_report": "report-3"}
    assert third.at.endswith("+00:00")

    # People read the same trail in the MLflow UI: the model's description, newest first.
    description = home_registry().client.get_registered_model(MODEL).description or ""
    rows = [line for line in description.splitlines() if line.startswith("| 4 |")]
    assert (
        len(rows) == 1 and "| rollback | v2 | champion: v3 → v2; previous: v2 → v1 |" in (rows[0])
    )
    assert "| 3 | " in description and "better accuracy" in description


def test_refusals_change_nothing(store):
    make_versions(4, gates=("passed", "passed", "failed", "missing"))
    promote(1, None)
    before = home_registry().current_aliases(MODEL)
    with pytest.raises(RegistryError, match="has no version 9"):
        promote(9, 1)
    with pytest.raises(RegistryError, match="failed its gates"):
        promote(3, 1)
    with pytest.raises(RegistryError, match="has no gate report"):
        promote(4, 1)
    with pytest.raises(RegistryError, match="no `previous` version"):
        home_registry().rollback(MODEL, actor="t", reason="r")
    with pytest.raises(PromotionConflict, match="expected v7 but found v1"):
        promote(2, 7)
    with pytest.raises(RegistryError, match="unknown alias 'production'"):
        home_registry().version_for_alias(MODEL, "production")
    assert home_registry().version_for_alias(MODEL, "champion") == 1
    assert home_registry().version_for_alias(MODEL, "challenger") is None
    assert home_registry().current_aliases(MODEL) == before
    assert len(home_registry().history(MODEL)) == 1


def test_failure_midway_restores_aliases(store, monkeypatch):
    make_versions(2)
    promote(1, None)

    def broken_audit(self, *args, **kwargs):
        raise OSError("disk full")

    # Fault injection: the audit write (the last step) fails after the aliases moved.
    monkeypatch.setattr(mlflow.MlflowClient, "set_registered_model_tag", broken_audit)
    with pytest.raises(RegistryError, match=r"failed midway.*disk full.*aliases were restored"):
        promote(2, 1)
    registry = home_registry()  # before undo(), which also restores CHASSIS_HOME
    monkeypatch.undo()
    assert registry.current_aliases(MODEL) == {"champion": 1}
    assert len(registry.history(MODEL)) == 1
    assert [m.name for m in registry.client.search_registered_models()] == [MODEL]


def test_a_failed_description_update_neither_undoes_nor_blocks_the_move(store, monkeypatch):
    make_versions(2)
    client = home_registry().client
    client.update_registered_model(MODEL, description="Written by a person in the UI.")
    promote(1, None)

    def broken_update(self, *args, **kwargs):
        raise OSError("registry hiccup")

    monkeypatch.setattr(mlflow.MlflowClient, "update_registered_model", broken_update)
    change = promote(2, 1, reason="second")
    assert change.aliases_after == {"champion": 2, "previous": 1}  # the move stands ...
    assert change.description_problem is not None  # ... and the caller is told
    assert "OSError: registry hiccup" in change.description_problem
    registry = home_registry()  # before undo(), which also restores CHASSIS_HOME
    monkeypatch.undo()
    assert [r.action for r in registry.history(MODEL)] == ["promote", "promote"]
    stale = registry.client.get_registered_model(MODEL).description or ""
    assert "| 1 |" in stale and "| 2 |" not in stale

    # The next audited move rewrites the whole table, the person's text kept above it.
    registry.rollback(MODEL, actor="user:test", reason="back")
    description = registry.client.get_registered_model(MODEL).description or ""
    assert description.startswith("Written by a person in the UI.\n\n### Alias history")
    assert all(f"| {n} |" in description for n in (1, 2, 3))


def _race(home: str, version: int, ready, start, results) -> None:
    os.environ["CHASSIS_HOME"] = home
    home_registry().current_aliases(MODEL)  # warm up imports and the database connection
    ready.put(version)
    start.wait()
    try:
        home_registry().promote(
            MODEL, version, expected_champion=1, actor=f"proc-{version}", reason="race"
        )
        results.put((version, "won"))
    except PromotionConflict:
        results.put((version, "conflict"))
    except Exception as error:  # reported to the test, which fails on it
        results.put((version, f"error: {type(error).__name__}: {error}"))


@pytest.mark.parametrize("round_", range(3))
def test_two_processes_racing_exactly_one_wins(store, round_):
    make_versions(3)
    promote(1, None)
    context = multiprocessing.get_context("spawn")
    ready, start, results = context.Queue(), context.Event(), context.Queue()
    workers = [
        context.Process(target=_race, args=(str(store), version, ready, start, results))
        for version in (2, 3)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=120)  # both are connected and waiting: release them together
    start.set()
    for worker in workers:
        worker.join(timeout=120)
    outcomes = dict(results.get(timeout=5) for _ in workers)
    assert sorted(outcomes.values()) == ["conflict", "won"], outcomes
    winner = next(v for v, o in outcomes.items() if o == "won")
    assert home_registry().current_aliases(MODEL) == {"champion": winner, "previous": 1}
    assert [r.actor for r in home_registry().history(MODEL)] == ["user:test", f"proc-{winner}"]
    # The lock is gone: only the model itself is registered.
    assert [m.name for m in home_registry().client.search_registered_models()] == [MODEL]


def rollback(reason="bad canary"):
    return home_registry().rollback(MODEL, actor="user:test", reason=reason)


def test_previous_never_points_at_a_version_that_was_rolled_back(store):
    make_versions(4)
    promote(1, None)
    promote(2, 1)
    promote(3, 2)
    assert rollback().aliases_after == {"champion": 2, "previous": 1}  # v3 rolled back
    promote(4, 2)
    # v4 rolled back: `previous` must not become v3, rolled back two moves ago ...
    assert rollback().aliases_after == {"champion": 2, "previous": 1}
    # ... so a second rollback goes further back, never to v3 or v4 again.
    assert rollback().aliases_after == {"champion": 1}
    with pytest.raises(RegistryError, match="no `previous` version"):
        rollback()
    actions = [r.action for r in home_registry().history(MODEL)]
    assert actions == ["promote"] * 3 + ["rollback", "promote", "rollback", "rollback"]


def set_challenger(version, **kwargs):
    return home_registry().set_challenger(
        MODEL, version, actor="user:test", reason="rollout", **kwargs
    )


def test_a_retired_challenger_needs_the_override_and_the_audit_says_it_was_used(store):
    make_versions(3)
    promote(1, None)
    set_challenger(2)
    home_registry().retire_challenger(
        MODEL, 2, actor="rollout-run", reason="canary failed at canary 50%: error rate 4%"
    )
    aliases, records = home_registry().current_aliases(MODEL), len(home_registry().history(MODEL))

    with pytest.raises(RetiredChallenger) as refused:
        set_challenger(2)
    message = str(refused.value)
    assert message.startswith("race-model v2 was retired as challenger (audit #3, ")
    assert "by rollout-run): canary failed at canary 50%: error rate 4%" in message
    assert "allow_retired=True" in message and "--allow-retired" in message
    assert "nothing was changed" in message
    # Refused: no alias moved, no audit record written.
    assert home_registry().current_aliases(MODEL) == aliases
    assert len(home_registry().history(MODEL)) == records
    retired = home_registry().retirement(MODEL, 2)
    assert retired is not None and retired.sequence == 3
    assert home_registry().retirement(MODEL, 3) is None
    set_challenger(3)  # other versions are not affected

    change = set_challenger(2, allow_retired=True)
    assert change.aliases_after == {"champion": 1, "challenger": 2}
    record = home_registry().history(MODEL)[-1]
    assert record.action == "set-challenger"
    assert record.reason == "rollout [override allow_retired: retired at audit #3]"
    assert record.evidence["override"].startswith("allow_retired: v2 was retired as challenger")
    # Promoted to champion after a new rollout: judged afresh, no longer retired.
    promote(2, 1)
    assert home_registry().retirement(MODEL, 2) is None


def test_a_retired_challenger_does_not_stay_previous(store):
    make_versions(2)
    promote(1, None)
    promote(2, 1)
    set_challenger(1)  # the previous champion, tried again as a challenger, and retired
    home_registry().retire_challenger(MODEL, 1, actor="rollout-run", reason="p99 regression")
    assert home_registry().current_aliases(MODEL) == {"champion": 2}
    with pytest.raises(RegistryError, match="no `previous` version"):
        rollback()
