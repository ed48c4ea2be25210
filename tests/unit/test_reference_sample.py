"""The drift reference stored with a version: train rows only, bounded, reproducible."""

import numpy as np
import pandas as pd

from chassis.modelspec import Dataset
from chassis.reference_sample import REFERENCE_ROWS, reference_sample


def dataset(train_rows: int) -> Dataset:
    def frame(n: int, offset: int) -> pd.DataFrame:
        ids = np.arange(offset, offset + n)
        return pd.DataFrame({"a": ids.astype(float), "b": ids * 2.0, "label": ids % 3, "note": "x"})

    return Dataset(
        train=frame(train_rows, 0),
        validation=frame(50, 1_000_000),
        test=frame(50, 2_000_000),
        feature_columns=("a", "b"),
        label_column="label",
    )


def test_it_holds_the_features_and_the_label_only():
    sample = reference_sample(dataset(100))
    assert list(sample.columns) == ["a", "b", "label"]


def test_a_small_train_split_is_taken_whole_from_train_only():
    data = dataset(100)
    sample = reference_sample(data)
    assert len(sample) == 100
    assert sorted(sample["a"]) == sorted(data.train["a"])  # no validation or test row


def test_a_large_train_split_is_sampled_down_to_the_bound():
    data = dataset(REFERENCE_ROWS + 2000)
    sample = reference_sample(data)
    assert len(sample) == REFERENCE_ROWS
    assert sample.index.is_unique and sample.index.isin(data.train.index).all()
    assert sample["a"].max() < 1_000_000


def test_the_same_data_gives_the_same_reference():
    first = reference_sample(dataset(REFERENCE_ROWS + 2000))
    again = reference_sample(dataset(REFERENCE_ROWS + 2000))
    pd.testing.assert_frame_equal(first, again)


def test_the_bound_can_be_given():
    assert len(reference_sample(dataset(100), rows=10)) == 10


def test_a_regressors_reference_holds_its_predicted_value_of_each_row():
    data = dataset(100)
    sample = reference_sample(data, rows=10, predict=lambda x: x[:, 0] * 2.0)
    assert sample["prediction"].dtype == np.float64
    assert np.allclose(sample["prediction"], sample[data.feature_columns[0]] * 2.0)
    assert "prediction" not in reference_sample(data, rows=10).columns


def test_a_text_regressors_predictions_are_made_from_its_token_ids():
    from tokenizers import Tokenizer, models, pre_tokenizers

    from chassis.text_input import TextEncoder

    vocab = {"[PAD]": 0, "[UNK]": 1, "short": 2, "a": 3, "longer": 4, "text": 5}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    texts = ["short", "a longer text", "text"] * 10

    def frame() -> pd.DataFrame:
        return pd.DataFrame({"text": texts, "label": np.arange(30.0)})

    data = Dataset(
        frame(), frame(), frame(), ("text",), "label", TextEncoder(tokenizer.to_str(), 8)
    )
    seen: list[np.ndarray] = []

    def tokens_per_row(ids: np.ndarray) -> np.ndarray:
        seen.append(ids)
        return (ids != 0).sum(axis=1)

    sample = reference_sample(data, predict=tokens_per_row)
    assert seen[0].dtype == np.int64 and seen[0].shape == (30, 8)
    assert dict(zip(sample["text"], sample["prediction"], strict=True)) == {
        "short": 1.0,
        "a longer text": 3.0,
        "text": 1.0,
    }
