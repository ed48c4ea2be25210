"""The model every rival server wraps: the same ONNX file, the same ONNX Runtime session
settings and, for a text model, the same tokenizing as Chassis's gateway.

Imported by rival_bentoml.py, rival_ray.py and rival_litserve.py inside the rivals' venv
(benchmarks/rivals_env.py), with the repository on PYTHONPATH: the session comes from
`chassis.runtime.create_session` (one intra-op and one inter-op thread, as the gateway
runs it) and token ids from `chassis.text_input.TextEncoder` (the version's tokenizer.json,
padded to its max_length), both of which need only numpy, onnxruntime and tokenizers. The
servers learn what to load from the environment, since each framework starts its own
worker processes: RIVAL_ONNX (the file), RIVAL_TEXT_INPUT (the version's text-input
settings, JSON; absent for a tabular model) and RIVAL_TOKENIZER.
"""

import os
from pathlib import Path
from typing import Any

import numpy as np

from chassis.runtime import create_session, first_output
from chassis.text_input import TextEncoder

# What every rival batches at most per ONNX Runtime call: the gateway's default max_batch.
MAX_BATCH = 64


class RivalModel:
    """instances (float rows or texts) -> class labels, one ONNX Runtime call per batch."""

    def __init__(self, onnx_path: Path, tokenizer: Path | None, text_settings: str | None):
        self.session = create_session(onnx_path, 1)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [self.session.get_outputs()[0].name]
        self.encoder = (
            TextEncoder.from_settings(tokenizer, text_settings)
            if tokenizer is not None and text_settings is not None
            else None
        )

    def labels(self, instances: list[Any]) -> list[int]:
        if self.encoder is not None:
            rows = self.encoder.encode(instances)
        else:
            rows = np.asarray(instances, dtype=np.float32)
        logits = first_output(self.session, {self.input_name: rows}, self.output_names)
        return [int(label) for label in logits.argmax(axis=1)]

    def labels_per_request(self, requests: list[list[Any]]) -> list[list[int]]:
        """One call for several requests' instances, answered back per request."""
        flat = [instance for instances in requests for instance in instances]
        labels = self.labels(flat)
        answers, start = [], 0
        for instances in requests:
            answers.append(labels[start : start + len(instances)])
            start += len(instances)
        return answers


def from_environment() -> RivalModel:
    tokenizer = os.environ.get("RIVAL_TOKENIZER")
    return RivalModel(
        Path(os.environ["RIVAL_ONNX"]),
        Path(tokenizer) if tokenizer else None,
        os.environ.get("RIVAL_TEXT_INPUT"),
    )


def workers() -> int:
    return int(os.environ.get("RIVAL_WORKERS", "2"))
