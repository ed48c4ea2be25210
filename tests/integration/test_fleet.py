"""Three `chassis serve` replicas behind a real haproxy, sharing one registry: one committed
split for all of them, consistent routing by key, rollouts across the fleet, a replica
killed mid-rollout, and a rolling restart that loses no request."""

import collections
import concurrent.futures
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from chassis.rollout.policy import RolloutPolicy
from chassis.rollout.record import RolloutRecord
from chassis.serving.client import GatewayClient
from chassis.settings import ChassisSettings
from flows.release import release
from flows.rollout import rollout
from tests.fixtures.gateway import MODEL, GatewayProcess
from tests.fixtures.haproxy import HAProxy
from tests.fixtures.registries import home_registry

ROW = [0.5, -1.0, 2.0, 0.0]
POLICY = RolloutPolicy(steps=[25, 100], step_seconds=20)


class Fleet:
    def __init__(self, replicas: list[GatewayProcess], proxy: HAProxy) -> None:
        self.replicas = replicas
        self.proxy = proxy
        self.token = ChassisSettings().admin_token()

    def client(self, replica: GatewayProcess) -> GatewayClient:
        return GatewayClient(replica.url, self.token)

    def statuses(self) -> list[dict]:
        return [self.client(replica).status(MODEL) for replica in self.replicas]


@pytest.fixture
def fleet(chassis_home, tmp_path) -> Iterator[Fleet]:
    release(spec="tests.fixtures.specs:good", seed=0, compression="off")  # v1 champion
    release(spec="tests.fixtures.specs:good", seed=1, rollout_strategy="none", compression="off")
    replicas = [
        GatewayProcess(
            chassis_home,
            env={
                "CHASSIS_GATEWAY_LOCAL_DIR": str(tmp_path / f"replica-{i}"),
                "CHASSIS_GATEWAY_DRAIN_SECONDS": "1.5",
            },
        )
        for i in range(3)
    ]
    for replica in replicas:
        replica.launch()
    for replica in replicas:
        replica.wait_ready()
    proxy = HAProxy(tmp_path, [replica.url for replica in replicas]).start()
    yield Fleet(replicas, proxy)
    proxy.stop()
    for replica in replicas:
        replica.stop()


def commit(split: RolloutRecord, fleet: Fleet) -> int:
    current = home_registry().read_rollout_record(MODEL)
    record = home_registry().write_rollout_record(
        MODEL, split, current.generation if current else 0, "test"
    )
    for replica in fleet.replicas:
        assert fleet.client(replica).sync(MODEL)["generation"] == record.generation
    return record.generation


def send(url: str, keys: list[str]) -> list[tuple[str, int, int]]:
    """(key, status, version) for one request per key, 8 at a time."""

    def one(client: httpx.Client, key: str) -> tuple[str, int, int]:
        response = client.post(
            f"{url}/v1/models/{MODEL}/predict",
            json={"instances": [ROW]},
            headers={"x-request-key": key},
        )
        version = int(response.headers.get("x-model-version", "0"))
        return key, response.status_code, version

    with (
        httpx.Client(timeout=10, limits=httpx.Limits(max_connections=8)) as client,
        concurrent.futures.ThreadPoolExecutor(8) as pool,
    ):
        return list(pool.map(lambda key: one(client, key), keys))


def test_one_committed_split_is_served_by_every_replica_with_consistent_keys(fleet):
    for percent in (10.0, 25.0, 50.0):
        generation = commit(
            RolloutRecord(
                generation=0, mode="canary", stable_version=1, candidate_version=2, percent=percent
            ),
            fleet,
        )
        assert [s["generation"] for s in fleet.statuses()] == [generation] * 3
        for replica in fleet.replicas:  # each replica logged the record's split it serves
            changed = replica.events("split.changed")[-1]
            assert (changed["cause"], changed["generation"]) == ("record", str(generation))
            assert (changed["candidate"], changed["candidate_percent"]) == ("2", f"{percent:g}")
        # 10,000 distinct keys through the load balancer (round robin over the replicas),
        # then 300 keys sent 4 times each, which land on different replicas.
        answers = send(fleet.proxy.url, [f"user-{percent}-{i}" for i in range(10_000)])
        assert {status for _, status, _ in answers} == {200}
        share = sum(version == 2 for _, _, version in answers) / len(answers)
        assert abs(share - percent / 100) <= 0.02, (percent, share)
        repeated = send(fleet.proxy.url, [f"sticky-{i}" for i in range(300)] * 4)
        versions_by_key = collections.defaultdict(set)
        for key, _, version in repeated:
            versions_by_key[key].add(version)
        assert all(len(versions) == 1 for versions in versions_by_key.values())


def test_a_canary_across_the_fleet_promotes_and_every_replica_serves_the_champion(fleet):
    outcome = rollout(
        model_name=MODEL,
        version=2,
        policy=POLICY,
        drive_traffic="always",
        gateway_url=fleet.proxy.url,
        replicas=[replica.url for replica in fleet.replicas],
    )
    assert outcome.promoted
    assert home_registry().current_aliases(MODEL)["champion"] == 2
    record = home_registry().read_rollout_record(MODEL)
    assert record is not None and record.mode == "stable"
    for status in fleet.statuses():
        assert status["state"]["stable_version"] == 2
        assert status["state"]["candidate_version"] is None
        assert status["generation"] == record.generation


