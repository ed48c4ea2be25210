"""Feedback through one address: three `chassis serve` replicas, each with the others as
peers (CHASSIS_GATEWAY_PEERS), behind a real haproxy, on tiny registered versions (no
release run). Predictions and their feedback both go through haproxy's round robin, so
most feedback lands on a replica that did not answer the prediction."""

from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.gateway import GatewayProcess
from tests.fixtures.haproxy import HAProxy
from tests.fixtures.registries import home_registry
from tests.fixtures.registry_versions import register_tiny_versions

MODEL = "fleet-feedback"
PREDICTIONS = 30


@pytest.fixture
def fleet(chassis_home, tmp_path) -> Iterator[tuple[list[GatewayProcess], HAProxy]]:
    # y = x + 1 with one output: a one-class classifier, so label 0 is right and 1 is not
    # a class of it.
    register_tiny_versions(MODEL, 1)
    home_registry().promote(MODEL, 1, expected_champion=None, actor="user:test", reason="test")
    replicas = [GatewayProcess(chassis_home, models=(MODEL,)) for _ in range(3)]
    peers = ",".join(replica.url for replica in replicas)
    for i, replica in enumerate(replicas):
        replica.extra_env = {
            "CHASSIS_GATEWAY_LOCAL_DIR": str(tmp_path / f"replica-{i}"),
            "CHASSIS_GATEWAY_PEERS": peers,
        }
        replica.launch()
    for replica in replicas:
        replica.wait_ready()
    proxy = HAProxy(tmp_path, [replica.url for replica in replicas]).start()
    yield replicas, proxy
    proxy.stop()
    for replica in replicas:
        replica.stop()


def metric(url: str, sample: str) -> float | None:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return None


def test_feedback_through_the_load_balancer_is_joined_by_the_replica_that_answered(fleet):
    replicas, proxy = fleet
    tags = {httpx.get(f"{r.url}/healthz", timeout=10).json()["replica"]: r.url for r in replicas}
    assert len(tags) == 3
    with httpx.Client(base_url=proxy.url, timeout=30) as client:
        ids = [
            client.post(f"/v1/models/{MODEL}/predict", json={"instances": [[0.5]]}).json()["ids"][0]
            for _ in range(PREDICTIONS)
        ]
        answered = {tag: sum(i.startswith(tag) for i in ids) for tag in tags}
        assert all(answered.values()), answered  # round robin: every replica answered some
        # One item a request, through the balancer, in reverse order (in the same order, the
        # round robin would bring each back to the replica that answered it): about 2/3
        # land elsewhere.
        singles = [
            client.post(f"/v1/models/{MODEL}/feedback", json={"id": i, "label": 0})
            for i in reversed(ids[:-3])
        ]
        assert [r.status_code for r in singles] == [200] * len(singles), [
            r.text for r in singles if r.status_code != 200
        ]
        # A batch naming every replica's predictions, with one bad label: refused whole.
        last = [{"id": i, "label": 0} for i in ids[-3:]]
        mixed = client.post(
            f"/v1/models/{MODEL}/feedback",
            json={"feedback": [last[0], last[1], {**last[2], "label": 1}]},
        )
        counted_after_refusal = {
            tag: metric(url, f'chassis_live_feedback_rows{{model="{MODEL}",version="1"}}')
            for tag, url in tags.items()
        }
        accepted = client.post(f"/v1/models/{MODEL}/feedback", json={"feedback": last})
        again = client.post(f"/v1/models/{MODEL}/feedback", json={"feedback": last})
    assert (mixed.status_code, mixed.json()["reason"], mixed.json()["index"]) == (
        422,
        "bad_label",
        2,
    ), mixed.text
    assert accepted.status_code == 200 and accepted.json()["accepted"] == 3, accepted.text
    assert (again.status_code, again.json()["reason"]) == (409, "duplicate"), again.text

    # Nothing of the refused batch counted anywhere: each replica then held exactly the
    # singles it had answered.
    singles_answered = {tag: sum(i.startswith(tag) for i in ids[:-3]) for tag in tags}
    assert counted_after_refusal == {
        tag: float(n) if n else None for tag, n in singles_answered.items()
    }
    forwarded = 0.0
    for tag, url in tags.items():  # live accuracy on the replica that answered each one
        rows = metric(url, f'chassis_live_feedback_rows{{model="{MODEL}",version="1"}}')
        assert rows == answered[tag], (tag, rows, answered)
        assert metric(url, f'chassis_live_accuracy_ratio{{model="{MODEL}",version="1"}}') == 1.0
        forwarded += metric(url, f'chassis_feedback_forwarded_total{{model="{MODEL}"}}') or 0.0
    assert forwarded >= PREDICTIONS / 3  # round robin: most feedback was received elsewhere
    print(f"answered by replica: {answered}; forwarded items: {forwarded:g} of {PREDICTIONS}")
