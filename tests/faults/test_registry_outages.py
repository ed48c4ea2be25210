"""The registry down, a champion that does not verify: the gateway keeps serving what it
verified, says why, and never serves what it could not verify.

A real `mlflow server` stands in front of the SQLite store the releases wrote, so stopping it
is a real registry outage for the gateway (connection refused), as a team would see it.
"""

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from chassis.errors import RegistryError
from chassis.registry import Registry, tags
from chassis.settings import ChassisSettings
from flows.release import release
from tests.fixtures.fault_report import ScenarioResult
from tests.fixtures.gateway import MODEL, GatewayProcess
from tests.fixtures.mlflow_server import MlflowServer

ROW = [0.5, -1.0, 2.0, 0.0]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """v1 champion and v2 (gated) challenger, in a SQLite store."""
    home = tmp_path_factory.mktemp("faults-registry") / "chassis"
    previous = os.environ.get("CHASSIS_HOME")
    os.environ["CHASSIS_HOME"] = str(home)
    try:
        release(spec="tests.fixtures.specs:good", seed=0, compression="off")
        release(
            spec="tests.fixtures.specs:good", seed=1, rollout_strategy="none", compression="off"
        )
    finally:
        if previous is None:
            os.environ.pop("CHASSIS_HOME", None)
        else:
            os.environ["CHASSIS_HOME"] = previous
    yield home


@pytest.fixture(scope="module")
def server(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(
        ["--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}"],
        {},
        tmp_path_factory.mktemp("mlflow-server") / "server.log",
    )
    server.start()
    yield server
    server.stop()


def store(home: Path) -> Registry:
    """This process talks to the SQLite store directly (up whatever the server does)."""
    return Registry.from_settings(ChassisSettings(home=home))


def readyz(gateway: GatewayProcess) -> httpx.Response:
    return httpx.get(f"{gateway.url}/readyz", timeout=5)


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


def predict(gateway: GatewayProcess) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/models/{MODEL}/predict", json={"instances": [ROW]}, timeout=10
    )


def stored_onnx(home: Path, version: int) -> Path:
    registry = store(home)
    return Path(registry.version_artifact_uri(MODEL, version)[len("file://") :]) / "model.onnx"


def test_registry_down_at_start_says_unreachable_then_serves_when_it_returns(
    home, server, tmp_path, fault_report
):
    server.stop()
    gateway = GatewayProcess(
        home,
        env={
            "CHASSIS_TRACKING_URI": server.url,
            "CHASSIS_GATEWAY_LOCAL_DIR": str(tmp_path / "replica"),  # nothing cached yet
        },
    )
    gateway.launch()
    try:
        wait_for(lambda: "registry unreachable" in readyz(gateway).text, 60, "the reason")
        down = readyz(gateway)
        refused = predict(gateway)
        server.start()
        wait_for(lambda: readyz(gateway).status_code == 200, 90, "ready after the outage")
        served = [predict(gateway) for _ in range(20)]
    finally:
        gateway.stop()
        if server.process is None or server.process.poll() is not None:
            server.start()
    fault_report.add(
        ScenarioResult(
            "registry down when the gateway starts, back later",
            sent=21,
            answered=21,
            good_failed=sum(r.status_code != 200 for r in served),
            alias_matches_served=all(r.json()["version"] == 1 for r in served),
            unvalidated_served=0,
            lost="nothing",
        )
    )
    assert down.status_code == 503
    assert "no registered model" not in down.text  # the old, wrong reason
    assert refused.status_code == 503 and "registry unreachable" in refused.json()["error"]
    assert [r.status_code for r in served] == [200] * 20
    assert {r.json()["version"] for r in served} == {1}


