"""Per-version request statistics over the current analysis window (exact percentiles).

Prometheus histograms are for dashboards; a rollout step needs exact p99 and error counts
for the requests of that step, so the gateway also keeps this window, reset per step.
"""

from collections import deque
from dataclasses import dataclass, field

import numpy as np

WINDOW = 20_000


@dataclass
class VersionStats:
    requests: int = 0
    errors: int = 0
    shadow_compared: int = 0
    shadow_agreed: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    def summary(self) -> dict[str, float | int]:
        latencies = np.fromiter(self.latencies_ms, dtype=float)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.errors / self.requests if self.requests else 0.0,
            "p50_ms": float(np.percentile(latencies, 50)) if latencies.size else 0.0,
            "p99_ms": float(np.percentile(latencies, 99)) if latencies.size else 0.0,
            "shadow_compared": self.shadow_compared,
            "shadow_agreement": (
                self.shadow_agreed / self.shadow_compared if self.shadow_compared else 1.0
            ),
        }
