"""Strings become a text model's token ids the same way everywhere: padded to max_length
with the tokenizer's pad id, and refused (naming the text) when empty, not a string, or too
long, unless the spec truncates."""

import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from chassis.data import check_dataset, features, input_width, request_rows
from chassis.errors import DatasetError, SpecError, TextInputError
from chassis.modelspec import Dataset, ModelSpec
from chassis.text_input import TextEncoder, TextInput
from tests.fixtures.text_specs import VOCABULARY, load_texts, write_tokenizer


@pytest.fixture
def tokenizer_file(tmp_path: Path) -> Path:
    return write_tokenizer(tmp_path / "tokenizer.json")


def test_texts_become_ids_padded_with_the_pad_id(tokenizer_file: Path) -> None:
    encoder = TextEncoder.from_file(tokenizer_file, 6)
    ids = encoder.encode(["the cat", "big red bus near one"])
    assert ids.dtype == np.int64 and ids.shape == (2, 6)
    cat, bus = VOCABULARY.index("cat"), VOCABULARY.index("bus")
    assert ids[0].tolist() == [VOCABULARY.index("the"), cat, 0, 0, 0, 0]
    assert ids[1, 2] == bus and ids[1, 5] == 0
    # An unknown word is the tokenizer's [UNK], not an error.
    assert encoder.encode(["zebra"])[0, 0] == VOCABULARY.index("[UNK]")


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["the cat", ""], "text 1 is empty"),
        (["   "], "text 0 is empty"),
        (["the cat", 3.5], "text 1 must be a string, got float"),
        ([None], "text 0 must be a string, got NoneType"),
        (["the cat the cat the cat the cat"], "text 0 has 8 tokens; the model reads at most 6"),
    ],
    ids=["empty", "blank", "number", "null", "too-long"],
)
def test_a_text_the_model_cannot_read_is_refused_by_index(
    tokenizer_file: Path, texts: list[object], message: str
) -> None:
    with pytest.raises(TextInputError, match=message):
        TextEncoder.from_file(tokenizer_file, 6).encode(texts)


def test_truncate_cuts_a_long_text_instead(tokenizer_file: Path) -> None:
    ids = TextEncoder.from_file(tokenizer_file, 3, truncate=True).encode(["the cat the cat"])
    assert ids.shape == (1, 3) and (ids != 0).all()


def test_the_encoder_survives_pickling_between_tasks(tokenizer_file: Path) -> None:
    encoder = TextEncoder.from_file(tokenizer_file, 6)
    again = pickle.loads(pickle.dumps(encoder))
    assert (again.encode(["my old boat"]) == encoder.encode(["my old boat"])).all()


def test_a_tokenizer_without_a_pad_token_is_refused(tmp_path: Path) -> None:
    path = write_tokenizer(tmp_path / "t.json", ("[UNK]", "cat", "dog"))
    with pytest.raises(SpecError, match=r"names no pad token"):
        TextEncoder.from_file(path, 4)


def test_a_file_that_is_not_a_tokenizer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text('{"not": "a tokenizer"}')
    with pytest.raises(SpecError, match=r"not a tokenizers JSON file"):
        TextEncoder.from_file(path, 4)


def test_text_input_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"max_length must be an integer in 1\.\.8192"):
        TextInput(tmp_path / "t.json", max_length=0)
    with pytest.raises(SpecError, match=r"tokenizer_file .* does not exist"):
        TextInput(tmp_path / "missing.json").encoder()


def test_a_text_model_is_imported_not_trained(tokenizer_file: Path) -> None:
    with pytest.raises(SpecError, match=r"a text model is imported"):
        ModelSpec(
            name="t",
            load_data=load_texts,
            build_model=lambda n, k: None,  # pyright: ignore[reportArgumentType]
            text_input=TextInput(tokenizer_file),
        )


def text_dataset(tokenizer_file: Path, max_length: int = 12) -> Dataset:
    dataset = load_texts()
    return Dataset(
        dataset.train,
        dataset.validation,
        dataset.test,
        dataset.feature_columns,
        dataset.label_column,
        TextEncoder.from_file(tokenizer_file, max_length),
    )


def test_a_text_dataset_gives_token_ids_and_string_request_rows(tokenizer_file: Path) -> None:
    dataset = text_dataset(tokenizer_file)
    check_dataset(dataset)
    assert features(dataset.test, dataset).shape == (len(dataset.test), 12)
    assert input_width(dataset) == 12
    rows = request_rows(dataset.test.head(2), dataset)
    assert rows == dataset.test["text"].head(2).tolist()


def test_a_text_dataset_names_the_row_its_model_cannot_read(tokenizer_file: Path) -> None:
    dataset = text_dataset(tokenizer_file, max_length=4)
    with pytest.raises(DatasetError, match=r"train: text column 'text', row \d+: has \d+ tokens"):
        check_dataset(dataset)
    broken = text_dataset(tokenizer_file)
    train = broken.train.copy()
    train.loc[5, "text"] = ""
    with pytest.raises(DatasetError, match=r"train: text column 'text', row 5: is empty"):
        check_dataset(replace(broken, train=train))


def test_a_text_model_reads_one_column(tokenizer_file: Path) -> None:
    dataset = text_dataset(tokenizer_file)
    two = replace(
        dataset,
        train=dataset.train.assign(other=dataset.train["text"]),
        validation=dataset.validation.assign(other=dataset.validation["text"]),
        test=dataset.test.assign(other=dataset.test["text"]),
        feature_columns=("text", "other"),
    )
    with pytest.raises(DatasetError, match=r"reads one text column; 2 feature columns"):
        check_dataset(two)
