"""A rollout always ends safe: its owner dies, its replicas die, its gateway goes away.

Real processes on loopback: three `chassis serve` replicas behind haproxy, one MLflow
registry (SQLite under a shared CHASSIS_HOME), the rollout flow in its own process (so it
can be killed with SIGKILL) or in a thread. One champion is trained once; each scenario
rolls out a fresh registered copy of it (same bytes, gates passed), so no scenario waits
for training and each has its own challenger to retire or keep.
"""

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import chassis.registry
from chassis.errors import RecordConflict
from chassis.rollout import lease
from chassis.rollout.policy import RolloutPolicy
from chassis.rollout.record import RolloutRecord
from chassis.serving.client import GatewayClient
from chassis.settings import ChassisSettings
from tests.fixtures.fault_report import ScenarioResult
from tests.fixtures.gateway import MODEL, GatewayProcess
from tests.fixtures.haproxy import HAProxy
from tests.fixtures.registries import home_registry

ROW = [0.5, -1.0, 2.0, 0.0]
CHAMPION = 1
REPO = Path(__file__).resolve().parents[2]
# Short leases for tests, set through the policy as a user would. 10 s is long against the
# flow's renewal (every 3.3 s) on a busy machine, and short enough to wait out.
LEASE_SECONDS = 10.0
# A canary step that never gathers its samples: the split stays committed until the fault.
HOLDING = RolloutPolicy(
    steps=[25, 100],
    shadow_first=False,
    min_requests=1_000_000,
    step_seconds=120,
    max_extensions=0,
    sync_seconds=10,
    lease_seconds=LEASE_SECONDS,
)
FLOW_SCRIPT = """
import json, sys
from chassis.rollout.policy import RolloutPolicy
from flows.rollout import rollout
args = json.loads(sys.argv[1])
rollout(model_name=args["model"], version=args["version"],
        policy=RolloutPolicy.model_validate(args["policy"]), drive_traffic="never",
        gateway_url=args["gateway_url"], replicas=args["replicas"])
"""


@dataclass
class Fleet:
    home: Path
    replicas: list[GatewayProcess]
    proxy: HAProxy

    def client(self, replica: GatewayProcess) -> GatewayClient:
        return GatewayClient(replica.url, ChassisSettings().admin_token(), timeout=10)

    def state(self, replica: GatewayProcess) -> dict:
        return self.client(replica).status(MODEL)["state"]

    def urls(self) -> list[str]:
        return [replica.url for replica in self.replicas]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    from flows.release import release

    root = tmp_path_factory.mktemp("orphans")
    home = root / "chassis"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHASSIS_HOME", str(home))
        release(spec="tests.fixtures.specs:good", seed=0, compression="off")  # v1 champion
        replicas = [
            GatewayProcess(
                home,
                env={
                    "CHASSIS_GATEWAY_LOCAL_DIR": str(root / f"replica-{i}"),
                    "CHASSIS_GATEWAY_DRAIN_SECONDS": "1.5",
                },
            )
            for i in range(3)
        ]
        for replica in replicas:
            replica.launch()
        for replica in replicas:
            replica.wait_ready()
        proxy = HAProxy(root, [replica.url for replica in replicas]).start()
        try:
            yield Fleet(home, replicas, proxy)
        finally:
            proxy.stop()
            for replica in replicas:
                replica.stop()


