"""kill -9 of one of three gateway replicas behind a real haproxy, under steady load.

The fleet is deployed as `tests/integration/test_fleet.py` deploys it: three `chassis
serve` processes over one registry, each with its own local folder, behind haproxy with
health checks on /readyz and `retries 3`, `option redispatch`, `retry-on conn-failure
empty-response 503` (tests/fixtures/haproxy.py): a request whose replica dies under it,
or that is sent to the dead one before its health check fails, is retried on another.
The killed replica is started again on its port and folder, and must come back serving
what the others serve: the champion the registry names.
"""

import collections
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fixtures.fault_gateway import (
    admin_headers,
    home_environment,
    metric_sum,
    release_into,
)
from tests.fixtures.fault_report import ScenarioResult
from tests.fixtures.gateway import MODEL, GatewayProcess
from tests.fixtures.haproxy import HAProxy
from tests.fixtures.registries import home_registry

pytestmark = pytest.mark.slow

ROW = [0.5, -1.0, 2.0, 0.0]
USERS = 4


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults-replicas")


@pytest.fixture(scope="module")
def home(root: Path) -> Path:
    home = root / "chassis"
    release_into(home, "tests.fixtures.specs:good")
    return home


@dataclass
class Fleet:
    replicas: list[GatewayProcess]
    proxy: HAProxy
    auth: dict[str, str]

    def served(self, replica: GatewayProcess) -> dict:
        return httpx.get(f"{replica.url}/admin/models/{MODEL}", headers=self.auth).json()


@pytest.fixture(scope="module")
def fleet(home: Path, root: Path) -> Iterator[Fleet]:
    replicas = [
        GatewayProcess(home, env={"CHASSIS_GATEWAY_LOCAL_DIR": str(root / f"replica-{i}")})
        for i in range(3)
    ]
    for replica in replicas:
        replica.launch()
    try:
        for replica in replicas:
            replica.wait_ready()
        proxy = HAProxy(root, [replica.url for replica in replicas]).start()
        yield Fleet(replicas, proxy, admin_headers(home))
        proxy.stop()
    finally:
        for replica in replicas:
            replica.stop()


class Load:
    """USERS clients sending predict requests through the proxy, one after another, each
    outcome kept: a status and the version that answered, or the transport error."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.outcomes: collections.Counter[tuple[int | str, str]] = collections.Counter()
        self.threads = [threading.Thread(target=self._user) for _ in range(USERS)]

    @property
    def sent(self) -> int:
        with self.lock:
            return sum(self.outcomes.values())

    def _user(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    response = client.post(
                        f"{self.url}/v1/models/{MODEL}/predict", json={"instances": [ROW]}
                    )
                    outcome: tuple[int | str, str] = (
                        response.status_code,
                        response.headers.get("x-model-version", ""),
                    )
                except httpx.TransportError as error:
                    outcome = (type(error).__name__, "")
                with self.lock:
                    self.outcomes[outcome] += 1

    def wait_for(self, more: int, seconds: float = 120) -> None:
        """Until `more` further requests have been answered (or failed)."""
        target = self.sent + more
        deadline = time.monotonic() + seconds
        while self.sent < target:
            assert time.monotonic() < deadline, f"load stalled at {self.sent} requests"
            time.sleep(0.05)

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def test_kill_9_of_one_replica_under_load_fails_no_request_and_it_rejoins_on_the_champion(
    fleet, home, fault_report
):
    victim = fleet.replicas[1]
    assert victim.process is not None
    rejoined_requests = 0.0
    with Load(fleet.proxy.url) as load:
        load.wait_for(200)  # load is flowing through every replica before the kill
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=10)
        killed_at = load.sent
        load.wait_for(300)  # served by the two others meanwhile
        victim.start()  # same port, same local folder: as a restarted pod
        # Until haproxy's health check sends the restarted replica traffic again (its
        # counters start from zero in the new process).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rejoined_requests = metric_sum(victim.url, "chassis_requests_total", model=MODEL)
            if rejoined_requests >= 20:
                break
            time.sleep(0.1)
        load.wait_for(200)
    counters = fleet.proxy.backend_counters()
    outcomes = load.outcomes
    sent = sum(outcomes.values())
    answered = sum(n for (status, _), n in outcomes.items() if isinstance(status, int))
    failed = {key: n for key, n in outcomes.items() if key[0] != 200}
    with home_environment(home):
        champion = home_registry().version_for_alias(MODEL, "champion")
    served = [fleet.served(replica) for replica in fleet.replicas]
    stable = [status["state"]["stable_version"] for status in served]
    generations = [status["generation"] for status in served]
    fault_report.add(
        ScenarioResult(
            f"kill -9 of 1 of 3 replicas behind haproxy under load (killed after {killed_at})",
            sent=sent,
            answered=answered,
            good_failed=sum(failed.values()),
            alias_matches_served=stable == [champion] * 3,
            unvalidated_served=0,
            lost=("nothing" if not failed else f"{failed}")
            + f" (haproxy: {counters['wretr']} retried, {counters['wredis']} redispatched)",
        )
    )
    # The kill did cost connections (requests in flight on the dead replica, or sent to it
    # before its health check failed), and haproxy retried every one of them elsewhere.
    assert counters["wretr"] + counters["wredis"] > 0, counters
    assert failed == {}, failed
    assert {version for _, version in outcomes} == {str(champion)}
    assert stable == [champion] * 3, stable  # the restarted replica serves the champion
    assert len(set(generations)) == 1, generations
    assert rejoined_requests >= 20  # and takes its share of the traffic again
    assert counters["hrsp_5xx"] == 0, counters
