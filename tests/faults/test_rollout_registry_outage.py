"""A rollout's owner loses the registry, or its Prefect worker, in the middle of a step.

Three `chassis serve` replicas behind haproxy and the rollout flow talk to the registry
through a real `mlflow server` in front of the SQLite store; the test process reads the
store directly, so it sees the record whatever the server does.

- The server is stopped while the flow (its own process) is mid-step: the replicas keep
  serving, end the split at its lease's end from their own copy, and when the server is
  back exactly one party writes the stable record and retires the challenger.
- The rollout runs as a deployment on a real `prefect server` with a process worker, and
  the worker's process group is SIGKILLed mid-canary: the flow run (its own session)
  lives on, keeps its lease, and ends the rollout itself.
"""

import collections
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

import chassis.registry
from chassis.registry import Registry
from chassis.rollout import lease
from chassis.rollout.record import RolloutRecord
from chassis.settings import ChassisSettings
from tests.faults.test_rollout_orphans import (
    CHAMPION,
    FLOW_SCRIPT,
    HOLDING,
    REPO,
    ROW,
    Fleet,
    Traffic,
    kill,
    retirements,
    until,
)
from tests.fixtures.fault_report import ScenarioResult
from tests.fixtures.gateway import MODEL, GatewayProcess
from tests.fixtures.haproxy import HAProxy
from tests.fixtures.mlflow_server import MlflowServer
from tests.fixtures.prefect_server import BIN, PrefectServer

pytestmark = pytest.mark.slow

# Set through the policy, as `chassis rollout --lease-seconds 20` does. The step holds
# (it never gathers its samples) far longer than the outage.
LEASE_SECONDS = 20.0
POLICY = HOLDING.model_copy(update={"lease_seconds": LEASE_SECONDS, "step_seconds": 300.0})


def store(home: Path) -> Registry:
    """This process reads the SQLite store directly (up whatever the server does)."""
    return Registry.from_settings(ChassisSettings(home=home))


POOL = "chassis-process"


@dataclass
class Deployment:
    server: PrefectServer
    deployment_id: str
    env: dict[str, str]  # the worker's, without the registry's address