def test_a_replica_killed_mid_rollout_rejoins_at_the_committed_generation(fleet):
    result: dict[str, object] = {}
    # The killed replica restarts while the rollout waits for every replica to serve the
    # next generation: a start on a busy machine (imports, verified download) can take
    # longer than the default 30 s wait, and the rollout would then pause, safely, which is
    # not what this test is about.
    slow = POLICY.model_copy(update={"min_requests": 6000, "step_seconds": 60, "sync_seconds": 180})

    def run() -> None:
        try:
            result["outcome"] = rollout(
                model_name=MODEL,
                version=2,
                policy=slow,
                drive_traffic="always",
                gateway_url=fleet.proxy.url,
                replicas=[replica.url for replica in fleet.replicas],
            )
        except Exception as error:  # reported by the assertions below
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    victim = fleet.replicas[1]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the first canary step is committed
        record = home_registry().read_rollout_record(MODEL)
        if record is not None and record.mode == "canary":
            break
        if not thread.is_alive():  # the rollout ended before its canary: say why
            raise AssertionError(f"the rollout ended before a canary step: {result}")
        time.sleep(0.2)
    else:
        raise AssertionError("no canary step committed within 120 s")
    assert victim.process is not None
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(timeout=10)
    committed = home_registry().read_rollout_record(MODEL)
    assert committed is not None
    victim.start()  # same port, same local dir: it reads the record, not its old state
    status = fleet.client(victim).status(MODEL)
    assert status["generation"] >= committed.generation
    assert status["state"]["candidate_version"] == 2
    thread.join(timeout=300)
    assert "error" not in result, result.get("error")
    final = home_registry().read_rollout_record(MODEL)
    assert final is not None and home_registry().current_aliases(MODEL)["champion"] == 2
    for replica_status in fleet.statuses():
        assert replica_status["state"]["stable_version"] == 2
        assert replica_status["generation"] == final.generation


def test_a_rolling_restart_under_load_loses_no_request(fleet):
    stop = threading.Event()
    statuses: collections.Counter[int | str] = collections.Counter()
    lock = threading.Lock()

    def user() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                try:
                    response = client.post(
                        f"{fleet.proxy.url}/v1/models/{MODEL}/predict", json={"instances": [ROW]}
                    )
                    outcome: int | str = response.status_code
                except httpx.TransportError as error:
                    outcome = type(error).__name__
                with lock:
                    statuses[outcome] += 1

    users = [threading.Thread(target=user) for _ in range(4)]
    for thread in users:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while sum(statuses.values()) < 100:  # load is flowing before the first restart
            assert time.monotonic() < deadline, f"load stalled: {statuses}"
            time.sleep(0.05)
        for replica in fleet.replicas:  # one at a time, as a Deployment's rolling update
            replica.stop()
            replica.start()
    finally:
        stop.set()
        for thread in users:
            thread.join(timeout=30)
    sent = sum(statuses.values())
    assert sent > 500
    assert statuses == {200: sent}, statuses


def test_a_replica_that_stays_down_pauses_the_rollout_on_the_champion(fleet):
    from chassis.errors import RolloutPaused

    result: dict[str, object] = {}
    patient = POLICY.model_copy(
        update={"min_requests": 6000, "step_seconds": 60, "sync_seconds": 5.0}
    )

    def run() -> None:
        try:
            rollout(
                model_name=MODEL,
                version=2,
                policy=patient,
                drive_traffic="always",
                gateway_url=fleet.proxy.url,
                replicas=[replica.url for replica in fleet.replicas],
            )
        except Exception as error:  # reported by the assertions below
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the first canary step is committed
        record = home_registry().read_rollout_record(MODEL)
        if record is not None and record.mode == "canary":
            break
        if not thread.is_alive():  # the rollout ended before its canary: say why
            raise AssertionError(f"the rollout ended before a canary step: {result}")
        time.sleep(0.2)
    else:
        raise AssertionError("no canary step committed within 120 s")
    lost = fleet.replicas[2]
    assert lost.process is not None
    lost.process.send_signal(signal.SIGKILL)
    lost.process.wait(timeout=10)
    thread.join(timeout=300)
    assert isinstance(result.get("error"), RolloutPaused), result
    assert lost.url in str(result["error"])
    record = home_registry().read_rollout_record(MODEL)
    assert record is not None and record.mode == "stable"
    assert home_registry().current_aliases(MODEL) == {"champion": 1, "challenger": 2}
    for replica in fleet.replicas[:2]:
        state = fleet.client(replica).status(MODEL)["state"]
        assert (state["stable_version"], state["candidate_version"]) == (1, None)
    lost.start()  # back: it reads the record, not the split it died with
    assert fleet.client(lost).status(MODEL)["state"]["candidate_version"] is None
