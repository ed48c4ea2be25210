"""Exports a torch model to a single-file ONNX model and checks it against torch.

The graph takes `features` (float32, [batch, n_features]; a text model: `input_ids`, int64
[batch, max_length], see chassis/text_input.py) and returns `logits`
(float32, [batch, n_classes]) for a classifier or `prediction` (float32, [batch, 1]) for a
regressor; the batch axis is dynamic.
"""

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from chassis.digests import sha256_file
from chassis.errors import ExportError, ParityError
from chassis.runtime import create_session, run_batches
from chassis.task import CLASSIFICATION, REGRESSION, Task
from chassis.text_input import TEXT_INPUT_NAME
from chassis.training import predict_logits

INPUT_NAME = "features"
OUTPUT_NAME = "logits"
OUTPUT_NAMES: dict[Task, str] = {CLASSIFICATION: OUTPUT_NAME, REGRESSION: "prediction"}


@dataclass(frozen=True)
class ExportedModel:
    path: Path
    sha256: str
    size_bytes: int
    parity_max_abs_diff: float | None  # None: no torch twin (an imported ONNX graph)
    opset: int


def export_onnx(
    module: nn.Module,
    n_features: int,
    destination: Path,
    output_name: str = OUTPUT_NAME,
    token_ids: bool = False,
) -> Path:
    """Export with torch's dynamo exporter into one file (no external data). With
    `token_ids`, the module is a text model taking int64 `input_ids` [batch, n_features]
    (n_features is then its maximum length in tokens)."""
    module.eval()
    if token_ids:
        example = torch.ones(2, n_features, dtype=torch.int64)
    else:
        example = torch.zeros(2, n_features, dtype=torch.float32)
    # The exporter warns once per missing torchvision operator; they are irrelevant here.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    # Constant folding reports each subgraph it leaves unfolded (a transformer's mask
    # reshapes); the graph is correct either way, and parity is checked next.
    logging.getLogger("onnxscript.optimizer._constant_folding").setLevel(logging.ERROR)
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                str(destination),
                input_names=[TEXT_INPUT_NAME if token_ids else INPUT_NAME],
                output_names=[output_name],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                external_data=False,
                dynamo=True,
                verbose=False,
            )
    except Exception as error:
        destination.unlink(missing_ok=True)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ExportError(
            f"torch.onnx.export failed for {type(module).__name__}: "
            f"{type(error).__name__}: {first_line}"
        ) from error
    return destination


def check_parity(module: nn.Module, onnx_path: Path, x: np.ndarray, tolerance: float) -> float:
    """Max absolute difference of torch vs ONNX Runtime outputs on `x`; raises above tolerance."""
    expected = predict_logits(module, x)
    actual = run_batches(create_session(onnx_path), x)
    if expected.shape != actual.shape:
        raise ParityError(
            f"ONNX output shape {actual.shape} differs from torch output shape {expected.shape}"
        )
    max_abs_diff = float(np.max(np.abs(expected - actual))) if expected.size else 0.0
    if not np.isfinite(max_abs_diff) or max_abs_diff > tolerance:
        raise ParityError(
            f"ONNX Runtime output differs from torch by {max_abs_diff:.3g} "
            f"(tolerance {tolerance:.3g}) on {len(x)} rows"
        )
    return max_abs_diff


def export_and_verify(
    module: nn.Module,
    n_features: int,
    parity_inputs: np.ndarray,
    destination: Path,
    tolerance: float,
    task: Task = CLASSIFICATION,
) -> ExportedModel:
    token_ids = parity_inputs.dtype.kind in "iu"  # a text model's token ids
    path = export_onnx(module, n_features, destination, OUTPUT_NAMES[task], token_ids)
    diff = check_parity(module, path, parity_inputs, tolerance)
    import onnx

    opset = next(
        (
            o.version
            for o in onnx.load(str(path), load_external_data=False).opset_import
            if o.domain in ("", "ai.onnx")
        ),
        0,
    )
    return ExportedModel(path, sha256_file(path), path.stat().st_size, diff, opset)
