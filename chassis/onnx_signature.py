"""A version's MLflow model signature, read from its ONNX graph.

Every version Chassis logs (trained, imported, compressed) gets its signature from the graph
it serves, not from example rows: a compressed graph keeps its baseline's inputs and outputs,
so their signatures agree, and a graph with several inputs (a transformer's `input_ids` and
`attention_mask`) is described as it is. The MLflow UI shows it as the version's schema.
"""

from pathlib import Path

import numpy as np
import onnx
from mlflow.models import ModelSignature
from mlflow.types.schema import Schema, TensorSpec


def _tensor_specs(values: list[onnx.ValueInfoProto]) -> Schema | None:
    """Named tensor specs; a symbolic or unknown dimension (the batch axis) is -1. None if a
    value is not a plain tensor (a sequence or map output from another tool's converter),
    which MLflow's tensor schema cannot describe: that side is then left without a schema."""
    specs: list[TensorSpec] = []
    for value in values:
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":
            return None
        tensor = value.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        shape = tuple(
            dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor.shape.dim
        )
        specs.append(TensorSpec(dtype, shape, value.name))
    return Schema(specs) if specs else None  # pyright: ignore[reportArgumentType]


def onnx_signature(path: Path) -> ModelSignature:
    """The graph's inputs (initializers excluded) and outputs, with names, types and shapes."""
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    return ModelSignature(inputs=_tensor_specs(inputs), outputs=_tensor_specs(list(graph.output)))
