"""BentoML 1.4 service for the rivals benchmark: `bentoml serve rival_bentoml:Predictor`.

POST /predict {"instances": [...]} -> [label, ...]. Configured as BentoML's docs advise
for a CPU model: `workers` = one process per core (the "Workers" guide; RIVAL_WORKERS,
default 2) and adaptive batching (`batchable=True`: the dispatcher concatenates queued
requests' lists along dimension 0 and sizes its window from recent batch times), capped
at rival_model.MAX_BATCH rows; max_latency_ms is left at its default.
"""

# Run and type-checked in the rivals' venv (benchmarks/rivals_env.py; `basedpyright
# --pythonpath ~/.cache/chassis-bench/rivals-venv/bin/python`); the product's has no such
# framework, and its checker is not to fail on that.
# pyright: reportMissingImports=false

from typing import Any

import bentoml
import rival_model


@bentoml.service(workers=rival_model.workers())
class Predictor:
    def __init__(self) -> None:
        self.model = rival_model.from_environment()

    @bentoml.api(batchable=True, max_batch_size=rival_model.MAX_BATCH)
    def predict(self, instances: list[Any]) -> list[int]:
        return self.model.labels(instances)
