"""Rollout flows against a real gateway process over HTTP and a real MLflow registry."""

import os
import re
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterName,
    FlowRunFilterParentFlowRunId,
)

import tasks.rollout
from chassis.errors import ChassisError, GatesFailed, RolloutFailed, RolloutPaused
from chassis.mlflow_links import MlflowLinks
from chassis.registry import tags
from chassis.rollout.policy import RolloutPolicy
from chassis.serving.client import GatewayClient
from chassis.settings import ChassisSettings
from flows.release import release
from flows.rollout import rollout
from tests.fixtures.gateway import MODEL, GatewayProcess
from tests.fixtures.registries import home_registry
from tests.integration.test_training_flow import latest_artifact

# Default statistics; fewer steps so each test stays short.
FAST = RolloutPolicy(steps=[50, 100], step_seconds=15, max_extensions=1)


@pytest.fixture
def two_versions(chassis_home):
    release(spec="tests.fixtures.specs:good", seed=0, compression="off")  # v1 champion
    release(
        spec="tests.fixtures.specs:good", seed=1, rollout_strategy="none", compression="off"
    )  # v2
    return chassis_home


def test_good_canary_is_promoted(two_versions, tmp_path):
    outcome = rollout(model_name=MODEL, version=2, policy=FAST, drive_traffic="always")
    assert outcome.promoted
    assert [r["step"] for r in outcome.steps if r["check"] == "error rate limit"] == [
        "shadow",
        "canary 50%",
        "canary 100%",
    ]
    assert home_registry().current_aliases(MODEL) == {"champion": 2, "previous": 1}
    last = home_registry().history(MODEL)[-1]
    assert last.action == "promote" and "canary rollout passed 3 step(s)" in last.reason
    assert set(outcome.traffic) == {"200"}
    decision = latest_artifact("rollout-decision-test-blobs").data
    assert "PROMOTED" in decision
    # The steps' plot: a PNG with the version's MLflow run, embedded in the decision by the
    # URL the tracking server serves it from.
    client = home_registry().client
    run_id = home_registry().version_run_id(MODEL, 2)
    (stored,) = [a.path for a in client.list_artifacts(run_id, "rollout")]
    assert re.fullmatch(r"rollout/v2-\d{8}T\d{6}Z\.png", stored), stored
    png = Path(client.download_artifacts(run_id, stored, str(tmp_path)))
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    image = MlflowLinks.of(ChassisSettings()).artifact_file(run_id, stored)
    assert f"![Rollout of test-blobs v2, step by step]({image})" in decision


def test_wrong_predictions_are_rolled_back_with_no_stable_errors(chassis_home):
    release(spec="tests.fixtures.specs:good", seed=0, compression="off")
    with pytest.raises(GatesFailed):
        # v2: registered, gates failed
        release(spec="tests.fixtures.specs:sloppy", rollout_strategy="none", compression="off")
    # Suppose it had slipped past the offline gates: the live analysis must still stop it.
    home_registry().record_gate_report(MODEL, 2, True, "test: forced past the offline gates")
    gateway = GatewayProcess(chassis_home)
    gateway.start()
    try:
        with pytest.raises(RolloutFailed, match="failed at shadow: agreement with stable"):
            rollout(
                model_name=MODEL,
                version=2,
                policy=FAST,
                drive_traffic="always",
                gateway_url=gateway.url,
            )
        status = GatewayClient(gateway.url, ChassisSettings().admin_token()).status(MODEL)
        assert status["state"]["mode"] == "stable" and status["state"]["candidate_version"] is None
        assert status["stats"]["1"]["errors"] == 0
    finally:
        gateway.stop()
    assert home_registry().current_aliases(MODEL) == {"champion": 1}
    retired = home_registry().history(MODEL)[-1]
    assert retired.action == "retire-challenger" and "agreement with stable" in retired.reason
    assert "ROLLED BACK" in latest_artifact("rollout-decision-test-blobs").data


def test_slow_candidate_fails_its_latency_budget(two_versions):
    slow = FAST.model_copy(update={"steps": [100.0], "shadow_first": False, "p99_budget_ms": 0.001})
    with pytest.raises(RolloutFailed, match="canary 100%: p99 latency budget"):
        rollout(model_name=MODEL, version=2, policy=slow, drive_traffic="always")
    assert home_registry().current_aliases(MODEL) == {"champion": 1}


