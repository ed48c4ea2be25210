"""Int8 quantization of ONNX files with ONNX Runtime: dynamic, and static (QDQ) calibrated.

Both take and produce files, so the same step quantizes a baseline, a pruned or a distilled
model, and what is measured is exactly what would be served.
"""

import contextlib
import logging
from collections.abc import Generator
from pathlib import Path

import numpy as np

from chassis.compression.policy import CALIBRATION_METHODS
from chassis.errors import CalibrationDataError, CompressionError


@contextlib.contextmanager
def quiet_logging() -> Generator[None, None, None]:
    """ONNX Runtime's Python tools at ERROR level for the duration.

    The quantizer logs a pre-processing hint on the root logger for every call (the graphs
    here come from torch's exporter, which already folds what pre-processing would), and
    the transformer optimizer logs every pattern it tried.
    """
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_dynamic_int8(
    source: Path,
    destination: Path,
    *,
    per_channel: bool = False,
    op_types: tuple[str, ...] | None = None,
    nodes_to_exclude: tuple[str, ...] = (),
    const_weights_only: bool = True,
) -> Path:
    """Weights stored as int8, activations quantized on the fly: no calibration data needed.

    `per_channel` gives every output column of a weight its own scale. For transformers this
    is what decides quality: all-MiniLM-L6-v2 goes from mean cosine 0.963 (per-tensor) to
    0.993 to its fp32 embeddings, at the same size and speed (BENCHMARKS.md).
    `op_types` limits which operator types are quantized (None: ONNX Runtime's default set,
    which includes embedding `Gather`s, the bulk of a transformer's bytes); nodes named in
    `nodes_to_exclude` stay float. `const_weights_only` quantizes a MatMul only when its
    second input is a stored weight (ONNX Runtime's dynamic default, pinned here so a library
    change cannot start quantizing attention's activation x activation products).
    A graph fused by `chassis.compression.fusion` is quantized too: its fused `Attention`
    becomes `QAttention` (default `op_types`).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        with quiet_logging():
            quantize_dynamic(
                str(source),
                str(destination),
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                op_types_to_quantize=list(op_types) if op_types is not None else None,
                nodes_to_exclude=list(nodes_to_exclude),
                extra_options={
                    "MatMulConstBOnly": const_weights_only,
                    # ONNX shape inference gives no type to the outputs of fused com.microsoft
                    # operators (Attention, SkipLayerNormalization); they are all float. Only
                    # used where inference found no type, so plain graphs are unaffected.
                    "DefaultTensorType": onnx.TensorProto.FLOAT,
                },
            )
    except Exception as error:
        destination.unlink(missing_ok=True)
        raise CompressionError(
            f"dynamic int8 quantization of {source.name} failed: {type(error).__name__}: {error}"
        ) from error
    return destination


def check_calibration_data(features: np.ndarray, n_features: int | None = None) -> np.ndarray:
    """The calibration rows as float32 [rows, features]; refuses NaN, Inf, empty or 1-D input.

    A single NaN makes the observed ranges NaN and every scale in the graph meaningless, so
    this fails before quantization instead of producing a silently broken model.
    """
    array = np.asarray(features)
    if array.ndim != 2 or array.shape[0] == 0:
        raise CalibrationDataError(
            f"calibration data must be a non-empty 2-D array [rows, features], got shape "
            f"{array.shape}"
        )
    if n_features is not None and array.shape[1] != n_features:
        raise CalibrationDataError(
            f"calibration data has {array.shape[1]} feature column(s); the model takes {n_features}"
        )
    if not np.issubdtype(array.dtype, np.number):
        raise CalibrationDataError(f"calibration data must be numeric, got dtype {array.dtype}")
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise CalibrationDataError(
            f"calibration data holds {int(bad.sum())} NaN or infinite value(s) in "
            f"{len(rows)} row(s) (first rows: {rows[:5].tolist()}); clean or drop them "
            "before static quantization"
        )
    return array.astype(np.float32, copy=False)


def quantize_static_int8(
    source: Path,
    destination: Path,
    calibration: np.ndarray,
    *,
    input_name: str,
    per_channel: bool = True,
    method: str = "minmax",
    batch_size: int = 32,
) -> Path:
    """Int8 weights and activations as QuantizeLinear/DequantizeLinear pairs (QDQ format).

    Activation ranges are observed by running `calibration` (rows of raw model inputs, e.g.
    training features) through the float model.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if method not in CALIBRATION_METHODS:
        raise CompressionError(
            f"unknown calibration method {method!r}; choose one of {', '.join(CALIBRATION_METHODS)}"
        )
    rows = check_calibration_data(calibration)
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }

    class ArrayReader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                [{input_name: rows[i : i + batch_size]} for i in range(0, len(rows), batch_size)]
            )

        # None ends the calibration, as ONNX Runtime's readers do; its base class is
        # annotated as always returning a dict.
        def get_next(self) -> dict[str, np.ndarray] | None:  # pyright: ignore[reportIncompatibleMethodOverride]

            return next(self.batches, None)

    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        with quiet_logging():
            quantize_static(
                str(source),
                str(destination),
                ArrayReader(),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                calibrate_method=methods[method],
                extra_options={"ActivationSymmetric": True},
            )
    except Exception as error:
        destination.unlink(missing_ok=True)
        raise CompressionError(
            f"static int8 quantization of {source.name} failed: {type(error).__name__}: {error}"
        ) from error
    return destination