class Traffic:
    """Users sending requests through the balancer; each answer kept with its send time."""

    def __init__(self, url: str, users: int = 3) -> None:
        self.url = url
        self.stop_event = threading.Event()
        self.answers: list[tuple[float, int | str, int]] = []  # (sent at, status, version)
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.user) for _ in range(users)]

    def user(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop_event.is_set():
                sent = time.time()
                try:
                    response = client.post(
                        f"{self.url}/v1/models/{MODEL}/predict", json={"instances": [ROW]}
                    )
                    outcome: int | str = response.status_code
                    version = int(response.headers.get("x-model-version", "0"))
                except httpx.TransportError as error:
                    outcome, version = type(error).__name__, 0
                with self.lock:
                    self.answers.append((sent, outcome, version))
                self.stop_event.wait(0.02)  # pacing: a few users, not a load test

    def __enter__(self) -> "Traffic":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def tally(self) -> tuple[int, int, int]:
        """(sent, answered with any status, answered 5xx)."""
        answered = [status for _, status, _ in self.answers if isinstance(status, int)]
        return len(self.answers), len(answered), sum(status >= 500 for status in answered)


def until(condition, seconds: float, what: str):
    """Poll `condition` until it returns something truthy; fail naming `what` after."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds:g} s: {what}")


def start_flow(fleet: Fleet, version: int, policy: RolloutPolicy, log: Path) -> subprocess.Popen:
    from prefect.settings import PREFECT_API_URL

    args = {
        "model": MODEL,
        "version": version,
        "policy": policy.model_dump(),
        "gateway_url": fleet.proxy.url,
        "replicas": fleet.urls(),
    }
    env = {
        **os.environ,
        "CHASSIS_HOME": str(fleet.home),
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PYTHONPATH": str(REPO),
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", FLOW_SCRIPT, json.dumps(args)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=out,
        )


def canary_served_everywhere(fleet: Fleet, version: int, flow: subprocess.Popen, log: Path):
    """The leased canary split, once every replica serves it (and it was renewed once)."""

    def served() -> RolloutRecord | None:
        assert flow.poll() is None, log.read_text()[-3000:]
        record = home_registry().read_rollout_record(MODEL)
        if record is None or record.mode != "canary" or record.candidate_version != version:
            return None
        states = [fleet.state(replica) for replica in fleet.replicas]
        if all(s["candidate_version"] == version for s in states):
            return record
        return None

    committed = until(served, 120, f"every replica serves the canary of v{version}")
    assert committed.leased and str(flow.pid) in committed.owner, committed

    def renewed() -> RolloutRecord | None:
        record = home_registry().read_rollout_record(MODEL)
        assert record is not None
        return record if record.generation > committed.generation else None

    # The owner renews while it lives: the lease is what keeps the split, not its absence.
    record = until(renewed, 3 * LEASE_SECONDS, "the flow renews its lease")
    assert (record.owner, record.mode, record.percent) == (committed.owner, "canary", 25.0)
    return record


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def retirements(version: int) -> list[chassis.registry.AuditRecord]:
    return [
        r
        for r in home_registry().history(MODEL)
        if r.action == "retire-challenger" and any(m.get("from") == version for m in r.moves)
    ]


def test_a_killed_rollout_flow_ends_safe_when_its_lease_passes(fleet, tmp_path, fault_report):
    version = home_registry().register_copy(MODEL, CHAMPION, "orphan test: flow killed")
    log = tmp_path / "flow.log"
    with Traffic(fleet.proxy.url) as traffic:
        flow = start_flow(fleet, version, HOLDING, log)
        try:
            canary_served_everywhere(fleet, version, flow, log)
        finally:
            kill(flow)  # SIGKILL: no except, no finally, no hook of the flow runs
        last = home_registry().read_rollout_record(MODEL)
        assert last is not None and last.leased
        lease_end = lease.expires_at(last)
        assert lease_end is not None

        off_split_at: dict[str, float] = {}

        def all_on_champion() -> bool:
            for replica in fleet.replicas:
                state = fleet.state(replica)
                if state["candidate_version"] is None and state["stable_version"] == CHAMPION:
                    off_split_at.setdefault(replica.url, time.time())
            return len(off_split_at) == len(fleet.replicas)

        until(all_on_champion, LEASE_SECONDS + 30, "every replica serves the champion alone")
        everywhere_at = time.time()
        record = until(
            lambda: (r := home_registry().read_rollout_record(MODEL)) and not r.leased and r,
            30,
            "a stable record replaces the orphan",
        )
        until(lambda: retirements(version), 30, "the challenger is retired")
        # Requests sent after every replica left the split, for the row and the checks.
        until(
            lambda: sum(sent > everywhere_at for sent, _, _ in traffic.answers) >= 100,
            30,
            "100 answers after the fallback",
        )
    sent, answered, failed = traffic.tally()
    late_candidate = sum(
        1 for at, status, served in traffic.answers if at > everywhere_at and served == version
    )
    retired = retirements(version)
    aliases = home_registry().current_aliases(MODEL)
    states = [fleet.state(replica) for replica in fleet.replicas]
    fault_report.add(
        ScenarioResult(
            scenario="rollout flow SIGKILLed mid-canary: the lease ends it",
            sent=sent,
            answered=answered,
            good_failed=failed,
            alias_matches_served=all(
                s["stable_version"] == aliases.get("champion") and s["candidate_version"] is None
                for s in states
            ),
            unvalidated_served=0,
            lost="nothing"
            if len(retired) == 1 and late_candidate == 0
            else f"{len(retired)} retirements, {late_candidate} late candidate answers",
        )
    )
    assert failed == 0 and answered == sent, collections.Counter(s for _, s, _ in traffic.answers)
    # Each replica left the split only once the lease had passed (the lease ended it).
    assert min(off_split_at.values()) >= lease_end, (off_split_at, last.lease_until)
    assert late_candidate == 0
    assert (record.mode, record.stable_version, record.candidate_version) == ("stable", None, None)
    assert record.written_by.startswith("gateway replica on ")
    assert len(retired) == 1, retired
    assert retired[0].actor.startswith("gateway replica on ")
    assert "orphaned rollout: the lease of rollout flow run" in retired[0].reason
    assert aliases == {"champion": CHAMPION}


def test_a_replica_restarted_after_the_lease_serves_the_champion_not_the_orphan(
    fleet, tmp_path, fault_report
):
    version = home_registry().register_copy(MODEL, CHAMPION, "orphan test: replica restarted")
    log = tmp_path / "flow.log"
    flow = start_flow(fleet, version, HOLDING, log)
    try:
        canary_served_everywhere(fleet, version, flow, log)
        # The replica goes down mid-canary; the flow and the other replicas are lost with
        # it (one host, say): nobody is left to end the rollout or to renew its lease.
        victim, others = fleet.replicas[0], fleet.replicas[1:]
        for replica in (victim, *others):
            assert replica.process is not None
            kill(replica.process)
    finally:
        kill(flow)
    orphan = home_registry().read_rollout_record(MODEL)
    assert orphan is not None and orphan.mode == "canary" and orphan.leased
    lease_end = lease.expires_at(orphan)
    assert lease_end is not None
    until(lambda: time.time() > lease_end, LEASE_SECONDS + 5, "the lease passes")
    # Down for longer than a step window too (HOLDING's windows are 120 s; the flow's read
    # retry is 60 s): nothing but the lease decides what the replica comes back to.
    still = home_registry().read_rollout_record(MODEL)
    assert still == orphan, "nobody should have touched the record while everyone was down"

    victim.start()  # same port and local dir: its saved state is the 25 % split
    first = fleet.state(victim)
    statuses: collections.Counter[int] = collections.Counter()
    versions: collections.Counter[int] = collections.Counter()
    with httpx.Client(timeout=10) as client:
        for _ in range(200):
            response = client.post(
                f"{victim.url}/v1/models/{MODEL}/predict", json={"instances": [ROW]}
            )
            statuses[response.status_code] += 1
            versions[int(response.headers.get("x-model-version", "0"))] += 1
    metrics = httpx.get(f"{victim.url}/metrics", timeout=10).text
    ended = until(
        lambda: (r := home_registry().read_rollout_record(MODEL)) and not r.leased and r,
        30,
        "the restarted replica ends the orphan",
    )
    # The winner writes the stable record first, then retires the challenger.
    retired = until(lambda: retirements(version), 30, "the restarted replica retires it")
    for replica in others:  # back for the next scenario; they read the stable record
        replica.launch()
    for replica in others:
        replica.wait_ready()
    states = [fleet.state(replica) for replica in fleet.replicas]
    aliases = home_registry().current_aliases(MODEL)
    fault_report.add(
        ScenarioResult(
            scenario="replica down past the lease (flow dead too), restarted: reads the "
            "expired record",
            sent=200,
            answered=sum(statuses.values()),
            good_failed=sum(n for status, n in statuses.items() if status >= 500),
            alias_matches_served=all(
                s["stable_version"] == aliases.get("champion") and s["candidate_version"] is None
                for s in states
            ),
            unvalidated_served=0,
            lost="nothing"
            if versions.get(version, 0) == 0 and len(retired) == 1
            else f"{versions.get(version, 0)} orphan answers, {len(retired)} retirements",
        )
    )
    assert (first["stable_version"], first["candidate_version"], first["mode"]) == (
        CHAMPION,
        None,
        "stable",
    )
    assert statuses == {200: 200} and versions == {CHAMPION: 200}
    assert f'version="{version}"' not in metrics  # the orphan never answered here
    assert ended.generation == orphan.generation + 1
    assert ended.written_by.startswith("gateway replica on ")
    assert len(retired) == 1 and retired[0].actor == ended.written_by
    assert aliases == {"champion": CHAMPION}
    assert all(s["candidate_version"] is None for s in states)


def test_a_gateway_unreachable_mid_step_pauses_the_rollout_on_the_champion(fleet, fault_report):
    from chassis.errors import RolloutPaused
    from flows.rollout import rollout

    version = home_registry().register_copy(MODEL, CHAMPION, "orphan test: gateway unreachable")
    policy = HOLDING.model_copy(update={"retry_seconds": 4.0, "sync_seconds": 5.0})
    result: dict[str, object] = {}

    def run() -> None:
        try:
            rollout(
                model_name=MODEL,
                version=version,
                policy=policy,
                drive_traffic="never",
                gateway_url=fleet.proxy.url,
                replicas=fleet.urls(),
            )
        except Exception as error:  # reported by the assertions below
            result["error"] = error

    lost = fleet.replicas[2]
    with Traffic(fleet.proxy.url) as traffic:
        thread = threading.Thread(target=run)
        thread.start()

        def canary_everywhere() -> bool:
            record = home_registry().read_rollout_record(MODEL)
            return (
                record is not None
                and record.candidate_version == version
                and all(fleet.state(r)["candidate_version"] == version for r in fleet.replicas)
            )

        until(canary_everywhere, 120, "every replica serves the canary")
        assert lost.process is not None
        kill(lost.process)
        thread.join(timeout=120)
        assert not thread.is_alive(), "the rollout did not end"
        record = home_registry().read_rollout_record(MODEL)
    sent, answered, failed = traffic.tally()
    lost.start()  # back: it reads the record, not the split it died with
    states = [fleet.state(replica) for replica in fleet.replicas]
    aliases = home_registry().current_aliases(MODEL)
    fault_report.add(
        ScenarioResult(
            scenario="replica unreachable mid-step, past the flow's retry: paused on the champion",
            sent=sent,
            answered=answered,
            good_failed=failed,
            alias_matches_served=all(
                s["stable_version"] == aliases.get("champion") and s["candidate_version"] is None
                for s in states
            ),
            unvalidated_served=0,
            lost="nothing" if record is not None and not record.leased else f"record {record}",
        )
    )
    error = result.get("error")
    assert isinstance(error, RolloutPaused), result
    assert lost.url in str(error) and f"Traffic is back on v{CHAMPION}" in str(error)
    assert f"v{version} keeps its challenger alias" in str(error)
    assert record is not None and record.mode == "stable" and not record.leased
    assert record.written_by != "" and not record.written_by.startswith("gateway replica")
    assert failed == 0 and answered == sent
    assert aliases == {"champion": CHAMPION, "challenger": version}
    assert all((s["stable_version"], s["candidate_version"]) == (1, None) for s in states)


def test_a_rollout_whose_record_is_taken_from_it_mid_step_stops_and_retires(fleet, fault_report):
    from chassis.errors import RolloutAborted
    from flows.rollout import rollout

    version = home_registry().register_copy(MODEL, CHAMPION, "orphan test: record taken mid-step")
    result: dict[str, object] = {}

    def run() -> None:
        try:
            rollout(
                model_name=MODEL,
                version=version,
                policy=HOLDING,
                drive_traffic="never",
                gateway_url=fleet.proxy.url,
                replicas=fleet.urls(),
            )
        except Exception as error:  # reported by the assertions below
            result["error"] = error

    with Traffic(fleet.proxy.url) as traffic:
        thread = threading.Thread(target=run)
        thread.start()

        def canary_everywhere() -> RolloutRecord | None:
            record = home_registry().read_rollout_record(MODEL)
            if record is None or record.candidate_version != version:
                return None
            states = [fleet.state(r) for r in fleet.replicas]
            return record if all(s["candidate_version"] == version for s in states) else None

        committed = until(canary_everywhere, 120, "every replica serves the canary")
        # An operator returns the model to stable by hand while the step runs: the flow's
        # next renewal finds another generation (an exception mid-step, not a verdict).
        taken = until(
            lambda: _write_stable_over(MODEL, committed.generation),
            LEASE_SECONDS,
            "a stable record written over the flow's split",
        )
        thread.join(timeout=60)
        assert not thread.is_alive(), "the rollout did not stop"

        def on_champion() -> list[dict] | None:
            states = [fleet.state(replica) for replica in fleet.replicas]
            return states if all(s["candidate_version"] is None for s in states) else None

        states = until(on_champion, 30, "every replica follows the stable record")
    sent, answered, failed = traffic.tally()
    aliases = home_registry().current_aliases(MODEL)
    retired = retirements(version)
    record = home_registry().read_rollout_record(MODEL)
    fault_report.add(
        ScenarioResult(
            scenario="rollout record taken over by hand mid-step: the flow stops and retires",
            sent=sent,
            answered=answered,
            good_failed=failed,
            alias_matches_served=all(
                s["stable_version"] == aliases.get("champion") and s["candidate_version"] is None
                for s in states
            ),
            unvalidated_served=0,
            lost="nothing" if len(retired) == 1 else f"{len(retired)} retirements",
        )
    )
    error = result.get("error")
    assert isinstance(error, RolloutAborted), result
    assert "RecordConflict" in str(error)
    assert "the record was returned to stable by test-operator" in str(error)
    assert f"v{version} retired" in str(error)
    assert record == taken  # the flow wrote nothing over the operator's record
    assert len(retired) == 1 and "rollout aborted mid-step" in retired[0].reason
    assert aliases == {"champion": CHAMPION}
    assert failed == 0 and answered == sent
    assert all((s["stable_version"], s["candidate_version"]) == (1, None) for s in states)


def _write_stable_over(model: str, generation: int) -> RolloutRecord | None:
    """A stable record over `generation` or a later renewal of the same split."""
    current = home_registry().read_rollout_record(model)
    assert current is not None and current.generation >= generation
    try:
        return home_registry().write_rollout_record(
            model, RolloutRecord(generation=0), current.generation, "test-operator"
        )
    except RecordConflict:  # the flow renewed between the read and the write: read again
        return None
