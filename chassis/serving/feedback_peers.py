"""Feedback in a fleet: items about another replica's predictions are joined there.

A prediction's id starts with the tag of the replica that answered it, and only that
replica keeps the prediction (chassis/serving/feedback.py). Behind one Service or load
balancer, feedback lands on any replica; with peers configured (`CHASSIS_GATEWAY_PEERS`,
URLs and/or `dns:HOST:PORT` of a headless Service) the replica that receives a body splits
it by tag and forwards each other replica's part to it, marked with `x-chassis-forwarded-by`
so that the owner judges it itself and never forwards it again.

Where a tag is: each replica says its tag on GET /healthz; the directory asks every peer
once and keeps tag -> URL, and looks again when a tag is missing (pods come and go), at most
once a second so that made-up tags cannot turn each request into a look over the fleet.
A tag no peer has (every peer answered) is a replica that restarted or was scaled away:
404 unknown_id. A peer that does not answer: 503 peer_unavailable naming it, nothing
counted (the sender may send the body again). A forwarded request also names the tag it
is for (`x-chassis-feedback-owner`): a replica with another tag (a pod's address reused by
a new pod) answers 421 and the directory looks again, once.

A body is still taken whole or not at all. A body of one other replica's items goes to it
in one request, where it is judged and committed as on a single replica. A body spanning
several replicas is checked first on each (`x-chassis-feedback-phase: check`: found, not a
duplicate, a label the version could answer; nothing marked or counted), then committed on
each. The narrow race: feedback for the same id arriving at its owner between the check
and the commit (or a peer failing then) refuses that part's commit after other parts were
counted; the refusal says which items were counted.
"""

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import cast, get_args

import httpx
import orjson

from chassis.errors import FeedbackReason, FeedbackRefused, FleetError
from chassis.rollout.fleet import resolve_replicas
from chassis.serving.feedback import answer_item, parse_id
from chassis.serving.gateway import Gateway

FORWARDED_BY = "x-chassis-forwarded-by"  # the tag of the replica that forwarded a body
OWNER = "x-chassis-feedback-owner"  # the tag the forwarded body's ids name
PHASE = "x-chassis-feedback-phase"  # check (judge only) or commit (judge and count)
CHECK, COMMIT = "check", "commit"
# A forward or a look at a peer's tag waits this long: feedback is not on the predict
# path, but a stuck peer must not hold a client (or the sender's connection) for long.
FORWARD_TIMEOUT_SECONDS = 5.0
# A missing tag makes the directory look over the fleet at most this often.
LOOK_AGAIN_SECONDS = 1.0
REASONS: tuple[str, ...] = get_args(FeedbackReason)

Items = list[tuple[str, object]]
AnswerItem = dict[str, object]


def split_by_owner(items: Items, own: str) -> dict[str, list[int]]:
    """Item indexes by the tag of the replica that answered them, in order. Ids that are
    not prediction ids stay here (`own`), to be refused as today."""
    groups: dict[str, list[int]] = {}
    for index, (prediction_id, _) in enumerate(items):
        parsed = parse_id(prediction_id)
        groups.setdefault(own if parsed is None else parsed[0], []).append(index)
    return groups


def reindexed(refused: FeedbackRefused, indexes: Sequence[int], batch: bool) -> FeedbackRefused:
    """A refusal of a part of a body as a refusal of the body: its index in the body."""
    where = indexes[refused.index if refused.index is not None else 0]
    return FeedbackRefused(refused.status, refused.reason, refused.detail, where if batch else None)


def first(refusals: list[FeedbackRefused]) -> FeedbackRefused:
    """The refusal to answer: a 4xx before a 503 (sending again cannot fix it), then the
    first item."""
    return min(refusals, key=lambda r: (r.status >= 500, r.index or 0))


