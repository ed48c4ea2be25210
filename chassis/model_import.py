"""Models trained elsewhere, checked against the dataset before they enter the registry.

A torch module (`load_model`) or an ONNX file (`onnx_file`) is kept as the user made it:
no standardization layer is added, the user's own preprocessing stays inside the model.
What is checked is the contract every version keeps: one float input of the dataset's
width with a free batch axis (a text model: one int64 input of token ids, [batch,
max_length]), one score per class out (a regressor: one predicted value),
finite on the test rows.
"""

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from chassis.data import class_count, features, labels, targets
from chassis.digests import sha256_file
from chassis.errors import ModelImportError
from chassis.modelspec import Dataset, ModelSpec
from chassis.onnx_export import ExportedModel
from chassis.runtime import create_session, run_batches
from chassis.task import REGRESSION, Task, output_width
from chassis.training import TrainedModel, predict_logits, rmse

if TYPE_CHECKING:
    from onnx import ModelProto

CHECK_ROWS = 64


def imported_module(spec: ModelSpec, dataset: Dataset) -> TrainedModel:
    """The spec's `load_model()` module, checked to answer the dataset's rows."""
    assert spec.load_model is not None, "only a load_model spec has a module to import"
    try:
        module = spec.load_model()
    except Exception as error:
        raise ModelImportError(
            f"spec {spec.name!r}: load_model() failed: {type(error).__name__}: {error}"
        ) from error
    if not isinstance(module, nn.Module):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ModelImportError(
            f"spec {spec.name!r}: load_model() must return a torch.nn.Module, "
            f"got {type(module).__name__}"
        )
    module.eval()
    x = features(dataset.test.head(CHECK_ROWS), dataset)
    try:
        with torch.inference_mode():
            scores = module(torch.from_numpy(x))
    except Exception as error:
        raise ModelImportError(
            f"spec {spec.name!r}: the module fails on {len(x)} test rows of "
            f"{x.shape[1]} features: {type(error).__name__}: {_first_line(error)}"
        ) from error
    if not isinstance(scores, torch.Tensor):
        raise ModelImportError(
            f"spec {spec.name!r}: the module returns a {type(scores).__name__}; a classifier "
            "returns one tensor of scores (logits), one row per input row"
        )
    n_outputs = _check_scores(spec.name, scores.numpy(), len(x), dataset, spec.task)
    x_val = features(dataset.validation, dataset)
    if not len(x_val):
        validation = float("nan")
    elif spec.task == REGRESSION:
        validation = rmse(predict_logits(module, x_val), targets(dataset.validation, dataset))
    else:
        validation = float(
            (
                predict_logits(module, x_val).argmax(axis=1) == labels(dataset.validation, dataset)
            ).mean()
        )
    return TrainedModel(module, x.shape[1], n_outputs, 0, validation, [], spec.task)


def checked_onnx_file(spec: ModelSpec) -> "ModelProto":
    """The spec's ONNX file, if it exists, parses and passes the ONNX checker as one file:
    what can be known without the data, so the CLI checks it before any flow starts."""
    import onnx

    source = spec.onnx_path()
    if not source.is_file():
        raise ModelImportError(f"spec {spec.name!r}: onnx_file {source} does not exist")
    try:
        model = onnx.load(str(source), load_external_data=False)
        onnx.checker.check_model(model)
    except Exception as error:
        raise ModelImportError(
            f"spec {spec.name!r}: {source.name} is not a valid ONNX model: {_first_line(error)}"
        ) from error
    if any(
        initializer.data_location == onnx.TensorProto.EXTERNAL
        for initializer in model.graph.initializer
    ):
        raise ModelImportError(
            f"spec {spec.name!r}: {source.name} keeps its weights in external data files; "
            "save it as one file (onnx.save_model(..., save_as_external_data=False))"
        )
    return model