def test_restart_during_an_outage_serves_the_verified_local_copy(
    home, server, tmp_path, fault_report
):
    local = tmp_path / "replica"
    env = {"CHASSIS_TRACKING_URI": server.url, "CHASSIS_GATEWAY_LOCAL_DIR": str(local)}
    first = GatewayProcess(home, env=env)
    first.start()  # verifies v1 from the registry and keeps the copy
    first.stop()
    server.stop()
    try:
        second = GatewayProcess(home, env=env)
        second.start()
        try:
            reason = readyz(second).json()["reason"]
            during = [predict(second) for _ in range(20)]
            server.start()
            wait_for(lambda: readyz(second).json()["reason"] == "ready", 60, "the note to clear")
        finally:
            second.stop()
        # A local copy changed on disk is refused like a tampered artifact.
        copy = next(local.rglob("model.onnx"))
        copy.write_bytes(copy.read_bytes()[:-8] + b"tampered")
        server.stop()
        third = GatewayProcess(home, env=env)
        third.launch()
        try:
            wait_for(lambda: "local copy changed" in readyz(third).text, 60, "the refusal")
            refused = predict(third)
        finally:
            third.stop()
    finally:
        if server.process is None or server.process.poll() is not None:
            server.start()
    fault_report.add(
        ScenarioResult(
            "gateway restarted while the registry is down",
            sent=21,
            answered=21,
            good_failed=sum(r.status_code != 200 for r in during),
            alias_matches_served=all(r.json()["version"] == 1 for r in during),
            unvalidated_served=int(refused.status_code == 200),
            lost="nothing",
        )
    )
    assert "registry unreachable" in reason and "verified local copy of v1" in reason
    assert [r.status_code for r in during] == [200] * 20
    assert {r.json()["version"] for r in during} == {1}
    assert refused.status_code == 503


def test_a_tampered_champion_falls_back_to_the_previous_version_and_says_so(
    home, server, tmp_path, fault_report
):
    registry = store(home)
    registry.promote(MODEL, 2, expected_champion=1, actor="fault-test", reason="set up")
    stored = stored_onnx(home, 2)
    original = stored.read_bytes()
    stored.write_bytes(original[:-8] + b"tampered")
    gateway = GatewayProcess(
        home,
        env={
            "CHASSIS_TRACKING_URI": server.url,
            "CHASSIS_GATEWAY_LOCAL_DIR": str(tmp_path / "replica"),
        },
    )
    try:
        gateway.start()
        try:
            status = readyz(gateway).json()
            answers = [predict(gateway) for _ in range(20)]
            metrics = httpx.get(f"{gateway.url}/metrics").text
        finally:
            gateway.stop()
    finally:
        stored.write_bytes(original)
        registry = store(home)
        registry.rollback(MODEL, actor="fault-test", reason="tear down")
    fault_report.add(
        ScenarioResult(
            "champion's stored bytes tampered at gateway start",
            sent=20,
            answered=20,
            good_failed=sum(r.status_code != 200 for r in answers),
            alias_matches_served=False,  # by design: the alias names what cannot be served
            unvalidated_served=sum(r.json().get("version") == 2 for r in answers),
            lost="nothing; alias and served version differ, shown on /readyz and metrics",
        )
    )
    assert {r.json()["version"] for r in answers} == {1}
    mismatch = status["champion_mismatch"][MODEL]
    assert mismatch["champion"] == 2 and mismatch["served"] == 1
    assert "does not match its recorded digest" in mismatch["why"]
    assert f'chassis_champion_mismatch{{champion="2",model="{MODEL}",served="1"}} 1.0' in metrics


@pytest.mark.parametrize(
    ("forged", "why"),
    [(False, "failed its gates"), (True, "do not match their signature")],
    ids=["failed-gates", "verdict-tag-forged"],
)
def test_a_champion_set_by_hand_that_did_not_pass_its_gates_is_never_served(
    home, server, tmp_path, fault_report, forged, why
):
    gateway = GatewayProcess(
        home,
        env={
            "CHASSIS_TRACKING_URI": server.url,
            "CHASSIS_GATEWAY_LOCAL_DIR": str(tmp_path / "replica"),
        },
    )
    gateway.start()
    registry = store(home)
    registry.record_gate_report(MODEL, 2, False, "fault test: failed on purpose")
    client = registry.client
    try:
        if forged:
            # Anyone with registry write access can edit a tag; only the signature says
            # who wrote the verdict.
            client.set_model_version_tag(MODEL, "2", tags.TAG_GATES, "passed")
            with pytest.raises(RegistryError, match=why):
                registry.promote(MODEL, 2, expected_champion=1, actor="fault", reason="forged")
        client.set_registered_model_alias(MODEL, "champion", "2")  # by hand, no checks
        wait_for(lambda: MODEL in readyz(gateway).json()["champion_mismatch"], 30, "the mismatch")
        status = readyz(gateway).json()
        answers = [predict(gateway) for _ in range(50)]
    finally:
        client.set_registered_model_alias(MODEL, "champion", "1")
        registry.record_gate_report(MODEL, 2, True, "fault test: restored")
        gateway.stop()
    fault_report.add(
        ScenarioResult(
            "champion set by hand to a version whose gate verdict "
            + ("was forged in its tags" if forged else "is failed"),
            sent=50,
            answered=50,
            good_failed=sum(r.status_code != 200 for r in answers),
            alias_matches_served=False,  # by design, and said on /readyz and in metrics
            unvalidated_served=sum(r.json().get("version") == 2 for r in answers),
            lost="nothing; the mismatch is reported",
        )
    )
    assert status["ready"] is True
    assert status["champion_mismatch"][MODEL]["served"] == 1
    assert why in status["champion_mismatch"][MODEL]["why"]
    assert {r.json()["version"] for r in answers} == {1}


