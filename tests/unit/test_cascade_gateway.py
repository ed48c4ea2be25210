"""The gateway's cascade without a server: rows merged in order by the one rule, tier
metrics, and unloading that never closes a full tier a kept cascade still runs on."""

import asyncio
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from prometheus_client import CollectorRegistry, generate_latest

from chassis.cascade.spec import CascadeSpec
from chassis.registry import Registry
from chassis.serving.batching import MicroBatcher
from chassis.serving.cascade import CascadeMetrics, CascadeTier, cascade_logits
from chassis.serving.gateway import Gateway, GatewayConfig, ServedModel, ServedVersion
from chassis.serving.state import RolloutState

SPEC = CascadeSpec(1, 1.0, 0.9, 0.1, 0.05, 0.3, 0.2)
SMALL = np.array([[5.0, 0.0], [0.1, 0.0], [0.0, 6.0], [0.0, 0.2]], dtype=np.float32)
FULL = np.array([[0.0, 9.0], [0.0, 9.0], [9.0, 0.0], [9.0, 0.0]], dtype=np.float32)


def table(logits: np.ndarray) -> MicroBatcher:
    """A batcher answering each row (its first value is the row's index) from `logits`."""
    return MicroBatcher(lambda rows: logits[rows[:, 0].astype(int)])


def test_escalated_rows_get_the_full_tiers_answer_in_row_order() -> None:
    metrics = CascadeMetrics(CollectorRegistry())
    tier = CascadeTier(SPEC, table(FULL), None)
    rows = np.arange(4, dtype=np.float32)[:, None]

    async def run() -> np.ndarray:
        deadline = asyncio.get_running_loop().time() + 5
        return await cascade_logits(tier, table(SMALL), "m", "3", rows, deadline, metrics)

    merged = asyncio.run(run())
    # Rows 0 and 2 are confident (>= 0.9): the small tier's; rows 1 and 3: the full tier's.
    assert merged.argmax(axis=1).tolist() == [0, 1, 1, 0]
    assert metrics.tiers[("m", "3", "small")][0] == 2
    assert metrics.tiers[("m", "3", "full")][0] == 2
    registry = CollectorRegistry()
    registry.register(metrics)
    text = generate_latest(registry).decode()
    assert 'chassis_cascade_rows_total{model="m",tier="full",version="3"} 2.0' in text


def test_unloading_keeps_the_full_tier_a_kept_cascade_runs_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unused = Registry(MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/unused.db"), "k")
    gateway = Gateway(unused, GatewayConfig(tmp_path / "state", tmp_path / "cache"), ["m"])
    closed: list[MicroBatcher] = []
    monkeypatch.setattr(gateway, "_close_later", closed.append)  # what would be stopped on the loop
    full = ServedVersion(1, 1, "0" * 64, table(FULL), ["x"])
    cascade = ServedVersion(3, 1, "1" * 64, table(SMALL), ["x"])
    own_full = table(FULL)
    cascade.cascade = CascadeTier(SPEC, full.batcher, None)
    model = ServedModel("m", RolloutState(model="m", stable_version=3), {1: full, 3: cascade})
    gateway._unload_unused(model)
    assert list(model.versions) == [3]  # v1 no longer routed to ...
    assert closed == []  # ... but its batcher runs the cascade's escalations: kept open
    # A dropped cascade closes its own full tier with it, not one a kept version uses.
    cascade.cascade = CascadeTier(SPEC, own_full, None)
    model = ServedModel("m", RolloutState(model="m", stable_version=1), {1: full, 3: cascade})
    gateway._unload_unused(model)
    assert closed == [cascade.batcher, own_full]
    cascade.cascade = CascadeTier(SPEC, full.batcher, None)
    closed.clear()
    model = ServedModel("m", RolloutState(model="m", stable_version=1), {1: full, 3: cascade})
    gateway._unload_unused(model)
    assert closed == [cascade.batcher]


def test_a_mirrored_cascade_is_compared_and_timed_as_the_cascade(tmp_path: Path) -> None:
    unused = Registry(MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/unused.db"), "k")
    gateway = Gateway(unused, GatewayConfig(tmp_path / "state", tmp_path / "cache"), ["m"])
    full = ServedVersion(1, 1, "0" * 64, table(FULL), ["x"])
    cascade = ServedVersion(3, 1, "1" * 64, table(SMALL), ["x"])
    cascade.cascade = CascadeTier(SPEC, full.batcher, None)
    state = RolloutState(model="m", stable_version=1, candidate_version=3, mode="shadow")
    model = ServedModel("m", state, {1: full, 3: cascade})
    rows = np.arange(4, dtype=np.float32)[:, None]
    asyncio.run(gateway._mirror(model, cascade, full, rows))
    # The cascade answers [0, 1, 1, 0], the full tier [1, 1, 0, 0]: two rows agree (the
    # small tier alone, [0, 0, 1, 1], agrees on none).
    assert (cascade.stats.shadow_compared, cascade.stats.shadow_agreed) == (4, 2)
    # Both tiers ran inline: the timed call's CPU is recorded once, for the cascade.
    assert sum(gateway.metrics.version("m", "3").cpu_buckets) == 1
    assert sum(gateway.metrics.version("m", "1").cpu_buckets) == 1