def imported_onnx(spec: ModelSpec, dataset: Dataset, destination: Path) -> ExportedModel:
    """The spec's ONNX file, checked and copied byte for byte to `destination`."""
    source = spec.onnx_path()
    model = checked_onnx_file(spec)
    encoder = dataset.text_encoder
    width = encoder.max_length if encoder is not None else len(dataset.feature_columns)
    _check_onnx_input(spec.name, source.name, model, width, text=encoder is not None)
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)
    x = features(dataset.test.head(CHECK_ROWS), dataset)
    try:
        scores = run_batches(create_session(destination), x)
    except Exception as error:
        destination.unlink(missing_ok=True)
        raise ModelImportError(
            f"spec {spec.name!r}: ONNX Runtime cannot run {source.name} on {len(x)} test "
            f"rows: {_first_line(error)}"
        ) from error
    _check_scores(spec.name, scores, len(x), dataset, spec.task)
    opset = next(
        (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        0,
    )
    # No torch twin to compare with: parity is not measured for an imported graph.
    return ExportedModel(
        destination, sha256_file(destination), destination.stat().st_size, None, opset
    )


def _check_onnx_input(
    name: str, file: str, model: "ModelProto", width: int, *, text: bool = False
) -> None:
    import onnx

    expected = onnx.TensorProto.INT64 if text else onnx.TensorProto.FLOAT
    what = "INT64 (token ids)" if text else "FLOAT (float32 features)"
    shape = "[batch, max_length]" if text else "[batch, features]"
    weights = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in weights]
    if len(inputs) != 1:
        raise ModelImportError(
            f"spec {name!r}: {file} has {len(inputs)} inputs "
            f"({', '.join(value.name for value in inputs)}); Chassis serves models with one input "
            f"of shape {shape}"
        )
    tensor = inputs[0].type.tensor_type
    if tensor.elem_type != expected:
        kind = onnx.TensorProto.DataType.Name(tensor.elem_type)
        raise ModelImportError(
            f"spec {name!r}: {file}'s input {inputs[0].name!r} is {kind}; it must be {what}"
        )
    dims = list(tensor.shape.dim)
    if len(dims) != 2:
        raise ModelImportError(
            f"spec {name!r}: {file}'s input {inputs[0].name!r} has {len(dims)} dimensions; "
            f"it must be {shape}"
        )
    batch, columns = dims
    if batch.HasField("dim_value") and batch.dim_value != 0:
        raise ModelImportError(
            f"spec {name!r}: {file}'s batch dimension is fixed at {batch.dim_value}; export "
            "it with a dynamic batch axis so the gateway can batch requests"
        )
    if text and not (columns.HasField("dim_value") and columns.dim_value != width):
        return  # a fixed length equal to max_length, or a free one
    if not columns.HasField("dim_value") or columns.dim_value != width:
        seen = columns.dim_value if columns.HasField("dim_value") else repr(columns.dim_param)
        if text:
            raise ModelImportError(
                f"spec {name!r}: {file} takes {seen} tokens per row; the spec's text_input "
                f"pads every text to max_length {width}"
            )
        raise ModelImportError(
            f"spec {name!r}: {file} takes {seen} features per row; the dataset has {width} "
            "feature columns"
        )


def _check_scores(name: str, scores: np.ndarray, rows: int, dataset: Dataset, task: Task) -> int:
    if task == REGRESSION:
        expected = output_width(task, None)
        shape = f"a regressor answers [rows, 1] = [{rows}, 1] (one predicted value a row)"
    else:
        expected = class_count(dataset)
        shape = f"a classifier answers [rows, classes] = [{rows}, {expected}]"
    if scores.ndim != 2 or scores.shape[0] != rows:
        raise ModelImportError(
            f"spec {name!r}: the model answers {rows} rows with shape {tuple(scores.shape)}; "
            + shape
        )
    if task == REGRESSION and scores.shape[1] != expected:
        raise ModelImportError(
            f"spec {name!r}: the model gives {scores.shape[1]} values per row; a regressor "
            "(task='regression') gives one predicted value"
        )
    if scores.shape[1] != expected:
        raise ModelImportError(
            f"spec {name!r}: the model gives {scores.shape[1]} scores per row; the dataset's "
            f"labels have {expected} classes (0..{expected - 1})"
        )
    if not np.isfinite(scores).all():
        raise ModelImportError(f"spec {name!r}: the model answers NaN or infinity on test rows")
    return expected


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