def deploy_rollout(root: Path) -> Deployment:
    """A real `prefect server`, a process work pool and the rollout deployment from
    deployments/prefect.yaml, as `make deploy` applies them (the worker starts later)."""
    server = PrefectServer(root)
    server.start()
    env = {
        **os.environ,
        "PREFECT_API_URL": server.api_url,
        "CHASSIS_PROJECT_DIR": str(REPO),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    try:
        for args in (
            ["work-pool", "create", POOL, "--type", "process", "--overwrite"],
            ["--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml"],
        ):
            if args[1] == "deploy":
                args = [*args, "--name", "rollout"]
            done = subprocess.run(
                [str(BIN / "prefect"), *args],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert done.returncode == 0, done.stdout + done.stderr
        deployment = server.get("/deployments/name/rollout/rollout")
    except BaseException:
        server.stop()
        raise
    return Deployment(server, deployment["id"], env)


@dataclass
class ServedFleet(Fleet):
    server: MlflowServer = field(default=None)  # type: ignore[assignment]
    prefect: Future = field(default=None)  # type: ignore[assignment]  # of a Deployment


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedFleet]:
    from flows.release import release

    root = tmp_path_factory.mktemp("registry-outage")
    home = root / "chassis"
    # The worker scenario's Prefect server starts meanwhile (it takes ~30 s on 2 cores).
    background = ThreadPoolExecutor(1)
    prefect = background.submit(deploy_rollout, root / "prefect")
    # Kept for the module: the test reads the store and the admin token from this home.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHASSIS_HOME", str(home))
        server = MlflowServer(
            ["--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}"], {}, root / "mlflow.log"
        )
        replicas = [
            GatewayProcess(
                home,
                env={
                    "CHASSIS_TRACKING_URI": server.url,
                    "CHASSIS_GATEWAY_LOCAL_DIR": str(root / f"replica-{i}"),
                    "CHASSIS_GATEWAY_DRAIN_SECONDS": "1.5",
                },
            )
            for i in range(3)
        ]
        try:
            release(spec="tests.fixtures.specs:good", seed=0, compression="off")  # v1 champion
            server.start()
            for replica in replicas:
                replica.launch()
            for replica in replicas:
                replica.wait_ready()
            proxy = HAProxy(root, [replica.url for replica in replicas]).start()
            try:
                yield ServedFleet(home, replicas, proxy, server, prefect)
            finally:
                proxy.stop()
        finally:
            for replica in replicas:
                replica.stop()
            server.stop()
            background.shutdown(wait=True)
            if prefect.exception() is None:
                prefect.result().server.stop()


def start_flow(fleet: ServedFleet, version: int, log: Path) -> subprocess.Popen:
    import json

    from prefect.settings import PREFECT_API_URL

    args = {
        "model": MODEL,
        "version": version,
        "policy": POLICY.model_dump(),
        "gateway_url": fleet.proxy.url,
        "replicas": fleet.urls(),
    }
    env = {
        **os.environ,
        "CHASSIS_HOME": str(fleet.home),
        "CHASSIS_TRACKING_URI": fleet.server.url,  # the flow writes through the server
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


def direct_versions(replica: GatewayProcess, count: int) -> collections.Counter:
    """(status, version) of `count` requests sent to one replica, not through haproxy."""
    seen: collections.Counter = collections.Counter()
    with httpx.Client(timeout=10) as client:
        for _ in range(count):
            response = client.post(
                f"{replica.url}/v1/models/{MODEL}/predict", json={"instances": [ROW]}
            )
            seen[(response.status_code, int(response.headers.get("x-model-version", "0")))] += 1
    return seen


@dataclass
class Outage:
    """What one run of the scenario observed; the tests below judge it."""

    version: int
    orphan: RolloutRecord  # the record as the outage froze it
    local_leases: dict[str, float]  # each replica's own copy of the lease's end
    off_split_at: dict[str, float]  # when each replica was first seen on the champion alone
    direct: dict[str, collections.Counter]  # requests sent to each replica after that
    traffic: list[tuple[float, int | str, int]]
    stopped_at: float
    flow_returncode_during: int | None  # the flow, once the lease plus its retry had passed
    restart_began: float  # the server asked to start again
    restarted_at: float  # and answering
    record: RolloutRecord  # the stable record written after the outage
    retired: list[chassis.registry.AuditRecord]
    audit_after: list[chassis.registry.AuditRecord]  # every audit record after the rollout started
    states: list[dict]
    aliases: dict[str, int]
    flow_returncode: int | None
    flow_exited_at: float
    flow_output: str


def written_at(record: RolloutRecord) -> float:
    return lease.parse_time(record.written_at)


@pytest.fixture(scope="module")
def outage(fleet: ServedFleet, tmp_path_factory: pytest.TempPathFactory, fault_report) -> Outage:
    version = store(fleet.home).register_copy(MODEL, CHAMPION, "registry outage mid-rollout")
    log = tmp_path_factory.mktemp("outage-flow") / "flow.log"
    audit_before = max((r.sequence for r in store(fleet.home).history(MODEL)), default=0)
    flow = start_flow(fleet, version, log)
    try:
        with Traffic(fleet.proxy.url) as traffic:

            def renewed_and_served() -> RolloutRecord | None:
                """A renewal of the canary that every replica has read, written just now:
                the flow is mid-step, judging its window, for a third of the lease more."""
                assert flow.poll() is None, log.read_text()[-3000:]
                record = store(fleet.home).read_rollout_record(MODEL)
                if record is None or record.candidate_version != version or record.generation < 2:
                    return None
                if time.time() - written_at(record) > 2.0:
                    return None
                states = [fleet.state(replica) for replica in fleet.replicas]
                ok = all(s["generation"] == record.generation for s in states)
                return record if ok else None

            renewal = until(
                renewed_and_served, 180, f"every replica on a renewed canary of v{version}"
            )
            assert (renewal.mode, renewal.percent, renewal.leased) == ("canary", 25.0, True)
            fleet.server.stop()
            stopped_at = time.time()
            orphan = store(fleet.home).read_rollout_record(MODEL)  # nobody can write it now
            assert orphan is not None and orphan.candidate_version == version
            lease_end = lease.expires_at(orphan)
            assert lease_end is not None
            local_leases = {r.url: fleet.state(r)["lease_until"] for r in fleet.replicas}

            off_split_at: dict[str, float] = {}

            def all_on_champion() -> bool:
                for replica in fleet.replicas:
                    state = fleet.state(replica)
                    if state["candidate_version"] is None and state["stable_version"] == CHAMPION:
                        off_split_at.setdefault(replica.url, time.time())
                return len(off_split_at) == len(fleet.replicas)

            until(all_on_champion, LEASE_SECONDS + 30, "every replica serves the champion alone")
            direct = {replica.url: direct_versions(replica, 30) for replica in fleet.replicas}
            # README: the flow retries its return to stable for up to the lease, then fails
            # naming the split it left. Give it that, and its own exit, before the server
            # comes back.
            until(
                lambda: flow.poll() is not None or time.time() > lease_end + LEASE_SECONDS + 15,
                3 * LEASE_SECONDS,
                "the lease and the flow's retry to pass",
            )
            returncode_during = flow.poll()
            restart_began = time.time()
            fleet.server.start()
            restarted_at = time.time()
            record = until(
                lambda: (r := store(fleet.home).read_rollout_record(MODEL)) and not r.leased and r,
                60,
                "a stable record replaces the orphan",
            )
            until(lambda: retirements(version), 60, "the challenger is retired")

            def at_the_stable_generation() -> bool:
                return all(
                    fleet.state(r)["generation"] == record.generation for r in fleet.replicas
                )

            until(at_the_stable_generation, 30, "every replica at the stable record's generation")
            # The flow may still act once the registry answers (its own retries): wait for
            # it before counting who wrote what. MLflow's client retries a call for minutes.
            with contextlib.suppress(subprocess.TimeoutExpired):
                flow.wait(timeout=240)
            flow_exited_at = time.time()
    finally:
        if flow.poll() is None:
            kill(flow)
    states = [fleet.state(replica) for replica in fleet.replicas]
    aliases = store(fleet.home).current_aliases(MODEL)
    retired = retirements(version)
    result = Outage(
        version=version,
        orphan=orphan,
        local_leases=local_leases,
        off_split_at=off_split_at,
        direct=direct,
        traffic=list(traffic.answers),
        stopped_at=stopped_at,
        flow_returncode_during=returncode_during,
        restart_began=restart_began,
        restarted_at=restarted_at,
        record=store(fleet.home).read_rollout_record(MODEL) or record,
        retired=retired,
        audit_after=[r for r in store(fleet.home).history(MODEL) if r.sequence > audit_before],
        states=states,
        aliases=aliases,
        flow_returncode=flow.returncode,
        flow_exited_at=flow_exited_at,
        flow_output=log.read_text(),
    )
    sent, answered, failed = traffic.tally()
    everywhere = max(off_split_at.values())
    late = sum(1 for at, _, served in result.traffic if at > everywhere and served == version)
    fault_report.add(
        ScenarioResult(
            scenario="registry down mid-rollout (flow alive): the replicas end the split at "
            "the lease, one of them retires the challenger once the registry is back",
            sent=sent,
            answered=answered,
            good_failed=failed,
            alias_matches_served=all(
                s["stable_version"] == aliases.get("champion") and s["candidate_version"] is None
                for s in states
            ),
            unvalidated_served=0,
            lost="nothing"
            if len(retired) == 1 and late == 0
            else f"{len(retired)} retirements, {late} candidate answers after the fallback",
        )
    )
    print(
        f"outage: stopped {stopped_at - lease_end:+.1f} s from the lease end, replicas left "
        f"the split {', '.join(f'{t - lease_end:+.1f}' for t in off_split_at.values())} s; "
        f"registry back {restarted_at - lease_end:+.1f} s; stable record by "
        f"{result.record.written_by} at {written_at(result.record) - lease_end:+.1f} s; "
        f"flow exit {flow.returncode} at {flow_exited_at - lease_end:+.1f} s; "
        f"traffic {sent} sent, {answered} answered, {failed} 5xx"
    )
    return result


def test_registry_down_mid_step_the_replicas_end_the_split_at_the_lease(outage: Outage):
    lease_end = lease.expires_at(outage.orphan)
    assert lease_end is not None
    statuses = collections.Counter(status for _, status, _ in outage.traffic)
    # Every replica kept answering through the outage: no 5xx, no dropped connection.
    assert set(statuses) == {200}, statuses
    # Each replica's own copy of the lease is the registry's (it read the renewal before
    # the outage), and it served the split until then, the champion alone after it.
    assert set(outage.local_leases.values()) == {lease_end}, (outage.local_leases, lease_end)
    assert min(outage.off_split_at.values()) >= lease_end, (outage.off_split_at, lease_end)
    held = [v for at, _, v in outage.traffic if outage.stopped_at < at < lease_end - 1]
    assert outage.version in held, "the split was not served while the lease held"
    everywhere = max(outage.off_split_at.values())
    late = [v for at, _, v in outage.traffic if at > everywhere and v == outage.version]
    assert not late, f"{len(late)} candidate answers after every replica left the split"
    for url, seen in outage.direct.items():
        assert seen == {(200, CHAMPION): 30}, (url, seen)


def test_registry_back_one_party_ends_the_orphan_and_the_fleet_serves_the_champion(
    outage: Outage,
):
    record = outage.record
    assert (record.mode, record.stable_version, record.candidate_version) == ("stable", None, None)
    assert not record.leased and record.generation == outage.orphan.generation + 1
    # Written after the registry came back, by one party, which also retired the challenger
    # (one audit record, nothing else written to the trail).
    assert written_at(record) >= outage.restart_began
    assert len(outage.retired) == 1, outage.retired
    assert outage.retired[0].actor == record.written_by
    assert [r.action for r in outage.audit_after] == ["set-challenger", "retire-challenger"]
    assert outage.aliases == {"champion": CHAMPION}
    assert [
        (s["generation"], s["stable_version"], s["candidate_version"], s["mode"])
        for s in outage.states
    ] == [(record.generation, CHAMPION, None, "stable")] * len(outage.states)


def test_registry_down_mid_step_the_flow_gives_up_naming_the_split_it_left(outage: Outage):
    # README ("A rollout always ends safe"): when the flow fails mid-step (the registry),
    # it retries the return to stable with backoff for up to the lease; if it still
    # cannot, its error says which split it left and when the lease ends it.
    assert outage.flow_returncode_during not in (None, 0), "the flow still ran"
    assert "The rollback could not be written" in outage.flow_output
    assert lease.describe(outage.orphan) in outage.flow_output


# ---- the Prefect worker killed mid-rollout ------------------------------------------------

# The step ends on its own (too few samples: paused) well after the lease that holds when
# the worker is killed, so the test sees whether anyone renewed it meanwhile.
WORKER_POLICY = HOLDING.model_copy(update={"lease_seconds": LEASE_SECONDS, "step_seconds": 45.0})


@dataclass
class WorkerKilled:
    version: int
    run: dict
    at_kill: RolloutRecord  # the record when the worker was killed
    flow_alive: bool  # the flow run's process, just after the kill
    flow_own_group: bool
    after_lease: RolloutRecord | None  # the record once the lease at the kill had passed
    states_after_lease: list[dict]
    ended: RolloutRecord  # the stable record that ended the rollout
    state: dict  # the flow run's final state on the Prefect server
    logs: list[str]  # the flow run's log lines on the server
    states: list[dict]
    aliases: dict[str, int]
    retired: list[chassis.registry.AuditRecord]
    traffic: tuple[int, int, int]


def owner_pid(record: RolloutRecord) -> int:
    return int(record.owner.rsplit(" pid ", 1)[1])


@pytest.fixture(scope="module")
def worker_killed(
    fleet: ServedFleet, tmp_path_factory: pytest.TempPathFactory, fault_report
) -> WorkerKilled:
    deployment: Deployment = fleet.prefect.result(timeout=300)
    server = deployment.server
    env = {**deployment.env, "CHASSIS_HOME": str(fleet.home)}
    env["CHASSIS_TRACKING_URI"] = fleet.server.url
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with log.open("ab") as out:
        # As a service manager starts it: its own process group, killed as a whole.
        worker = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", POOL],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    version = store(fleet.home).register_copy(MODEL, CHAMPION, "worker killed mid-rollout")
    parameters = {
        "model_name": MODEL,
        "version": version,
        "policy": WORKER_POLICY.model_dump(),
        "drive_traffic": "never",
        "gateway_url": fleet.proxy.url,
        "replicas": fleet.urls(),
    }
    run = server.post(
        f"/deployments/{deployment.deployment_id}/create_flow_run", {"parameters": parameters}
    )

    def final_state() -> dict | None:
        state = server.get(f"/flow_runs/{run['id']}")["state"]
        return state if state["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} else None

    try:
        with Traffic(fleet.proxy.url) as traffic:

            def canary_everywhere() -> RolloutRecord | None:
                assert final_state() is None, server.log_messages(run["id"])[-10:]
                record = store(fleet.home).read_rollout_record(MODEL)
                if record is None or record.candidate_version != version or not record.leased:
                    return None
                states = [fleet.state(replica) for replica in fleet.replicas]
                return record if all(s["candidate_version"] == version for s in states) else None

            committed = until(canary_everywhere, 180, f"every replica on the canary of v{version}")
            # Mid-step: a renewal written, the window being judged.
            at_kill = until(
                lambda: (
                    (r := store(fleet.home).read_rollout_record(MODEL))
                    and r.generation > committed.generation
                    and r
                ),
                3 * LEASE_SECONDS,
                "the flow run renews its lease",
            )
            pid = owner_pid(at_kill)
            killed_at = time.time()
            os.killpg(worker.pid, signal.SIGKILL)  # the worker's whole group, no hook runs
            worker.wait(timeout=10)
            flow_alive = Path(f"/proc/{pid}").exists()
            flow_own_group = flow_alive and os.getpgid(pid) != worker.pid
            lease_at_kill = lease.expires_at(at_kill)
            assert lease_at_kill is not None

            def past_the_lease_at_kill() -> list[dict] | None:
                if time.time() <= lease_at_kill + 2:
                    return None
                return [fleet.state(replica) for replica in fleet.replicas]

            states_after_lease = until(past_the_lease_at_kill, 2 * LEASE_SECONDS, "the lease")
            after_lease = store(fleet.home).read_rollout_record(MODEL)
            ended = until(
                lambda: (r := store(fleet.home).read_rollout_record(MODEL)) and not r.leased and r,
                WORKER_POLICY.step_seconds + 60,
                "the rollout returns to stable",
            )
            state = until(final_state, 60, "the flow run's final state")

            def on_champion() -> list[dict] | None:
                states = [fleet.state(replica) for replica in fleet.replicas]
                ok = all(
                    (s["candidate_version"], s["generation"]) == (None, ended.generation)
                    for s in states
                )
                return states if ok else None

            states = until(on_champion, 30, "every replica on the champion, stable generation")
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
    result = WorkerKilled(
        version=version,
        # As it is now: the flow's run name template renamed it when it started.
        run=server.get(f"/flow_runs/{run['id']}"),
        at_kill=at_kill,
        flow_alive=flow_alive,
        flow_own_group=flow_own_group,
        after_lease=after_lease,
        states_after_lease=states_after_lease,
        ended=ended,
        state=state,
        logs=server.log_messages(run["id"]),
        states=states,
        aliases=store(fleet.home).current_aliases(MODEL),
        retired=retirements(version),
        traffic=traffic.tally(),
    )
    sent, answered, failed = result.traffic
    fault_report.add(
        ScenarioResult(
            scenario="Prefect worker SIGKILLed (its process group) mid-canary: the flow run "
            "lives on and keeps its lease, then is aborted at its next console log line",
            sent=sent,
            answered=answered,
            good_failed=failed,
            alias_matches_served=all(
                s["stable_version"] == result.aliases.get("champion")
                and s["candidate_version"] is None
                for s in states
            ),
            unvalidated_served=0,
            lost="nothing"
            if not result.retired
            else f"nothing; v{version} retired as '{result.retired[0].reason}' "
            f"({len(result.retired)} retirement(s)), its step's verdict lost",
        )
    )
    print(
        f"worker killed {killed_at - lease_at_kill:+.1f} s from the lease then; flow pid "
        f"{pid} alive {flow_alive}, own group {flow_own_group}; stable at "
        f"{written_at(ended) - lease_at_kill:+.1f} s by {ended.written_by}; run "
        f"{state['type']}: {state['message']}; traffic {sent} sent, {answered} answered, "
        f"{failed} 5xx"
    )
    return result


def test_a_killed_prefect_worker_leaves_the_rollout_to_its_live_flow_run_which_ends_it_safe(
    worker_killed: WorkerKilled,
):
    w = worker_killed
    sent, answered, failed = w.traffic
    assert failed == 0 and answered == sent
    # Prefect starts each flow run in its own session: the worker's group is not the run's.
    assert w.flow_alive and w.flow_own_group
    # Its owner alive, the split is not orphaned: past the lease that held at the kill,
    # the same owner renewed it and every replica still serves it.
    assert w.after_lease is not None and w.after_lease.leased
    assert w.after_lease.owner == w.at_kill.owner
    assert w.after_lease.generation > w.at_kill.generation
    assert all(s["candidate_version"] == w.version for s in w.states_after_lease)
    # The flow run itself returned the record to stable, and every replica follows it.
    assert w.ended.written_by.endswith(f"via flow run {w.run['name']} ({w.run['id']})")
    assert [(s["stable_version"], s["mode"]) for s in w.states] == [(CHAMPION, "stable")] * 3
    assert w.aliases.get("champion") == CHAMPION


def test_a_killed_prefect_worker_the_flow_run_ends_on_its_own_verdict(
    worker_killed: WorkerKilled,
):
    w = worker_killed
    assert w.state["type"] == "FAILED", (w.state, w.logs[-8:])
    assert "RolloutPaused" in w.state["message"]
    assert w.retired == [] and w.aliases == {"champion": CHAMPION, "challenger": w.version}