def test_artifact_store_down_restarts_from_verified_copies_and_new_replicas_wait(
    home, server, tmp_path, fault_report
):
    """The artifact store (here the store's folder, moved away) down while the registry
    answers: a replica that verified v1 before restarts from its copy, checked against the
    registry's signed digest; a new replica has nothing to serve and says why until the
    store is back."""
    artifacts = home / "artifacts"  # the embedded default's artifact store
    assert stored_onnx(home, 1).is_relative_to(artifacts)
    warm_env = {
        "CHASSIS_TRACKING_URI": server.url,
        "CHASSIS_GATEWAY_LOCAL_DIR": str(tmp_path / "a"),
    }
    cold_env = {
        "CHASSIS_TRACKING_URI": server.url,
        "CHASSIS_GATEWAY_LOCAL_DIR": str(tmp_path / "b"),
    }
    warm = GatewayProcess(home, env=warm_env)
    warm.start()
    warm.stop()
    away = artifacts.with_name(artifacts.name + ".away")
    artifacts.rename(away)
    cold = GatewayProcess(home, env=cold_env)
    try:
        warm = GatewayProcess(home, env=warm_env)
        warm.start()
        cold.launch()
        try:
            answers = [predict(warm) for _ in range(20)]
            wait_for(lambda: "retrying" in readyz(cold).text, 60, "the new replica's reason")
            waiting = readyz(cold)
        finally:
            warm.stop()
        away.rename(artifacts)
        wait_for(lambda: readyz(cold).status_code == 200, 90, "the new replica after the outage")
        after = [predict(cold) for _ in range(20)]
    finally:
        cold.stop()
        if away.exists():
            away.rename(artifacts)
    fault_report.add(
        ScenarioResult(
            "artifact store down: restart from verified copies, new replica waits",
            sent=40,
            answered=40,
            good_failed=sum(r.status_code != 200 for r in answers + after),
            alias_matches_served=all(r.json()["version"] == 1 for r in answers + after),
            unvalidated_served=0,
            lost="nothing",
        )
    )
    assert [r.status_code for r in answers] == [200] * 20
    assert waiting.status_code == 503
    assert [r.status_code for r in after] == [200] * 20
    assert {r.json()["version"] for r in answers + after} == {1}


def test_a_leased_split_ends_on_time_while_the_registry_is_down(
    home, server, tmp_path, fault_report
):
    """The rollout's owner and the registry both gone: the replica ends the orphaned split
    at the lease's end from its own copy of it (it cannot read the record)."""
    import dataclasses

    from chassis.rollout import lease
    from chassis.rollout.record import RolloutRecord

    registry = store(home)
    current = registry.read_rollout_record(MODEL)
    generation = current.generation if current is not None else 0
    split = RolloutRecord(generation=0, mode="canary", stable_version=1, candidate_version=2)
    leased = lease.granted(
        dataclasses.replace(split, percent=50.0), "fault-test run (gone)", 20.0, time.time()
    )
    written = registry.write_rollout_record(MODEL, leased, generation, actor="fault-test")
    ends = lease.expires_at(written)
    assert ends is not None
    gateway = GatewayProcess(
        home,
        env={
            "CHASSIS_TRACKING_URI": server.url,
            "CHASSIS_GATEWAY_LOCAL_DIR": str(tmp_path / "replica"),
        },
    )
    try:
        gateway.start()
        during = [predict(gateway).json()["version"] for _ in range(40)]
        server.stop()
        wait_for(lambda: time.time() > ends + 3, 60, "the lease to end")  # + one follow pass
        after = [predict(gateway) for _ in range(50)]
    finally:
        gateway.stop()
        if server.process is None or server.process.poll() is not None:
            server.start()
    fault_report.add(
        ScenarioResult(
            "rollout owner gone and registry down: the lease still ends the split",
            sent=90,
            answered=90,
            good_failed=sum(r.status_code != 200 for r in after),
            alias_matches_served=all(r.json()["version"] == 1 for r in after),
            unvalidated_served=0,
            lost="nothing",
        )
    )
    assert 2 in during  # the split was served while its lease held
    assert [r.status_code for r in after] == [200] * 50
    assert {r.json()["version"] for r in after} == {1}
