"""Operator fusion for transformer encoders, run before dynamic int8 quantization.

ONNX Runtime's transformer optimizer rewrites a BERT-style graph into a few fused operators
(`Attention`, `SkipLayerNormalization`, `BiasGelu`). Run before `quantize_dynamic`, the fused
`Attention` becomes `QAttention` (one int8 product for Q, K and V, and the softmax in the same
kernel), which is what makes int8 faster than fp32 at batch 1: on all-MiniLM-L6-v2 the
un-fused int8 graph was dominated by its ~250 small float ops, not by its int8 MatMuls
(BENCHMARKS.md). Only for transformer encoders; other models skip this step.
"""

import collections
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from chassis.compression.quantize import quiet_logging
from chassis.errors import CompressionError

if TYPE_CHECKING:
    import onnx

# Without these the point of fusing is lost, so their absence is an error, not a warning.
REQUIRED_FUSIONS = ("Attention", "SkipLayerNormalization")
# The operator types the optimizer produces that a recipe reports.
FUSED_TYPES = frozenset(
    {
        "Attention",
        "MultiHeadAttention",
        "SkipLayerNormalization",
        "EmbedLayerNormalization",
        "BiasGelu",
        "FastGelu",
        "Gelu",
        "LayerNormalization",
    }
)


@dataclass(frozen=True)
class TransformerShape:
    """What the optimizer cannot read from the graph: how the hidden size splits into heads."""

    num_heads: int
    hidden_size: int


def _constant_axes(node: "onnx.NodeProto", constants: dict[str, "onnx.TensorProto"]) -> list[int]:
    """The axes of an Unsqueeze when they are a stored constant, else []."""
    from onnx import numpy_helper

    if node.op_type != "Unsqueeze" or len(node.input) < 2 or node.input[1] not in constants:
        return []
    axes: int | list[int] = numpy_helper.to_array(constants[node.input[1]]).tolist()
    return axes if isinstance(axes, list) else [axes]


def split_unsqueezes(model: "onnx.ModelProto") -> int:
    """Rewrites every `Unsqueeze` with several constant, non-negative axes as a chain of
    single-axis ones, in place; returns how many were split.

    The optimizer recognizes a BERT attention mask as two chained Unsqueezes, but torch's
    exporter merges them into one. Inserting the axes one at a time in ascending order
    gives the same output shape, so the rewrite changes nothing the graph computes.
    """
    from onnx import TensorProto, helper

    constants = {t.name: t for t in model.graph.initializer}
    nodes = []
    split = 0
    for node in model.graph.node:
        axes = _constant_axes(node, constants)
        if len(axes) < 2 or min(axes) < 0:
            nodes.append(node)
            continue
        current = node.input[0]
        for position, axis in enumerate(sorted(axes)):
            stem = f"{node.name or node.output[0]}_axis{axis}"
            axes_name = f"{stem}_axes"
            model.graph.initializer.append(
                helper.make_tensor(axes_name, TensorProto.INT64, [1], [axis])
            )
            output = node.output[0] if position == len(axes) - 1 else f"{stem}_out"
            nodes.append(helper.make_node("Unsqueeze", [current, axes_name], [output], stem))
            current = output
        split += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return split


def fused_operator_counts(path: Path) -> dict[str, int]:
    """How many nodes of each type the file holds, for recipes and checks."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(collections.Counter(node.op_type for node in model.graph.node))


def fuse_transformer(
    source: Path,
    destination: Path,
    shape: TransformerShape,
    *,
    required: tuple[str, ...] = REQUIRED_FUSIONS,
) -> dict[str, int]:
    """Fuses a BERT-style encoder exported to ONNX; returns the fused operator counts.

    Only the optimizer's graph rewrites run (`opt_level=0`), not ONNX Runtime's session-level
    ones, so the file stays portable across CPUs. The attention mask stays the raw 0/1 mask:
    the optimizer's default (sequence lengths) assumes right padding and gives wrong
    embeddings for left-padded input. Raises CompressionError if an operator in `required`
    was not fused, which means the export no longer matches the patterns the optimizer knows.
    """
    import onnx
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    model = onnx.load(str(source))
    split_unsqueezes(model)
    options = FusionOptions("bert")
    options.use_raw_attention_mask(True)
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        with quiet_logging():
            # An OnnxModel, which the checker cannot see: onnxruntime.transformers imports
            # its own modules by top-level name (`from onnx_model import OnnxModel`).
            optimized = cast(
                Any,
                optimize_model(
                    model,
                    model_type="bert",
                    num_heads=shape.num_heads,
                    hidden_size=shape.hidden_size,
                    optimization_options=options,
                    opt_level=0,
                ),
            )
            optimized.save_model_to_file(str(destination), use_external_data_format=False)
    except Exception as error:
        destination.unlink(missing_ok=True)
        raise CompressionError(
            f"transformer fusion of {source.name} failed: {type(error).__name__}: {error}"
        ) from error
    counts = fused_operator_counts(destination)
    missing = [op for op in required if not counts.get(op)]
    if missing:
        destination.unlink(missing_ok=True)
        raise CompressionError(
            f"transformer fusion of {source.name} fused no {', '.join(missing)}: the exported "
            "graph does not match ONNX Runtime's BERT patterns (attention as MatMul, Div, "
            "Add of an additive mask, Softmax, MatMul)"
        )
    return {op: counts[op] for op in sorted(counts) if op in FUSED_TYPES}
