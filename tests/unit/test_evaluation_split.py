"""The test rows stored with a version read back as the same rows with the same roles, and
another version's columns are taken from them or refused by name."""

import json
from pathlib import Path

import pandas as pd
import pytest

from chassis.errors import DatasetError, GateConfigError
from chassis.evaluation_split import read_evaluation_split, write_evaluation_split
from chassis.registry import VersionFiles
from chassis.registry.tags import TAG_FEATURE_COLUMNS
from chassis.version_loader import rows_for
from tests.fixtures.specs import blob_dataset


def test_stored_test_split_reads_back_with_its_roles(tmp_path: Path) -> None:
    dataset = blob_dataset()
    path = tmp_path / "evaluation.parquet"
    write_evaluation_split(dataset, path)
    stored = read_evaluation_split(path)
    assert stored.feature_columns == dataset.feature_columns
    assert stored.label_column == dataset.label_column
    columns = [*dataset.feature_columns, dataset.label_column]
    pd.testing.assert_frame_equal(stored.test, dataset.test[columns].reset_index(drop=True))
    assert stored.train.empty and stored.validation.empty


def test_a_parquet_file_not_written_by_chassis_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evaluation.parquet"
    blob_dataset().test.to_parquet(path)
    with pytest.raises(DatasetError, match=r"has no chassis\.evaluation metadata"):
        read_evaluation_split(path)


def version_with(tags: dict[str, str]) -> VersionFiles:
    return VersionFiles("m", 1, Path("model.onnx"), tags, {})


def test_champion_reading_other_columns_is_measured_on_those_columns() -> None:
    dataset = blob_dataset()
    reordered = rows_for(
        dataset, version_with({TAG_FEATURE_COLUMNS: json.dumps(["f3", "f1"])}), "m v1"
    )
    assert reordered.feature_columns == ("f3", "f1")
    # An old version (no column tag) reads the candidate's columns.
    assert rows_for(dataset, version_with({}), "m v1") is dataset


def test_champion_reading_columns_the_rows_lack_is_refused_by_name() -> None:
    tags = {TAG_FEATURE_COLUMNS: json.dumps(["f0", "income"])}
    with pytest.raises(GateConfigError, match=r"m v1 reads column.*'income'"):
        rows_for(blob_dataset(), version_with(tags), "m v1")
