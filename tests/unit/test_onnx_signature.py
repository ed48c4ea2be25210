"""A version's MLflow signature, read from its ONNX graph."""

import json
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from chassis.onnx_signature import onnx_signature


def graph_file(path: Path, outputs: list[onnx.ValueInfoProto]) -> Path:
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [2.0])
    graph = helper.make_graph(
        [helper.make_node("Cast", ["input_ids"], ["ids_float"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["ids_float", "w"], ["logits"])],
        "text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", 12]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", 12]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [1])],
        outputs,
        initializer=[weight],
    )  # fmt: skip
    onnx.save(helper.make_model(graph), path)
    return path


def test_inputs_and_outputs_keep_their_names_types_and_shapes(tmp_path: Path):
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 12])
    signature = onnx_signature(graph_file(tmp_path / "m.onnx", [logits])).to_dict()
    inputs = json.loads(signature["inputs"])
    # The initializer `w` is a weight, not an input; the batch axis is -1.
    assert [(i["name"], i["tensor-spec"]) for i in inputs] == [
        ("input_ids", {"dtype": "int64", "shape": [-1, 12]}),
        ("attention_mask", {"dtype": "int64", "shape": [-1, 12]}),
    ]
    assert json.loads(signature["outputs"]) == [
        {"name": "logits", "type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 12]}}
    ]


def test_an_output_that_is_not_a_tensor_leaves_the_outputs_undescribed(tmp_path: Path):
    probabilities = helper.make_value_info(
        "probabilities",
        helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [3])),
    )
    signature = onnx_signature(graph_file(tmp_path / "m.onnx", [probabilities]))
    assert signature.outputs is None
    assert signature.inputs is not None and len(signature.inputs.inputs) == 2
