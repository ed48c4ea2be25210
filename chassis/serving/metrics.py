"""Prometheus metrics per model version, on a registry of the gateway's own."""

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class GatewayMetrics:
    def __init__(self) -> None:
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

    def render(self) -> bytes:
        return generate_latest(self.registry)
