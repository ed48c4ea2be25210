"""LitServe 0.2 server for the rivals benchmark: `python rival_litserve.py PORT`.

POST /predict {"instances": [...]} -> {"predictions": [label, ...]}. Configured as
LitServe's docs advise for CPU: `accelerator="cpu"` with `workers_per_device` inference
workers (RIVAL_WORKERS, default 2: one per core) behind its API server, and batching on
the LitAPI (`max_batch_size`, `batch_timeout`; the LitServer arguments are deprecated):
at most rival_model.MAX_BATCH requests, `batch_timeout=0` (LitServe's default: a batch is
what is queued, as the gateway's greedy default).
"""

# Run and type-checked in the rivals' venv (benchmarks/rivals_env.py; `basedpyright
# --pythonpath ~/.cache/chassis-bench/rivals-venv/bin/python`); the product's has no such
# framework, and its checker is not to fail on that.
# pyright: reportMissingImports=false

import sys
from typing import Any

import litserve as ls
import rival_model


class TopicsAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.model = rival_model.from_environment()

    def decode_request(self, request: dict[str, Any]) -> list[Any]:
        return request["instances"]

    # A batch is a list of requests' instance lists: one ONNX Runtime call for all of them.
    def batch(self, inputs: list[list[Any]]) -> list[list[Any]]:
        return inputs

    def predict(self, x: list[list[Any]]) -> list[list[int]]:
        return self.model.labels_per_request(x)

    def unbatch(self, output: list[list[int]]) -> list[list[int]]:
        return output

    def encode_response(self, output: list[int]) -> dict[str, list[int]]:
        return {"predictions": output}


if __name__ == "__main__":
    api = TopicsAPI(max_batch_size=rival_model.MAX_BATCH, batch_timeout=0.0)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=rival_model.workers())
    server.run(
        host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", generate_client_file=False
    )