class PeerDirectory:
    """Which peer URL has which replica tag (see the module doc)."""

    def __init__(
        self,
        specs: Sequence[str],
        tag_of: Callable[[str], Awaitable[str | None]],
        resolve: Callable[[Sequence[str]], list[str]] = resolve_replicas,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.specs = list(specs)
        self.tag_of = tag_of
        self.resolve = resolve
        self.clock = clock
        self.urls: dict[str, str] = {}  # tag -> URL
        self.silent: list[str] = []  # what did not answer the last look
        self.looked_at = -math.inf
        self.lock = asyncio.Lock()

    async def locate(self, tag: str, again: bool = False) -> str | None:
        """The URL of the replica with `tag`, looking over the fleet if it is not known
        (or `again`: the known address answered with another tag)."""
        if again:
            self.urls.pop(tag, None)
        if tag not in self.urls:
            await self.look(force=again)
        return self.urls.get(tag)

    def forget(self, tag: str) -> None:
        """The peer did not answer: look for it again next time, and until then say that it
        did not answer (not that its tag is gone)."""
        url = self.urls.pop(tag, None)
        if url is not None and url not in self.silent:
            self.silent.append(url)

    async def look(self, force: bool = False) -> None:
        asked = self.clock()
        async with self.lock:
            if self.looked_at >= asked:
                return  # a look finished while this one waited for it
            if not force and self.clock() - self.looked_at < LOOK_AGAIN_SECONDS:
                return
            try:
                # Resolving a name blocks (getaddrinfo): off the event loop.
                urls = await asyncio.to_thread(self.resolve, self.specs)
            except FleetError as error:
                self.silent = [str(error)]
                self.looked_at = self.clock()
                return
            tags = await asyncio.gather(*(self.tag_of(url) for url in urls))
            self.urls = {tag: url for url, tag in zip(urls, tags, strict=True) if tag is not None}
            self.silent = [url for url, tag in zip(urls, tags, strict=True) if tag is None]
            self.looked_at = self.clock()


class FeedbackRouter:
    """A replica's feedback route when it has peers: its own items judged here, the others'
    forwarded to the replica that answered them (see the module doc)."""

    def __init__(self, gateway: Gateway, peers: Sequence[str]) -> None:
        self.gateway = gateway
        self.directory = PeerDirectory(peers, self._tag_at)
        # Made on first use, in the event loop that serves (tests set their own).
        self.client: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=FORWARD_TIMEOUT_SECONDS)
        return self.client

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    async def _tag_at(self, url: str) -> str | None:
        try:
            response = await self._client().get(f"{url}/healthz")
            tag = cast(object, orjson.loads(response.content).get("replica"))
        except (httpx.HTTPError, orjson.JSONDecodeError, AttributeError):
            return None
        return tag if isinstance(tag, str) else None

    # ---- the route -------------------------------------------------------------------

    async def feedback(self, name: str, items: Items) -> list[AnswerItem]:
        """The answer's items, in the body's order; FeedbackRefused (counted here, where
        the client was answered) if any item is refused."""
        gateway = self.gateway
        groups = split_by_owner(items, gateway.replica)
        if set(groups) == {gateway.replica}:
            return [answer_item(item) for item in gateway.feedback(name, items)]
        gateway.model(name)  # 404 or 503 as for a predict request, before asking anyone
        try:
            return await self._across(name, items, groups)
        except FeedbackRefused as refused:
            gateway.metrics.count_feedback_refused(name, refused.reason)
            raise

    async def _across(
        self, name: str, items: Items, groups: dict[str, list[int]]
    ) -> list[AnswerItem]:
        gateway = self.gateway
        batch = len(items) > 1
        own = groups.pop(gateway.replica, [])
        owners: dict[str, str] = {}
        refusals: list[FeedbackRefused] = []
        for tag, indexes in groups.items():
            url = await self.directory.locate(tag)
            if url is None:
                refusals.append(self._not_found(tag, items, indexes, batch))
            else:
                owners[tag] = url
        answers: list[AnswerItem | None] = [None] * len(items)
        if not own and len(owners) == 1 and not refusals:
            # One other replica answered every item: it judges and commits them at once.
            [(tag, url)] = owners.items()
            try:
                part = await self._send(name, COMMIT, tag, url, items, groups[tag], batch)
            except FeedbackRefused as refused:
                raise settled(refused, []) from None
            self._place(answers, groups[tag], part)
            gateway.metrics.count_feedback_forwarded(name, len(part))
            return cast(list[AnswerItem], answers)
        if own:
            try:
                gateway.judge_feedback(name, [items[i] for i in own])
            except FeedbackRefused as refused:
                refusals.append(reindexed(refused, own, batch))
        checks = await asyncio.gather(
            *(
                self._send(name, CHECK, tag, url, items, groups[tag], batch)
                for tag, url in owners.items()
            ),
            return_exceptions=True,
        )
        refusals += [self._refusal(result) for result in checks if isinstance(result, Exception)]
        if refusals:
            raise settled(first(refusals), [])
        # Every part passed its check: commit each (the others' first, then this
        # replica's, judged again since the event loop has served other requests meanwhile).
        commits = await asyncio.gather(
            *(
                self._send(name, COMMIT, tag, url, items, groups[tag], batch)
                for tag, url in owners.items()
            ),
            return_exceptions=True,
        )
        counted: list[int] = []
        failed: list[FeedbackRefused] = []
        for tag, result in zip(owners, commits, strict=True):
            if isinstance(result, BaseException):
                failed.append(self._refusal(result))
            else:
                self._place(answers, groups[tag], result)
                counted += groups[tag]
        if counted:
            gateway.metrics.count_feedback_forwarded(name, len(counted))
        if not failed and own:
            try:
                joined = gateway.commit_feedback(
                    name, gateway.judge_feedback(name, [items[i] for i in own])
                )
            except FeedbackRefused as refused:
                failed.append(reindexed(refused, own, batch))
            else:
                self._place(answers, own, [answer_item(item) for item in joined])
        if failed:
            raise settled(first(failed), sorted(counted))
        return cast(list[AnswerItem], answers)

    @staticmethod
    def _refusal(error: BaseException) -> FeedbackRefused:
        if isinstance(error, FeedbackRefused):
            return error
        raise error  # a bug, not an answer: the route's 500

    @staticmethod
    def _place(
        answers: list[AnswerItem | None], indexes: list[int], part: list[AnswerItem]
    ) -> None:
        for index, item in zip(indexes, part, strict=True):
            answers[index] = item

    def _not_found(
        self, tag: str, items: Items, indexes: list[int], batch: bool
    ) -> FeedbackRefused:
        where = indexes[0] if batch else None
        prediction_id = items[indexes[0]][0]
        if self.directory.silent:
            return FeedbackRefused(
                503,
                "peer_unavailable",
                f"id {prediction_id!r} was answered by replica {tag}, not found among the "
                f"peers that answered; {', '.join(self.directory.silent)} did not answer",
                where,
            )
        return FeedbackRefused(
            404,
            "unknown_id",
            f"unknown id {prediction_id!r}: answered by replica {tag}, which is gone (it "
            "restarted or was scaled away, and its predictions went with it)",
            where,
        )

    async def _send(
        self,
        name: str,
        phase: str,
        tag: str,
        url: str,
        items: Items,
        indexes: list[int],
        batch: bool,
    ) -> list[AnswerItem]:
        """Forward the items at `indexes` to the replica `tag` at `url`: its answer's items
        (commit) or [] (check); a refusal as the body's FeedbackRefused."""
        body = orjson.dumps(
            {"feedback": [{"id": items[i][0], "label": items[i][1]} for i in indexes]}
        )
        headers = {
            "content-type": "application/json",
            FORWARDED_BY: self.gateway.replica,
            OWNER: tag,
            PHASE: phase,
        }
        where = indexes[0] if batch else None
        response: httpx.Response | None = None
        for _ in range(2):
            try:
                response = await self._client().post(
                    f"{url}/v1/models/{name}/feedback", content=body, headers=headers
                )
            except httpx.HTTPError as error:
                self.directory.forget(tag)
                raise FeedbackRefused(
                    503,
                    "peer_unavailable",
                    f"replica {tag} at {url}, which answered id {items[indexes[0]][0]!r}, did "
                    f"not answer ({type(error).__name__}: {error})",
                    where,
                ) from None
            if response.status_code != 421:
                break
            # Its address now belongs to another replica: look for the tag once more.
            found = await self.directory.locate(tag, again=True)
            if found is None:
                raise self._not_found(tag, items, indexes, batch)
            url = found
        assert response is not None
        try:
            answer = cast(dict[str, object], orjson.loads(response.content))
        except orjson.JSONDecodeError:
            answer = {}
        if response.status_code == 200:
            part = answer.get("feedback")
            if phase == CHECK:
                return []
            if isinstance(part, list) and len(cast(list[object], part)) == len(indexes):
                return cast(list[AnswerItem], part)
        reason, index = answer.get("reason"), answer.get("index")
        if response.status_code in (200, 421) or reason not in REASONS:
            raise FeedbackRefused(
                503,
                "peer_unavailable",
                f"replica {tag} at {url} answered feedback with {response.status_code}: "
                f"{str(answer.get('error', response.text))[:200]}",
                where,
            )
        detail = answer.get("detail", answer.get("error", ""))
        refused = FeedbackRefused(
            response.status_code,
            cast(FeedbackReason, reason),
            str(detail),
            index if isinstance(index, int) and 0 <= index < len(indexes) else None,
        )
        raise reindexed(refused, indexes, batch)


def settled(refused: FeedbackRefused, counted: list[int]) -> FeedbackRefused:
    """The body's refusal, saying what came of it: nothing counted (a 503: send it again),
    or, in the race the module doc names, the items counted on other replicas before a
    later commit was refused."""
    if counted:
        detail = (
            f"{refused.detail} (between this body's check and its commit; items {counted} "
            "were counted on other replicas)"
        )
    elif refused.status >= 500:
        detail = f"{refused.detail}: nothing was counted, send it again"
    else:
        return refused
    return FeedbackRefused(refused.status, refused.reason, detail, refused.index)
