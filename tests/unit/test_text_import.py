"""A text model trained elsewhere is checked against its contract before anything is
registered: one int64 input of token ids, as long as the spec's max_length (or free)."""

from pathlib import Path

import numpy as np
import pytest

from chassis.data import load_dataset
from chassis.errors import ModelImportError
from chassis.model_import import imported_module, imported_onnx
from chassis.modelspec import ModelSpec
from chassis.runtime import create_session, run_batches
from chassis.text_input import TextInput
from tests.fixtures.import_specs import linear_onnx
from tests.fixtures.text_specs import (
    MAX_LENGTH,
    VOCABULARY,
    BagOfWords,
    bag_onnx,
    load_texts,
    write_tokenizer,
)


def text_spec(tokenizer: Path, **model: object) -> ModelSpec:
    return ModelSpec(
        name="texts",
        load_data=load_texts,
        text_input=TextInput(tokenizer, max_length=MAX_LENGTH),
        **model,  # pyright: ignore[reportArgumentType]
    )


@pytest.fixture
def tokenizer(tmp_path: Path) -> Path:
    return write_tokenizer(tmp_path / "tokenizer.json")


def import_onnx(spec: ModelSpec, tmp_path: Path) -> Path:
    assert spec.text_input is not None
    dataset = load_dataset(spec.load_data, spec.name, spec.task, spec.text_input)
    return imported_onnx(spec, dataset, tmp_path / "kept" / "model.onnx").path


def test_a_text_onnx_file_is_kept_and_reads_token_ids(tmp_path: Path, tokenizer: Path) -> None:
    source = bag_onnx(tmp_path / "bag.onnx")
    kept = import_onnx(text_spec(tokenizer, onnx_file=str(source)), tmp_path)
    assert kept.read_bytes() == source.read_bytes()
    ids = np.zeros((3, MAX_LENGTH), dtype=np.int64)
    assert run_batches(create_session(kept), ids).shape == (3, 2)


def test_a_free_token_axis_is_accepted(tmp_path: Path, tokenizer: Path) -> None:
    source = bag_onnx(tmp_path / "bag.onnx", length="tokens")
    assert import_onnx(text_spec(tokenizer, onnx_file=str(source)), tmp_path).exists()


def test_a_float_input_is_refused_for_a_text_model(tmp_path: Path, tokenizer: Path) -> None:
    source = linear_onnx(tmp_path / "floats.onnx", width=MAX_LENGTH, outputs=2)
    with pytest.raises(ModelImportError, match=r"input 'input' is FLOAT; it must be INT64"):
        import_onnx(text_spec(tokenizer, onnx_file=str(source)), tmp_path)


def test_a_token_length_other_than_max_length_is_refused(tmp_path: Path, tokenizer: Path) -> None:
    source = bag_onnx(tmp_path / "bag.onnx", length=8)
    with pytest.raises(ModelImportError, match=r"takes 8 tokens per row; .* max_length 12"):
        import_onnx(text_spec(tokenizer, onnx_file=str(source)), tmp_path)


def test_a_torch_text_module_is_imported_with_its_width_in_tokens(tokenizer: Path) -> None:
    module = BagOfWords(len(VOCABULARY))
    spec = text_spec(tokenizer, load_model=lambda: module)
    assert spec.text_input is not None
    dataset = load_dataset(spec.load_data, spec.name, spec.task, spec.text_input)
    imported = imported_module(spec, dataset)
    assert imported.module is module and imported.n_features == MAX_LENGTH


def test_a_dynamic_int8_graph_is_known_to_answer_by_batch(tmp_path: Path) -> None:
    from chassis.compression.quantize import quantize_dynamic_int8
    from chassis.runtime import answer_batch_rows, answers_depend_on_batch

    float_graph = linear_onnx(tmp_path / "float.onnx", width=16, outputs=4)
    int8 = quantize_dynamic_int8(float_graph, tmp_path / "int8.onnx", per_channel=False)
    rows = np.zeros((40, 16), dtype=np.float32)
    assert not answers_depend_on_batch(float_graph)
    assert answers_depend_on_batch(int8)
    assert answer_batch_rows(int8, rows) == 1 and answer_batch_rows(float_graph, rows) == 4096