def test_too_little_traffic_pauses_and_keeps_the_challenger(two_versions, monkeypatch):
    # A plot that cannot be drawn is a warning: the decision stands and is published.
    def broken(*args, **kwargs):
        raise RuntimeError("no plot today")

    monkeypatch.setattr(tasks.rollout, "rollout_figure", broken)
    quiet = FAST.model_copy(update={"steps": [100.0], "step_seconds": 1.0})
    with pytest.raises(RolloutPaused, match="Too little traffic"):
        rollout(model_name=MODEL, version=2, policy=quiet, drive_traffic="never")
    # Nothing against the candidate was seen: it keeps its alias, the champion its traffic.
    assert home_registry().current_aliases(MODEL) == {"champion": 1, "challenger": 2}
    decision = latest_artifact("rollout-decision-test-blobs").data
    assert "PAUSED" in decision and "## Step by step" not in decision
    assert (
        home_registry().client.list_artifacts(home_registry().version_run_id(MODEL, 2), "rollout")
        == []
    )


def test_a_copy_of_the_champion_is_promoted(chassis_home):
    release(spec="tests.fixtures.specs:good", seed=0, compression="off")
    copy = home_registry().register_copy(MODEL, 1, "A/A test")
    outcome = rollout(model_name=MODEL, version=copy, policy=FAST, drive_traffic="always")
    assert outcome.promoted
    agreement = [r for r in outcome.steps if r["check"] == "agreement with stable"]
    assert len(agreement) == 3 and all(r["observed"].startswith("1.0000") for r in agreement)


def test_without_shadow_a_disagreeing_candidate_is_caught_on_mirrored_canary_traffic(
    chassis_home,
):
    release(spec="tests.fixtures.specs:good", seed=0, compression="off")
    with pytest.raises(GatesFailed):
        release(spec="tests.fixtures.specs:sloppy", rollout_strategy="none", compression="off")
    home_registry().record_gate_report(MODEL, 2, True, "test: forced past the offline gates")
    no_shadow = FAST.model_copy(update={"shadow_first": False})
    with pytest.raises(RolloutFailed, match="failed at canary 50%: agreement with stable"):
        rollout(model_name=MODEL, version=2, policy=no_shadow, drive_traffic="always")
    assert home_registry().current_aliases(MODEL) == {"champion": 1}


@pytest.fixture
def slow_challenger(chassis_home):
    release(spec="tests.fixtures.specs:good", seed=0, compression="off")
    with pytest.raises(GatesFailed, match="model CPU p50 vs champion"):
        release(spec="tests.fixtures.specs:slow", rollout_strategy="none", compression="off")
    # Correct answers, many times slower: the offline gates stop it; had it slipped past
    # them, the live analysis must stop it on its own.
    home_registry().record_gate_report(MODEL, 2, True, "test: forced past the offline gates")
    return chassis_home


def test_a_slower_canary_is_halved_then_rolled_back(slow_challenger):
    # The budget far away: this is about the comparison with stable, not the budget.
    policy = FAST.model_copy(
        update={"steps": [20.0, 100.0], "shadow_first": False, "p99_budget_ms": 5000.0}
    )
    with pytest.raises(RolloutFailed, match=r"latency vs stable.*minimum share 5"):
        rollout(model_name=MODEL, version=2, policy=policy, drive_traffic="always")
    steps = [a["step"] for a in latest_artifact_rows("rollout-steps-test-blobs")]
    assert steps[0] == "canary 20%" and "canary 10%" in steps and "canary 5%" in steps
    assert home_registry().current_aliases(MODEL) == {"champion": 1}


def test_blue_green_does_not_switch_to_a_slower_color(slow_challenger):
    with pytest.raises(RolloutFailed, match=r"blue-green preview: .*latency vs stable"):
        rollout(
            model_name=MODEL,
            version=2,
            strategy="blue-green",
            policy=FAST.model_copy(update={"p99_budget_ms": 5000.0}),
        )
    assert home_registry().current_aliases(MODEL) == {"champion": 1}


def latest_artifact_rows(key: str) -> list[dict[str, str]]:
    import json

    return json.loads(latest_artifact(key).data)


def test_blue_green_switches_and_promotes(two_versions):
    outcome = rollout(
        model_name=MODEL, version=2, strategy="blue-green", policy=FAST, drive_traffic="always"
    )
    assert outcome.promoted
    assert home_registry().current_aliases(MODEL) == {"champion": 2, "previous": 1}


