"""Ray Serve 2.60 application for the rivals benchmark: `python rival_ray.py PORT`.

POST / {"instances": [...]} -> {"predictions": [label, ...]}. Configured as Ray Serve's
docs advise for CPU: `num_replicas` replicas (RIVAL_WORKERS, default 2), each reserving a
core (`ray_actor_options={"num_cpus": 1}`, the performance guide), and dynamic batching
with `@serve.batch` (max_batch_size rival_model.MAX_BATCH, `batch_wait_timeout_s=0`: a
batch is what is queued, as the gateway's greedy default; Ray's 10 ms default would add
10 ms to every request at one connection), `max_ongoing_requests` >= max_batch_size (Ray
warns otherwise). A local Ray of 2 CPUs, no dashboard; SIGTERM shuts it down.
"""

# Run and type-checked in the rivals' venv (benchmarks/rivals_env.py; `basedpyright
# --pythonpath ~/.cache/chassis-bench/rivals-venv/bin/python`); the product's has no such
# framework, and its checker is not to fail on that.
# pyright: reportMissingImports=false

import signal
import sys
import threading
from typing import Any

import ray
import rival_model
from ray import serve
from starlette.requests import Request


class Predictor:
    def __init__(self) -> None:
        self.model = rival_model.from_environment()

    @serve.batch(max_batch_size=rival_model.MAX_BATCH, batch_wait_timeout_s=0.0)
    async def predict(self, requests: list[list[Any]]) -> list[list[int]]:
        return self.model.labels_per_request(requests)

    async def __call__(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        return {"predictions": await self.predict(body["instances"])}


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[1])})
    deployment = serve.deployment(
        num_replicas=rival_model.workers(),
        ray_actor_options={"num_cpus": 1},
        max_ongoing_requests=rival_model.MAX_BATCH,
    )(Predictor)
    serve.run(deployment.bind(), route_prefix="/", blocking=False)
    stop.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
