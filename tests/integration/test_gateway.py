"""The gateway as a real process over HTTP, serving versions from a real MLflow registry."""

import concurrent.futures
import os
import time
from collections.abc import Iterator

import httpx
import pytest

from chassis.registry import Registry
from chassis.registry.tags import TAG_ACCURACY_GATE
from chassis.settings import ChassisSettings
from flows.release import release
from tests.fixtures import specs
from tests.fixtures.gateway import MODEL, GatewayProcess

ROW = [0.5, -1.0, 2.0, 0.0]
FEEDBACK_WINDOW = 64  # requests a prediction stays open to feedback in this module's gateway


@pytest.fixture(scope="module")
def gateway_of_two_versions(tmp_path_factory) -> Iterator[tuple[GatewayProcess, dict[str, str]]]:
    """v1 champion and v2 challenger (both gated), and a gateway serving them: one for the
    module, as starting it takes seconds."""
    home = tmp_path_factory.mktemp("gateway") / "chassis"
    previous = os.environ.get("CHASSIS_HOME")
    os.environ["CHASSIS_HOME"] = str(home)
    try:
        release(spec="tests.fixtures.specs:good", seed=0, compression="off")
        release(
            spec="tests.fixtures.specs:good", seed=1, rollout_strategy="none", compression="off"
        )
        token = ChassisSettings().admin_token()
    finally:
        if previous is not None:
            os.environ["CHASSIS_HOME"] = previous
    # JSON lines here (text, the default, in test_serve_startup): the log is read below. A
    # short feedback window, so a test can push a prediction out of it.
    gateway = GatewayProcess(
        home,
        env={
            "CHASSIS_GATEWAY_LOG_FORMAT": "json",
            "CHASSIS_GATEWAY_FEEDBACK_WINDOW_REQUESTS": str(FEEDBACK_WINDOW),
        },
    )
    gateway.start()
    yield gateway, {"Authorization": f"Bearer {token}"}
    gateway.stop()


@pytest.fixture
def served(gateway_of_two_versions) -> Iterator[tuple[GatewayProcess, dict[str, str]]]:
    """The module's gateway, handed back as every test finds it: running, serving v1 alone
    with no split, and fresh stats. (A test that changes the registry restores it itself.)"""
    yield gateway_of_two_versions
    back_to_v1_alone(*gateway_of_two_versions)