def test_gateway_restart_in_the_middle_of_a_rollout(two_versions):
    gateway = GatewayProcess(two_versions)
    gateway.start()
    slow_steps = FAST.model_copy(
        update={"shadow_first": False, "min_requests": 3000, "step_seconds": 40}
    )
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["outcome"] = rollout(
                model_name=MODEL,
                version=2,
                policy=slow_steps,
                drive_traffic="always",
                gateway_url=gateway.url,
            )
        except Exception as error:  # reported by the assertions below
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    client = GatewayClient(gateway.url, ChassisSettings().admin_token())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait for the first committed canary step
        try:
            if client.status(MODEL)["state"]["mode"] == "canary":
                break
        except Exception:
            pass
        time.sleep(0.2)
    else:
        raise AssertionError("no canary step committed within 60 s")
    gateway.stop()
    state_file = two_versions / "gateway" / "state" / f"{MODEL}.rollout.json"
    assert '"candidate_version": 2' in state_file.read_text()
    gateway.start()  # comes back at the committed split, and the flow keeps watching
    thread.join(timeout=180)
    try:
        assert "error" not in result, result.get("error")
        assert result["outcome"].promoted
        assert client.status(MODEL)["state"]["stable_version"] == 2
    finally:
        gateway.stop()
    assert home_registry().current_aliases(MODEL) == {"champion": 2, "previous": 1}
    assert os.environ["CHASSIS_HOME"] == str(two_versions)


def release_run_ids(client: Any, run_id: UUID) -> list[UUID]:
    """A flow run and every subflow run under it, however deep."""
    found, frontier = [run_id], [run_id]
    while frontier:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=frontier)
            )
        )
        frontier = [child.id for child in children]
        found += frontier
    return found


def test_release_rolls_a_challenger_out_on_the_embedded_default(chassis_home):
    first = release(spec="tests.fixtures.specs:good", seed=0, compression="off")
    assert first.rollout is None  # the first version has no champion to be compared with
    second = release(
        spec="tests.fixtures.specs:good", seed=1, rollout_policy=FAST, compression="off"
    )
    assert second.rollout is not None and second.rollout.promoted
    assert set(second.rollout.traffic) == {"200"}  # driven through a gateway of its own
    assert home_registry().current_aliases(MODEL) == {"champion": 2, "previous": 1}
    summary = latest_artifact("release-summary-test-blobs")
    # The steps in the order they ran, the aliases the release ended with, no Python dict.
    assert "promoted to champion after shadow, canary 50%, canary 100%" in summary.data
    assert "v2 is @champion (@previous: v1)" in summary.data
    assert "@challenger" not in summary.data and "{" not in summary.data
    assert summary.description == "Release of test-blobs v2"
    # One key per model and kind: the second release added to the keys' histories.
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(second.prefect_flow_run_url.rsplit("/", 1)[1]))
        # This release's artifacts only: the Prefect server is shared by the whole session
        # and lists a page of everyone's.
        made = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=release_run_ids(client, run.id)))
        )
        keys = {a.key for a in made if a.key}
        assert not [k for k in keys if re.search(r"-v\d+(-|$)", k)], keys
        assert {"rollout-steps-test-blobs", "rollout-decision-test-blobs"} <= keys
        summaries = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[summary.key or ""]))
        )
        assert len(summaries) >= 2
        # Run names say what ran on which model and version.
        assert run.name == "release test-blobs v2"
        (staged,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]),
                name=FlowRunFilterName(any_=["rollout test-blobs v2"]),
            )
        )
        steps = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[staged.id]))
        )
    assert {"shadow test-blobs v2", "canary 50% test-blobs v2", "canary 100% test-blobs v2"} <= {
        t.name for t in steps
    }


def test_an_unreachable_replica_is_refused_with_nothing_changed(two_versions):
    before = home_registry().current_aliases(MODEL)
    with pytest.raises(ChassisError, match=r"1 of 1 replica\(s\) cannot roll out.*unreachable"):
        rollout(model_name=MODEL, version=2, policy=FAST, replicas=["http://127.0.0.1:9"])
    assert home_registry().current_aliases(MODEL) == before
    assert [r.action for r in home_registry().history(MODEL)][
        -1
    ] == "set-challenger"  # the release's
    assert home_registry().read_rollout_record(MODEL) is None


def test_a_rollout_record_from_a_newer_chassis_is_refused_and_the_gateway_keeps_serving(
    two_versions,
):

    from chassis.errors import RecordError
    from chassis.rollout.record import SCHEMA

    newer = (
        f'{{"schema":{SCHEMA + 1},"generation":4,"mode":"canary",'
        '"stable_version":1,"candidate_version":2,"percent":50,"mirror_percent":0}'
    )
    home_registry().client.set_registered_model_tag(MODEL, tags.TAG_ROLLOUT_RECORD, newer)
    before = home_registry().current_aliases(MODEL)
    gateway = GatewayProcess(two_versions)
    gateway.start()
    try:
        client = GatewayClient(gateway.url, ChassisSettings().admin_token())
        status = client.sync(MODEL)
        assert status["state"]["stable_version"] == 1 and status["state"]["mode"] == "stable"
        assert f"record schema {SCHEMA + 1}" in status["record_error"]
        with pytest.raises(RecordError, match="written by a newer Chassis"):
            rollout(model_name=MODEL, version=2, policy=FAST, gateway_url=gateway.url)
        assert home_registry().current_aliases(MODEL) == before
        assert client.status(MODEL)["state"]["candidate_version"] is None
    finally:
        gateway.stop()


