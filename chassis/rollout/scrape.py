"""Read every replica's counters: the analysis sums what the whole fleet did.

Each replica's window is taken on its own (a replica that restarted mid-step restarts its
counters; its reading is then all it did since) and the windows are added.
"""

import time
from collections.abc import Sequence

from chassis.rollout.counts import ModelCounts, add_models, from_exposition, window
from chassis.serving.client import GatewayClient, GatewayError


class FleetCounts:
    """Counters of one model over the gateways a rollout drives."""

    def __init__(self, clients: Sequence[GatewayClient], retry_seconds: float = 60.0) -> None:
        if not clients:
            raise GatewayError("no gateway replicas to read: give at least one gateway URL")
        self.clients = list(clients)
        self.retry_seconds = retry_seconds

    def read(self, model: str) -> list[ModelCounts]:
        """One reading per replica. A replica that does not answer is retried for
        `retry_seconds` (a restarting replica comes back at the committed split)."""
        return [self._read_one(client, model) for client in self.clients]

    def _read_one(self, client: GatewayClient, model: str) -> ModelCounts:
        deadline = time.monotonic() + self.retry_seconds
        while True:
            try:
                return from_exposition(client.metrics(), model)
            except GatewayError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)

    @staticmethod
    def window(now: list[ModelCounts], start: list[ModelCounts]) -> ModelCounts:
        return add_models(window(n, s) for n, s in zip(now, start, strict=True))