def admin_state(gateway: GatewayProcess, auth: dict[str, str]) -> dict:
    answer = httpx.get(f"{gateway.url}/admin/models/{MODEL}", headers=auth, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["state"]


def back_to_v1_alone(gateway: GatewayProcess, auth: dict[str, str]) -> None:
    if gateway.process is None or gateway.process.poll() is not None:
        gateway.start()  # a test stopped it and failed before starting it again
    deadline = time.monotonic() + 30
    while (state := admin_state(gateway, auth))["stable_version"] != 1 or state["mode"] != "stable":
        assert time.monotonic() < deadline, f"the gateway did not return to v1 alone: {state}"
        if state["mode"] != "stable" or state["warm_version"] is not None:
            # Candidate traffic to 0; after a blue-green switch, back to the warm color.
            httpx.post(f"{gateway.url}/admin/models/{MODEL}/rollback", headers=auth, timeout=10)
        else:
            time.sleep(0.2)  # poll: stable on another version, it follows the champion back
    assert state["candidate_version"] is None, state
    reset = httpx.post(f"{gateway.url}/admin/models/{MODEL}/reset-stats", headers=auth, timeout=10)
    assert reset.status_code == 200, reset.text


def predict(url: str, rows: list, key: str | None = None) -> httpx.Response:
    headers = {"x-request-key": key} if key else {}
    return httpx.post(
        f"{url}/v1/models/{MODEL}/predict", json={"instances": rows}, headers=headers, timeout=10
    )


def admin_status(gateway: GatewayProcess, auth: dict[str, str]) -> dict:
    answer = httpx.get(f"{gateway.url}/admin/models/{MODEL}", headers=auth, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_start_up_is_logged_with_the_versions_served_and_their_digests(served):
    gateway, auth = served
    status = admin_status(gateway, auth)
    [serving, *_] = gateway.events("model.serving")  # the first start's
    assert (serving["model"], serving["mode"], serving["stable"]) == (MODEL, "stable", 1)
    assert serving["stable_sha256"] == status["sha256"]["1"]
    assert serving["generation"] == status["generation"]
    [started, *_] = gateway.events("gateway.started")
    assert started["listen"] == [gateway.url] and started["models"] == [MODEL]
    assert started["serving"] == [MODEL] and started["ready"] is True
    assert started["access_log"] is False
    # uvicorn's own lines come out in the same form, not in a second style.
    [running] = [e for e in gateway.events("log") if "Uvicorn running" in str(e["message"])][:1]
    assert running["logger"] == "uvicorn.error" and running["level"] == "info"


def test_predicts_with_the_champion_and_reports_the_version(served):
    gateway, auth = served
    response = predict(gateway.url, [ROW, ROW])
    assert response.status_code == 200
    assert response.headers["x-model-version"] == "1"
    body = response.json()
    assert body["version"] == 1 and len(body["predictions"]) == 2
    assert httpx.get(f"{gateway.url}/healthz").status_code == 200
    schema = httpx.get(f"{gateway.url}/openapi.json").json()
    assert f"/v1/models/{MODEL}/predict" in schema["paths"]
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert f'chassis_requests_total{{model="{MODEL}",role="stable",version="1"}}' in metrics
    assert "chassis_request_latency_seconds_bucket" in metrics
    assert "chassis_predicted_class_total" in metrics
    # Issue 15's families (docs/metrics.md), as the gateway renders them when it serves.
    generation = admin_status(gateway, auth)["generation"]
    for line in [
        "chassis_gateway_ready 1.0",
        f'chassis_requests_in_flight{{model="{MODEL}"}} 0.0',
        f'chassis_model_version_info{{model="{MODEL}",role="stable",version="1"}} 1.0',
        f'chassis_rollout_generation{{model="{MODEL}"}} {float(generation)}',
        f'chassis_prediction_confidence_ratio_count{{model="{MODEL}",version="1"}}',
        'chassis_build_info{chassis_version="0.1.0",',
    ]:
        assert line in metrics, line


@pytest.mark.parametrize(
    ("content", "content_type", "status", "message"),
    [
        (b'{"instances": [[1, 2]]}', "application/json", 422, "must be a list of 4 numbers, got 2"),
        (b'{"instances": [["a", "b", "c", "d"]]}', "application/json", 422, "must be a number"),
        (b'{"instances": [[1, null, 3, 4]]}', "application/json", 422, "must be a number"),
        (b'{"instances": [[1, NaN, 3, 4]]}', "application/json", 400, "malformed JSON"),
        (b'{"instances": [[1, 1e999, 3, 4]]}', "application/json", 400, "malformed JSON"),
        (b'{"instances": []}', "application/json", 422, "is empty"),
        (b'{"rows": []}', "application/json", 422, '"instances"'),
        (b'{"instances": [[1, 2, 3', "application/json", 400, "malformed JSON"),
        (b'{"instances": [[1, 2, 3, 4]]}', "text/plain", 415, "application/json"),
        (
            b'{"instances": [' + b"[1,2,3,4]," * 1100 + b"[1,2,3,4]]}",
            "application/json",
            413,
            "row limit",
        ),
        (b" " * (2 << 20), "application/json", 413, "byte limit"),
    ],
    ids=[
        "shape",
        "strings",
        "null",
        "nan",
        "inf",
        "empty",
        "no-instances",
        "truncated",
        "content-type",
        "too-many-rows",
        "oversize-body",
    ],
)
def test_bad_input_gets_a_clear_4xx(served, content, content_type, status, message):
    gateway, _ = served
    started = time.perf_counter()
    response = httpx.post(
        f"{gateway.url}/v1/models/{MODEL}/predict",
        content=content,
        headers={"content-type": content_type},
        timeout=10,
    )
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert time.perf_counter() - started < 5  # bounded: no hang on any bad input


def test_bad_input_keeps_memory_flat_and_never_500s(served):
    gateway, _ = served
    bodies = [
        b'{"instances": [[1, 2]]}',
        b"{bad",
        b'{"instances": [["x",1,2,3]]}',
        b" " * (2 << 20),
    ]
    for body in bodies * 10:  # warm up allocator pools
        httpx.post(
            f"{gateway.url}/v1/models/{MODEL}/predict",
            content=body,
            headers={"content-type": "application/json"},
        )
    before = gateway.rss_kib()
    statuses = set()
    for body in bodies * 100:
        statuses.add(
            httpx.post(
                f"{gateway.url}/v1/models/{MODEL}/predict",
                content=body,
                headers={"content-type": "application/json"},
            ).status_code
        )
    assert statuses <= {400, 413, 422}
    assert gateway.rss_kib() - before < 20_000  # < 20 MiB growth over 400 bad requests


def test_admin_api_requires_the_token(served):
    gateway, auth = served
    assert httpx.get(f"{gateway.url}/admin/status").status_code == 401
    assert (
        httpx.get(
            f"{gateway.url}/admin/status", headers={"Authorization": "Bearer wrong"}
        ).status_code
        == 401
    )
    assert (
        httpx.post(
            f"{gateway.url}/admin/models/{MODEL}/rollout", json={"mode": "canary"}
        ).status_code
        == 401
    )
    assert httpx.get(f"{gateway.url}/admin/status", headers=auth).status_code == 200


def test_canary_split_is_sticky_and_weighted(served):
    gateway, auth = served
    response = httpx.post(
        f"{gateway.url}/admin/models/{MODEL}/rollout",
        headers=auth,
        json={"mode": "canary", "candidate_version": 2, "percent": 30},
    )
    assert response.status_code == 200, response.text
    # Logged before the answer was sent: the new split, its versions by role and digest.
    changed = gateway.events("split.changed")[-1]
    assert (changed["cause"], changed["mode"]) == ("admin.rollout", "canary")
    assert (changed["candidate"], changed["candidate_percent"]) == (2, 30)
    assert changed["previous_mode"] == "stable"
    assert changed["candidate_sha256"] == response.json()["sha256"]["2"]
    assert changed["generation"] == response.json()["generation"]
    versions = [predict(gateway.url, [ROW], key=f"user-{i}").json()["version"] for i in range(300)]
    share = versions.count(2) / len(versions)
    assert 0.2 < share < 0.4
    again = [predict(gateway.url, [ROW], key=f"user-{i}").json()["version"] for i in range(300)]
    assert again == versions  # the same key always reaches the same version
    rolled = httpx.post(f"{gateway.url}/admin/models/{MODEL}/rollback", headers=auth).json()
    assert rolled["state"]["mode"] == "stable" and rolled["state"]["candidate_version"] is None
    back = gateway.events("split.changed")[-1]
    assert (back["cause"], back["mode"], back["candidate"]) == ("admin.rollback", "stable", None)
    assert {predict(gateway.url, [ROW], key=f"user-{i}").json()["version"] for i in range(50)} == {
        1
    }


def test_refuses_a_candidate_that_failed_its_gates(served):
    gateway, auth = served
    registry = Registry.from_settings(ChassisSettings(home=gateway.home))
    registry.record_gate_report(MODEL, 2, False, "test: failed on purpose")
    try:
        response = httpx.post(
            f"{gateway.url}/admin/models/{MODEL}/rollout",
            headers=auth,
            json={"mode": "canary", "candidate_version": 2, "percent": 10},
        )
    finally:
        registry.record_gate_report(MODEL, 2, True, "test: restored")
    # Refused even when v2 is still loaded from the previous test: a version held in memory
    # is checked again before it takes traffic.
    assert response.status_code == 409, response.text
    assert "failed its gates" in response.json()["error"]
    refused = gateway.events("version.refused")[-1]
    assert (refused["model"], refused["version"], refused["check"]) == (MODEL, 2, "gates")
    assert "failed its gates" in str(refused["error"]) and refused["level"] == "error"
    bad = httpx.post(
        f"{gateway.url}/admin/models/{MODEL}/rollout",
        headers=auth,
        json={"mode": "canary", "candidate_version": 99, "percent": 10},
    )
    assert bad.status_code == 409 and "no version 99" in bad.json()["error"]
    wrong = httpx.post(
        f"{gateway.url}/admin/models/{MODEL}/rollout",
        headers=auth,
        json={"mode": "sideways", "candidate_version": 2},
    )
    assert wrong.status_code == 422 and "mode: Input should be" in wrong.json()["error"]
    httpx.post(f"{gateway.url}/admin/models/{MODEL}/rollback", headers=auth)


def test_shadow_compares_without_answering(served):
    gateway, auth = served
    httpx.post(f"{gateway.url}/admin/models/{MODEL}/reset-stats", headers=auth)
    httpx.post(
        f"{gateway.url}/admin/models/{MODEL}/rollout",
        headers=auth,
        json={"mode": "shadow", "candidate_version": 2},
    )
    rows = specs.blob_dataset().test[list(specs.blob_dataset().feature_columns)].values.tolist()
    for row in rows:
        assert predict(gateway.url, [row]).json()["version"] == 1

    def candidate_stats() -> dict:
        return httpx.get(f"{gateway.url}/admin/models/{MODEL}", headers=auth).json()["stats"]["2"]

    # The shadow call runs after the answer: poll until every request has been compared.
    deadline = time.monotonic() + 30
    while (stats := candidate_stats())["shadow_compared"] < len(rows):
        assert time.monotonic() < deadline, stats
        time.sleep(0.1)
    assert stats["shadow_compared"] == len(rows)
    assert 0.5 <= stats["shadow_agreement"] <= 1.0
    httpx.post(f"{gateway.url}/admin/models/{MODEL}/rollback", headers=auth)


def test_blue_green_switch_under_load_drops_nothing_and_rolls_back(served):
    gateway, auth = served
    httpx.post(
        f"{gateway.url}/admin/models/{MODEL}/rollout",
        headers=auth,
        json={"mode": "blue-green", "candidate_version": 2},
    )
    preview = httpx.post(
        f"{gateway.url}/v1/models/{MODEL}/preview/predict", json={"instances": [ROW]}
    )
    assert preview.json()["version"] == 2

    answered: list[int] = []

    def hammer(n: int) -> list[int]:
        statuses = []
        with httpx.Client() as client:
            for _ in range(n):
                statuses.append(
                    client.post(
                        f"{gateway.url}/v1/models/{MODEL}/predict", json={"instances": [ROW]}
                    ).status_code
                )
                answered.append(1)
        return statuses

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(hammer, 150) for _ in range(8)]
        # Switch under load: once requests are flowing (a fifth of them answered), not after
        # a guess at how long the threads take to start.
        deadline = time.monotonic() + 60
        while len(answered) < 240:
            assert time.monotonic() < deadline and not any(f.done() for f in futures)
            time.sleep(0.01)
        switched = httpx.post(f"{gateway.url}/admin/models/{MODEL}/switch", headers=auth).json()
        statuses = [s for f in futures for s in f.result()]
    assert switched["state"]["stable_version"] == 2 and switched["state"]["warm_version"] == 1
    assert statuses.count(200) == len(statuses) == 1200
    assert predict(gateway.url, [ROW]).json()["version"] == 2
    back = httpx.post(f"{gateway.url}/admin/models/{MODEL}/rollback", headers=auth).json()
    assert back["state"]["stable_version"] == 1  # the warm color answers again at once
    assert predict(gateway.url, [ROW]).json()["version"] == 1


def test_restart_restores_the_committed_split_but_never_an_unvalidated_candidate(served):
    gateway, auth = served
    httpx.post(
        f"{gateway.url}/admin/models/{MODEL}/rollout",
        headers=auth,
        json={"mode": "canary", "candidate_version": 2, "percent": 25},
    )
    gateway.stop()
    gateway.start()
    state = httpx.get(f"{gateway.url}/admin/models/{MODEL}", headers=auth).json()["state"]
    assert (state["mode"], state["candidate_version"], state["candidate_percent"]) == (
        "canary",
        2,
        25.0,
    )

    gateway.stop()
    registry = Registry.from_settings(ChassisSettings(home=gateway.home))
    registry.record_gate_report(MODEL, 2, False, "test: invalidated while the gateway was down")
    try:
        gateway.start()
        state = httpx.get(f"{gateway.url}/admin/models/{MODEL}", headers=auth).json()["state"]
        assert (state["mode"], state["stable_version"], state["candidate_version"]) == (
            "stable",
            1,
            None,
        )
        versions = {predict(gateway.url, [ROW], key=f"k{i}").json()["version"] for i in range(40)}
        assert versions == {1}
    finally:
        registry.record_gate_report(MODEL, 2, True, "test: restored")


def test_follows_a_champion_moved_by_hand_or_by_rollback(served):
    gateway, _auth = served
    registry = Registry.from_settings(ChassisSettings(home=gateway.home))
    registry.promote(MODEL, 2, expected_champion=1, actor="test", reason="by hand in MLflow")

    def served_version() -> int:
        return predict(gateway.url, [ROW]).json()["version"]

    try:
        deadline = time.monotonic() + 30
        while served_version() != 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        status = httpx.get(f"{gateway.url}/admin/models/{MODEL}", headers=_auth).json()["state"]
        assert served_version() == 2, (status, registry.current_aliases(MODEL))
    finally:
        # Part of the scenario, and what puts the registry back if the first part failed.
        registry.rollback(MODEL, actor="test", reason="back")
    deadline = time.monotonic() + 30
    while served_version() != 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert served_version() == 1


def send_feedback(url: str, body: object) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/{MODEL}/feedback", json=body, timeout=10)


def test_feedback_is_joined_by_id_refused_with_reasons_and_seen_as_live_accuracy(served):
    gateway, _ = served
    answer = predict(gateway.url, [ROW] * 4).json()
    ids, predictions = answer["ids"], answer["predictions"]
    assert len(set(ids)) == 4 and answer["version"] == 1
    # Three right labels and one wrong (another class than the one predicted).
    labels = [*predictions[:3], (predictions[3] + 1) % 3]
    accepted = send_feedback(gateway.url, {"id": ids[0], "label": labels[0]})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["feedback"] == [
        {
            "id": ids[0],
            "version": 1,
            "prediction": predictions[0],
            "label": labels[0],
            "correct": True,
        }
    ]
    batch = [{"id": i, "label": label} for i, label in zip(ids[1:], labels[1:], strict=True)]
    assert send_feedback(gateway.url, {"feedback": batch}).json()["accepted"] == 3
    duplicate = send_feedback(gateway.url, {"id": ids[0], "label": labels[0]})
    assert (duplicate.status_code, duplicate.json()["reason"]) == (409, "duplicate")

    [old] = predict(gateway.url, [ROW]).json()["ids"]
    for _ in range(FEEDBACK_WINDOW):
        predict(gateway.url, [ROW])
    [fresh] = predict(gateway.url, [ROW]).json()["ids"]
    replica = fresh.split("-")[0]
    refused = {
        "unknown id": send_feedback(gateway.url, {"id": f"{replica}-999999-0", "label": 0}),
        "other replica": send_feedback(gateway.url, {"id": "00000000-0-0", "label": 0}),
        "label type": send_feedback(gateway.url, {"id": fresh, "label": "cat"}),
        "label range": send_feedback(gateway.url, {"id": fresh, "label": 3}),
        "too late": send_feedback(gateway.url, {"id": old, "label": 0}),
        "malformed": httpx.post(
            f"{gateway.url}/v1/models/{MODEL}/feedback",
            content=b'{"id": ',
            headers={"content-type": "application/json"},
            timeout=10,
        ),
    }
    assert {name: (r.status_code, r.json()["reason"]) for name, r in refused.items()} == {
        "unknown id": (404, "unknown_id"),
        "other replica": (404, "unknown_id"),
        "label type": (422, "bad_label"),
        "label range": (422, "bad_label"),
        "too late": (410, "too_late"),
        "malformed": (400, "malformed"),
    }
    assert "0..2 (this model is a classifier)" in refused["label type"].json()["error"]

    metrics = httpx.get(f"{gateway.url}/metrics").text
    registry = Registry.from_settings(ChassisSettings(home=gateway.home))
    gate = float(registry.version_tags(MODEL, 1)[TAG_ACCURACY_GATE])
    for line in [
        f'chassis_feedback_total{{model="{MODEL}",outcome="correct",version="1"}} 3.0',
        f'chassis_feedback_total{{model="{MODEL}",outcome="wrong",version="1"}} 1.0',
        f'chassis_live_accuracy_ratio{{model="{MODEL}",version="1"}} 0.75',
        f'chassis_live_feedback_rows{{model="{MODEL}",version="1"}} 4.0',
        f'chassis_accuracy_gate_ratio{{model="{MODEL}",version="1"}} {gate}',
        f'chassis_feedback_refused_total{{model="{MODEL}",reason="too_late"}} 1.0',
        f'chassis_feedback_refused_total{{model="{MODEL}",reason="unknown_id"}} 2.0',
    ]:
        assert line in metrics, line
    assert 0.5 < gate < 1  # set by the release's gates from v1's test accuracy
