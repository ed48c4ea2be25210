"""A cascade version in the gateway: its small tier is the version's own batcher; rows its
calibrated confidence does not clear (chassis.cascade.rule, the one rule the threshold was
chosen with) go to the full tier, a locally loaded verified version or the upstream gateway
over HTTP, and the answers are merged back in row order.

A text classifier's request is tokenized once, by the cascade version (the small tier's
tokenizer, which `chassis cascade` requires the full tier to share), and the full tier here
runs on those token ids; the upstream is sent the escalated *texts*, since every gateway
tokenizes what it is sent.

Metrics: chassis_cascade_rows_total{model,version,tier} (rows answered by each tier) and
chassis_cascade_tier_seconds{model,version,tier} (a summary: time each tier took for a
request's rows; the full tier's only when the request had rows to escalate)."""

import asyncio
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.core import CounterMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from chassis.cascade.rule import cascade_answer
from chassis.cascade.spec import CascadeSpec
from chassis.errors import RequestError
from chassis.serving.batching import MicroBatcher
from chassis.text_input import TextEncoder

SMALL = "small"
FULL = "full"


class CascadeMetrics(Collector):
    """Rows and time per tier of each cascade version; registered with the gateway's
    metrics, so /metrics shows them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # (model, version, tier) -> [rows, requests timed, seconds]
        self.tiers: dict[tuple[str, str, str], list[float]] = {}
        registry.register(self)

    def record(self, model: str, version: str, tier: str, rows: int, seconds: float) -> None:
        tally = self.tiers.get((model, version, tier))
        if tally is None:
            tally = self.tiers[(model, version, tier)] = [0.0, 0.0, 0.0]
        tally[0] += rows
        tally[1] += 1
        tally[2] += seconds

    def collect(self) -> Iterator[Metric]:
        rows = CounterMetricFamily(
            "chassis_cascade_rows",
            "Rows a cascade version answered, by tier: small (calibrated confidence at or "
            "above the threshold) or full (escalated, locally or to the upstream gateway)",
            labels=["model", "version", "tier"],
        )
        seconds = SummaryMetricFamily(
            "chassis_cascade_tier_seconds",
            "Time a cascade tier took for one request's rows (the full tier: requests with "
            "escalated rows only)",
            labels=["model", "version", "tier"],
        )
        for (model, version, tier), (count, timed, total) in sorted(self.tiers.items()):
            rows.add_metric([model, version, tier], count)
            seconds.add_metric([model, version, tier], int(timed), total)
        yield from (rows, seconds)


class Upstream:
    """The upstream gateway (GatewayConfig.upstream): one HTTP client, made on the event
    loop that serves requests and reused by every request."""

    def __init__(self, url: str, timeout_seconds: float) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout_seconds
        self.client: httpx.AsyncClient | None = None

    async def labels(self, model: str, instances: Sequence[Any]) -> np.ndarray:
        """The upstream's labels for `instances` (rows of numbers, or texts: what a client
        sends); its failure is this request's 502 (it answered wrongly), 503 (unreachable)
        or 504 (too slow), naming it."""
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=self.timeout)
        path = f"{self.url}/v1/models/{model}/predict"
        try:
            answer = await self.client.post(path, json={"instances": list(instances)})
        except httpx.TimeoutException:
            raise RequestError(
                504, f"upstream {self.url} did not answer {model}'s escalated rows in time"
            ) from None
        except httpx.HTTPError as error:
            raise RequestError(
                503, f"upstream {self.url} unreachable for {model}'s escalated rows: {error}"
            ) from None
        if answer.status_code != 200:
            raise RequestError(
                502,
                f"upstream {self.url} answered {answer.status_code} for {model}'s escalated "
                f"rows: {answer.text[:200]}",
            )
        try:
            predictions = np.asarray(answer.json()["predictions"], dtype=np.int64)
        except (ValueError, KeyError, TypeError):
            raise RequestError(502, f"upstream {self.url} answered {model} unreadably") from None
        if predictions.shape != (len(instances),):
            raise RequestError(
                502, f"upstream {self.url} answered {predictions.shape} for {len(instances)} rows"
            )
        return predictions

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()


@dataclass
class CascadeTier:
    """What a cascade version needs besides its own (small) batcher."""

    spec: CascadeSpec
    # The full tier: a locally loaded verified version's batcher, else the upstream.
    full: MicroBatcher | None
    upstream: Upstream | None
    where: str = field(default="")  # "v1 here" or the upstream's URL, for status and logs

    @property
    def full_version(self) -> int:
        return self.spec.full_version


async def tier_logits(batcher: MicroBatcher, rows: np.ndarray, deadline: float) -> np.ndarray:
    """A tier's logits for `rows`: inline when the batcher answers at once, else queued
    until `deadline` (the event loop's clock)."""
    logits = batcher.answer_now(rows)
    if logits is not None:
        return logits
    async with asyncio.timeout_at(deadline):
        return await batcher.predict(rows, deadline)


async def cascade_logits(
    tier: CascadeTier,
    small: MicroBatcher,
    model: str,
    version: str,
    rows: np.ndarray,
    deadline: float,
    metrics: CascadeMetrics | None,
    texts: Sequence[str] | None = None,
) -> np.ndarray:
    """The cascade's logits for `rows`: the small tier's where it is confident, the full
    tier's elsewhere (the upstream's labels as one-hot rows: it answers labels only).
    `metrics` None: the rows are not counted (a mirror's warm-up call). `texts`: a text
    classifier's request, whose token ids `rows` are (the upstream is sent the escalated
    texts)."""
    started = time.perf_counter()
    small_logits = await tier_logits(small, rows, deadline)
    answered = cascade_answer(small_logits, tier.spec.temperature, tier.spec.threshold)
    escalated = int(len(rows) - int(answered.sum()))
    split = time.perf_counter()
    if metrics is not None:
        metrics.record(model, version, SMALL, len(rows) - escalated, split - started)
    if escalated == 0:
        return small_logits
    merged = np.array(small_logits, dtype=np.float32, copy=True)
    if tier.full is not None:
        merged[~answered] = await tier_logits(tier.full, rows[~answered], deadline)
    else:
        assert tier.upstream is not None, "a cascade tier has a full tier or an upstream"
        instances = (
            rows[~answered].tolist()
            if texts is None
            else [texts[int(i)] for i in np.flatnonzero(~answered)]
        )
        labels = await tier.upstream.labels(model, instances)
        if labels.size and not 0 <= int(labels.min()) <= int(labels.max()) < merged.shape[1]:
            raise RequestError(502, f"upstream answered {model} with labels outside its classes")
        one_hot = np.zeros((escalated, merged.shape[1]), dtype=np.float32)
        one_hot[np.arange(escalated), labels] = 1.0
        merged[~answered] = one_hot
    if metrics is not None:
        metrics.record(model, version, FULL, escalated, time.perf_counter() - split)
    return merged


def same_reading(cascade: TextEncoder | None, full: TextEncoder | None) -> bool:
    """Whether the full tier reads a request as the cascade version does: both numbers, or
    both texts through the same tokenizer and settings (token ids escalated as they are)."""
    if cascade is None or full is None:
        return cascade is full
    return (cascade.tokenizer_json, cascade.settings()) == (full.tokenizer_json, full.settings())


# Beside a cascade version's verified copy (verified_cache.version_dir): its cascade tag as
# the registry gave it when the version was verified, so a gateway restored from its local
# copies while the registry is unreachable serves the cascade, not its small tier alone.
CASCADE_FILE = "cascade.json"


def remember_cascade(directory: Path, tag: str) -> None:
    temporary = directory / f"{CASCADE_FILE}.tmp"
    temporary.write_text(tag)
    temporary.replace(directory / CASCADE_FILE)


def recalled_cascade(directory: Path) -> CascadeSpec | None:
    """The cascade remembered beside a verified copy; None: the version is not a cascade."""
    path = directory / CASCADE_FILE
    return CascadeSpec.from_json(path.read_text()) if path.exists() else None
