"""Feedback in a fleet (chassis/serving/feedback_peers.py): three gateways in process, their
ASGI apps joined by an httpx transport that hands each request to the app its host names
(no server, no socket). Feedback sent to any replica is joined on the replica that answered
the prediction, a body is judged whole across replicas, a forwarded body is never forwarded
again, and a tag no replica has is refused saying the replica is gone."""

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from chassis.errors import SettingsError
from chassis.serving.asgi import GatewayApp
from chassis.serving.feedback_peers import (
    CHECK,
    COMMIT,
    FORWARDED_BY,
    OWNER,
    PHASE,
    FeedbackRouter,
    split_by_owner,
)
from chassis.serving.gateway import Gateway
from chassis.serving.policy import peer_specs, serving_policy_from
from tests.unit.test_feedback import feedback, metrics_text, served_text_model
from tests.unit.test_serving_text import MODEL, post, predict

HOSTS = ("r0.test", "r1.test", "r2.test")
PEERS = tuple(f"http://{host}:8000" for host in HOSTS)


class Network(httpx.AsyncBaseTransport):
    """What the replicas send each other: each request handed to the app its host names, or
    a connection error for a host that is down; every request is noted."""

    def __init__(self) -> None:
        self.apps: dict[str, GatewayApp] = {}
        self.down: set[str] = set()
        self.sent: list[tuple[str, str, str | None]] = []  # (host, path, phase)
        # Run before a commit reaches a host (what happens meanwhile, elsewhere).
        self.before_commit: dict[str, Callable[[], Awaitable[object]]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.sent.append((host, request.url.path, request.headers.get(PHASE)))
        if host in self.down or host not in self.apps:
            raise httpx.ConnectError(f"connection refused by {host}", request=request)
        if request.headers.get(PHASE) == COMMIT and host in self.before_commit:
            await self.before_commit.pop(host)()
        transport = httpx.ASGITransport(app=cast(Any, self.apps[host]))
        return await transport.handle_async_request(request)

    def forwards(self) -> list[tuple[str, str | None]]:
        return [(host, phase) for host, path, phase in self.sent if path.endswith("/feedback")]


class Fleet:
    def __init__(self, tmp_path: Path) -> None:
        self.network = Network()
        self.gateways: list[Gateway] = []
        self.apps: list[GatewayApp] = []
        for host in HOSTS:
            gateway, app, _ = served_text_model(tmp_path / host, peers=PEERS)
            gateway.loop = asyncio.get_running_loop()
            assert app.feedback_router is not None
            app.feedback_router.client = httpx.AsyncClient(transport=self.network)
            self.network.apps[host] = app
            self.gateways.append(gateway)
            self.apps.append(app)

    def router(self, replica: int) -> FeedbackRouter:
        router = self.apps[replica].feedback_router
        assert router is not None
        return router

    async def predicted(self, replica: int, texts: list[str]) -> list[str]:
        status, answer = await predict(self.apps[replica], {"instances": texts})
        assert status == 200, answer
        return answer["ids"]


def in_fleet(tmp_path: Path, scenario: Callable[[Fleet], Any]) -> Any:
    async def run() -> Any:
        return await scenario(Fleet(tmp_path))

    return asyncio.run(run())


def counted(gateway: Gateway, outcome: str) -> str | None:
    """The chassis_feedback_total sample of `outcome` on a replica (None: never counted)."""
    prefix = f'chassis_feedback_total{{model="{MODEL}",outcome="{outcome}",version="1"}} '
    line = next((x for x in metrics_text(gateway).splitlines() if x.startswith(prefix)), None)
    return None if line is None else line.removeprefix(prefix)


def test_items_are_grouped_by_the_replica_tag_their_ids_start_with():
    items: list[tuple[str, object]] = [
        ("aaaaaaaa-1-0", 1),
        ("bbbbbbbb-4-2", 0),
        ("aaaaaaaa-2-0", 1),
        ("not-an-id", 1),  # stays here, refused here as not a prediction id
        ("cccccccc-0-0", 1),
    ]
    assert split_by_owner(items, "cccccccc") == {
        "aaaaaaaa": [0, 2],
        "bbbbbbbb": [1],
        "cccccccc": [3, 4],
    }


def test_feedback_sent_to_one_replica_is_joined_where_each_prediction_was_answered(
    tmp_path: Path,
):
    async def scenario(fleet: Fleet):
        ids = [(await fleet.predicted(i, ["a good film"]))[0] for i in range(3)]
        body = {
            "feedback": [{"id": i, "label": label} for i, label in zip(ids, (1, 1, 0), strict=True)]
        }
        return ids, await feedback(fleet.apps[0], body), fleet

    ids, (status, answer), fleet = in_fleet(tmp_path, scenario)
    assert status == 200, answer
    assert [(item["id"], item["correct"]) for item in answer["feedback"]] == [
        (ids[0], True),
        (ids[1], True),
        (ids[2], False),
    ]
    r0, r1, r2 = fleet.gateways
    # Each replica counted the feedback on its own predictions: live accuracy where the
    # version answered; the replica that received the body counted what it forwarded.
    assert (counted(r0, "correct"), counted(r1, "correct"), counted(r2, "wrong")) == (
        "1.0",
        "1.0",
        "1.0",
    )
    assert counted(r0, "wrong") is None and counted(r1, "wrong") is None
    assert f'chassis_feedback_forwarded_total{{model="{MODEL}"}} 2.0' in metrics_text(r0)
    assert [phase for _, phase in fleet.network.forwards()] == [CHECK, CHECK, COMMIT, COMMIT]


def test_a_body_about_one_other_replica_is_forwarded_once_and_judged_there(tmp_path: Path):
    async def scenario(fleet: Fleet):
        ids = await fleet.predicted(1, ["good", "bad"])
        body = {"feedback": [{"id": i, "label": 1} for i in ids]}
        return await feedback(fleet.apps[2], body), fleet

    (status, answer), fleet = in_fleet(tmp_path, scenario)
    assert status == 200 and answer["accepted"] == 2, answer
    assert fleet.network.forwards() == [("r1.test", COMMIT)]  # one round trip
    assert (counted(fleet.gateways[1], "correct"), counted(fleet.gateways[1], "wrong")) == (
        "1.0",
        "1.0",
    )


def test_one_bad_item_refuses_the_whole_body_on_every_replica(tmp_path: Path):
    async def scenario(fleet: Fleet):
        ids = [(await fleet.predicted(i, ["good"]))[0] for i in range(3)]
        good = [{"id": i, "label": 1} for i in ids]
        bad_label = await feedback(
            fleet.apps[0], {"feedback": [*good[:2], {**good[2], "label": 7}]}
        )
        nothing_counted = [counted(g, "correct") for g in fleet.gateways]
        accepted = await feedback(fleet.apps[1], {"feedback": good})
        duplicate = await feedback(fleet.apps[2], {"feedback": good})
        return bad_label, nothing_counted, accepted, duplicate, fleet

    bad_label, nothing_counted, accepted, duplicate, fleet = in_fleet(tmp_path, scenario)
    assert bad_label == (
        422,
        {
            "error": "feedback[2]: label 7 is not a class of this model (0..1)",
            "status": 422,
            "reason": "bad_label",
            "index": 2,
        },
    )
    assert nothing_counted == [None, None, None]
    # The corrected body is not a duplicate anywhere: the refused one marked nothing.
    assert accepted[0] == 200 and accepted[1]["accepted"] == 3, accepted
    assert [counted(g, "correct") for g in fleet.gateways] == ["1.0", "1.0", "1.0"]
    assert duplicate[0] == 409 and (duplicate[1]["reason"], duplicate[1]["index"]) == (
        "duplicate",
        0,
    )
    # Refusals are counted once, by the replica that answered the client.
    assert 'reason="bad_label"} 1.0' in metrics_text(fleet.gateways[0])
    assert 'reason="duplicate"} 1.0' in metrics_text(fleet.gateways[2])
    assert "chassis_feedback_refused_total{" not in metrics_text(fleet.gateways[1])


def test_a_duplicate_between_check_and_commit_says_which_items_were_counted(tmp_path: Path):
    async def scenario(fleet: Fleet):
        ids = [(await fleet.predicted(i, ["good"]))[0] for i in range(3)]
        # Another client's feedback on replica 1's prediction lands there between this
        # body's check and its commit.
        fleet.network.before_commit["r1.test"] = lambda: feedback(
            fleet.apps[1], {"id": ids[1], "label": 1}
        )
        body = {"feedback": [{"id": i, "label": 1} for i in ids]}
        return await feedback(fleet.apps[0], body), fleet

    (status, answer), fleet = in_fleet(tmp_path, scenario)
    assert (status, answer["reason"], answer["index"]) == (409, "duplicate", 1), answer
    assert "items [2] were counted on other replicas" in answer["error"]
    # Replica 2 had committed its item; replica 0 did not commit its own after the refusal.
    assert [counted(g, "correct") for g in fleet.gateways] == [None, "1.0", "1.0"]


def test_a_forwarded_body_is_judged_where_it_lands_and_never_forwarded_again(tmp_path: Path):
    async def scenario(fleet: Fleet):
        [other] = await fleet.predicted(1, ["good"])
        path = f"/v1/models/{MODEL}/feedback"
        marked = {FORWARDED_BY: "feedface", OWNER: fleet.gateways[0].replica}
        landed = await post(fleet.apps[0], path, {"id": other, "label": 1}, marked)
        misdirected = {FORWARDED_BY: "feedface", OWNER: fleet.gateways[1].replica}
        wrong_owner = await post(fleet.apps[0], path, {"id": other, "label": 1}, misdirected)
        return landed, wrong_owner, fleet

    landed, wrong_owner, fleet = in_fleet(tmp_path, scenario)
    assert landed[0] == 404 and landed[1]["reason"] == "unknown_id", landed
    assert "not answered by this replica" in landed[1]["detail"]
    assert wrong_owner[0] == 421, wrong_owner
    assert fleet.network.sent == []  # replica 0 asked nobody
    assert counted(fleet.gateways[1], "correct") is None


def test_a_tag_no_replica_has_is_a_replica_that_is_gone(tmp_path: Path):
    async def scenario(fleet: Fleet):
        [mine] = await fleet.predicted(0, ["good"])
        items = [{"id": mine, "label": 1}, {"id": "0badcafe-3-0", "label": 1}]
        return await feedback(fleet.apps[0], {"feedback": items}), fleet

    (status, answer), fleet = in_fleet(tmp_path, scenario)
    assert (status, answer["reason"], answer["index"]) == (404, "unknown_id", 1), answer
    assert "answered by replica 0badcafe, which is gone" in answer["error"]
    assert counted(fleet.gateways[0], "correct") is None


def test_a_replica_that_does_not_answer_refuses_the_body_with_503_naming_it(tmp_path: Path):
    async def scenario(fleet: Fleet):
        [mine] = await fleet.predicted(0, ["good"])
        [theirs] = await fleet.predicted(2, ["good"])
        await fleet.router(0).directory.look()  # r2's address is known, then r2 goes away
        fleet.network.down.add("r2.test")
        items = [{"id": mine, "label": 1}, {"id": theirs, "label": 1}]
        first = await feedback(fleet.apps[0], {"feedback": items})
        # Sent again at once (no new look yet): still the replica that did not answer.
        again = await feedback(fleet.apps[0], {"id": theirs, "label": 1})
        return first, again, fleet

    (status, answer), again, fleet = in_fleet(tmp_path, scenario)
    assert (status, answer["reason"], answer["index"]) == (503, "peer_unavailable", 1), answer
    assert "r2.test" in answer["error"] and "nothing was counted" in answer["error"]
    assert (again[0], again[1]["reason"]) == (503, "peer_unavailable"), again
    assert "r2.test" in again[1]["error"]
    assert counted(fleet.gateways[0], "correct") is None
    assert 'reason="peer_unavailable"} 2.0' in metrics_text(fleet.gateways[0])


def test_an_address_taken_over_by_another_replica_is_looked_up_again(tmp_path: Path):
    async def scenario(fleet: Fleet):
        [theirs] = await fleet.predicted(1, ["good"])
        await fleet.router(0).directory.look()
        # The two pods' addresses are swapped (as a new pod gets an old pod's address).
        apps = fleet.network.apps
        apps["r1.test"], apps["r2.test"] = apps["r2.test"], apps["r1.test"]
        return await feedback(fleet.apps[0], {"id": theirs, "label": 1}), fleet

    (status, answer), fleet = in_fleet(tmp_path, scenario)
    assert status == 200, answer
    assert fleet.network.forwards() == [("r1.test", COMMIT), ("r2.test", COMMIT)]
    assert counted(fleet.gateways[1], "correct") == "1.0"


def test_made_up_tags_make_at_most_one_look_over_the_fleet_a_second(tmp_path: Path):
    async def scenario(fleet: Fleet):
        now = [100.0]
        fleet.router(0).directory.clock = lambda: now[0]
        for tag in ("0badcafe", "1badcafe", "2badcafe"):
            now[0] += 0.3
            await feedback(fleet.apps[0], {"id": f"{tag}-0-0", "label": 1})
        first = len(fleet.network.sent)
        now[0] += 1.5
        await feedback(fleet.apps[0], {"id": "3badcafe-0-0", "label": 1})
        return first, len(fleet.network.sent)

    first, later = in_fleet(tmp_path, scenario)
    assert first == len(HOSTS)  # one look: each peer's /healthz once
    assert later == 2 * len(HOSTS)


def test_without_peers_another_replicas_id_is_refused_as_before(tmp_path: Path):
    gateway, app, _ = served_text_model(tmp_path)
    assert app.feedback_router is None
    status, answer = asyncio.run(feedback(app, {"id": "0badcafe-0-0", "label": 1}))
    assert (status, answer["reason"]) == (404, "unknown_id")
    assert "not answered by this replica" in answer["error"]
    assert gateway.replica in answer["error"]


def test_health_names_the_replica_tag(tmp_path: Path):
    gateway, app, _ = served_text_model(tmp_path)
    transport = httpx.ASGITransport(app=cast(Any, app))  # an ASGI app, typed by its own aliases

    async def health() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
            return await client.get("/healthz")

    assert asyncio.run(health()).json()["replica"] == gateway.replica


def test_peers_are_urls_or_dns_names_and_a_bad_one_is_named():
    spec = "dns:chassis-gateway-replicas:8000, http://10.0.0.7:8000"
    assert peer_specs(serving_policy_from({"peers": spec}).peers) == (
        "dns:chassis-gateway-replicas:8000",
        "http://10.0.0.7:8000",
    )
    assert peer_specs(serving_policy_from({}).peers) == ()
    with pytest.raises(SettingsError, match=r"^--peers 'dns:replicas': .*dns:HOST:PORT"):
        serving_policy_from({"peers": "dns:replicas"})
    with pytest.raises(SettingsError, match="'replicas:8000': expected a URL"):
        serving_policy_from({"peers": "replicas:8000"})