def test_a_retired_challenger_needs_the_override_to_be_rolled_out_again(two_versions):
    from chassis.errors import RetiredChallenger

    strict = FAST.model_copy(
        update={"steps": [100.0], "shadow_first": False, "p99_budget_ms": 0.001}
    )
    with pytest.raises(RolloutFailed):
        rollout(model_name=MODEL, version=2, policy=strict, drive_traffic="always")
    with pytest.raises(RetiredChallenger, match="retired"):
        rollout(model_name=MODEL, version=2, policy=FAST, drive_traffic="always")
    assert home_registry().current_aliases(MODEL) == {"champion": 1}
    outcome = rollout(
        model_name=MODEL, version=2, policy=FAST, drive_traffic="always", allow_retired=True
    )
    assert outcome.promoted
    override = [r for r in home_registry().history(MODEL) if r.action == "set-challenger"][-1]
    assert "override allow_retired" in override.reason and "override" in override.evidence


def test_a_candidate_failing_five_percent_of_requests_is_rolled_back(chassis_home):
    import threading

    from chassis.traffic import replay
    from tests.fixtures import specs

    release(spec="tests.fixtures.specs:good", seed=0, compression="off")
    release(
        spec="tests.fixtures.specs:fails_on_outliers", rollout_strategy="none", compression="off"
    )
    assert (
        home_registry().version_tags(MODEL, 2)["chassis.gates"] == "passed"
    )  # nothing offline saw it
    rows = specs.blob_traffic(seed=4)
    rows[::20, 0] = 1e6  # 5 % of requests carry an outlier that only v2 fails on
    gateway = GatewayProcess(chassis_home)
    gateway.start()
    stop = threading.Event()
    users = threading.Thread(
        target=replay,
        args=(gateway.url, MODEL, rows),
        kwargs={"max_requests": 10**7, "max_seconds": 300, "concurrency": 4, "stop": stop},
    )
    users.start()
    try:
        with pytest.raises(RolloutFailed, match="failed at shadow: error rate"):
            rollout(model_name=MODEL, version=2, policy=FAST, gateway_url=gateway.url)
        status = GatewayClient(gateway.url, ChassisSettings().admin_token()).status(MODEL)
        assert status["stats"]["1"]["errors"] == 0
    finally:
        stop.set()
        users.join(timeout=30)
        gateway.stop()
    assert home_registry().current_aliases(MODEL) == {"champion": 1}


def test_after_a_blue_green_promotion_a_rollback_is_followed_at_once(two_versions):
    gateway = GatewayProcess(two_versions)  # follows the registry every second
    gateway.start()
    try:
        outcome = rollout(
            model_name=MODEL,
            version=2,
            strategy="blue-green",
            policy=FAST,
            drive_traffic="always",
            gateway_url=gateway.url,
        )
        assert outcome.promoted
        client = GatewayClient(gateway.url, ChassisSettings().admin_token())
        state = client.status(MODEL)["state"]
        assert (state["stable_version"], state["warm_version"]) == (2, 1)  # old color warm
        home_registry().rollback(MODEL, actor="test", reason="bad news from users")
        deadline = time.monotonic() + 30
        while client.status(MODEL)["state"]["stable_version"] != 1:
            assert time.monotonic() < deadline, "the gateway did not follow the rollback"
            time.sleep(0.2)
    finally:
        gateway.stop()


def test_a_gateway_that_serves_other_models_is_never_driven(two_versions, monkeypatch):
    release(spec="tests.fixtures.specs:other", seed=0, compression="off")
    users_gateway = GatewayProcess(two_versions, models=("test-other",))
    users_gateway.start()
    try:
        before = home_registry().current_aliases(MODEL)
        # Named explicitly: refused before anything moves.
        with pytest.raises(ChassisError, match=r"cannot roll out test-blobs: .*404"):
            rollout(model_name=MODEL, version=2, policy=FAST, gateway_url=users_gateway.url)
        assert home_registry().current_aliases(MODEL) == before
        assert home_registry().read_rollout_record(MODEL) is None
        # Configured as the default gateway: the run starts a gateway of its own instead.
        monkeypatch.setenv("CHASSIS_GATEWAY_URL", users_gateway.url)
        outcome = rollout(model_name=MODEL, version=2, policy=FAST)
        assert outcome.promoted and set(outcome.traffic) == {"200"}
        status = GatewayClient(users_gateway.url, ChassisSettings().admin_token())
        assert status.status("test-other")["state"]["stable_version"] == 1  # untouched
    finally:
        users_gateway.stop()
