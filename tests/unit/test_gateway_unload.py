"""A version dropped on a worker thread (registry sync, champion follower) is stopped on the
event loop: its batcher's worker does not live on holding the model."""

import asyncio
import time
from pathlib import Path

import numpy as np
from mlflow import MlflowClient

from chassis.registry import Registry
from chassis.serving.batching import MicroBatcher
from chassis.serving.gateway import Gateway, GatewayConfig, ServedModel, ServedVersion
from chassis.serving.state import RolloutState


def served(version: int) -> ServedVersion:
    def slow(rows: np.ndarray) -> np.ndarray:
        deadline = time.thread_time() + 0.001  # CPU work: slow enough to use the queue
        while time.thread_time() < deadline:
            pass
        return rows

    return ServedVersion(version, 1, "0" * 64, MicroBatcher(slow), ["x"])


def test_a_version_dropped_on_a_worker_thread_has_its_batcher_stopped(tmp_path: Path):
    async def scenario() -> tuple[bool, bool]:
        # A registry client that is never called: the scenario loads nothing from it.
        unused = Registry(MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/unused.db"), "k")
        gateway = Gateway(unused, GatewayConfig(tmp_path / "state", tmp_path / "cache"), ["m"])
        gateway.loop = asyncio.get_running_loop()
        old, new = served(1), served(2)
        for version in (old, new):
            await version.batcher.predict(np.ones((1, 1), dtype=np.float32))
            await version.batcher.predict(np.ones((1, 1), dtype=np.float32))
        model = ServedModel("m", RolloutState(model="m", stable_version=2), {1: old, 2: new})
        assert old.batcher.worker is not None  # its queue's worker is running
        # The follower's thread drops v1, as following a moved champion does.
        await asyncio.to_thread(gateway._unload_unused, model)
        for _ in range(100):
            if old.batcher.worker.done():
                break
            await asyncio.sleep(0.01)
        assert new.batcher.worker is not None
        return old.batcher.worker.done(), not new.batcher.worker.done()

    stopped, kept = asyncio.run(scenario())
    assert stopped  # the dropped version's worker ended
    assert kept  # the served one's did not
