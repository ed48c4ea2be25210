"""Prometheus metrics per model version, on a registry of the gateway's own."""

from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class GatewayMetrics:
    def __init__(self) -> None:
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._predicted_children: dict[tuple[str, str, int], Any] = {}
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "chassis_requests",
            "Predict requests answered",
            ["model", "version", "role"],
            registry=self.registry,
        )
        self.errors = Counter(
            "chassis_errors",
            "Predict requests that failed, by status",
            ["model", "version", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "chassis_request_latency_seconds",
            "Predict latency in the gateway",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predicted = Counter(
            "chassis_predicted_class",
            "Predicted classes",
            ["model", "version", "label"],
            registry=self.registry,
        )
        self.shadow_agreement = Counter(
            "chassis_shadow_comparisons",
            "Shadow predictions compared with the stable answer",
            ["model", "version", "agreed"],
            registry=self.registry,
        )

    def observe(
        self, model: str, version: str, role: str, seconds: float, labels: "np.ndarray"
    ) -> None:
        """One answered request. Label lookups are cached: they cost more than the model."""
        key = (model, version, role)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(model, version, role),
                self.latency.labels(model, version),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if len(labels) == 1:
            self._predicted(model, version, int(labels[0])).inc()
        else:
            counts = np.bincount(labels)
            for label in np.flatnonzero(counts):
                self._predicted(model, version, int(label)).inc(int(counts[label]))

    def _predicted(self, model: str, version: str, label: int) -> "Counter":
        key = (model, version, label)
        child = self._predicted_children.get(key)
        if child is None:
            child = self._predicted_children[key] = self.predicted.labels(
                model, version, str(label)
            )
        return child

    def render(self) -> bytes:
        return generate_latest(self.registry)
