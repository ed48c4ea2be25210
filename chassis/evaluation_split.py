"""The rows a version is judged on, stored with it: its test split, feature columns first,
then the label, with the column roles in the file's own metadata. Gates read this file,
never the spec's `load_data`, so a version can be judged again after its spec changed."""

import json
from pathlib import Path
from typing import TYPE_CHECKING

from chassis.errors import DatasetError
from chassis.modelspec import Dataset

if TYPE_CHECKING:
    import pandas as pd

METADATA_KEY = b"chassis.evaluation"


def write_evaluation_split(dataset: Dataset, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = [*dataset.feature_columns, dataset.label_column]
    table = pa.Table.from_pandas(dataset.test[columns], preserve_index=False)
    roles = {"feature_columns": list(dataset.feature_columns), "label_column": dataset.label_column}
    metadata = {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(roles).encode()}
    pq.write_table(table.replace_schema_metadata(metadata), path)


def read_evaluation_split(path: Path) -> Dataset:
    """The stored test split as a Dataset whose train and validation splits are empty."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise DatasetError(f"{path.name} has no {METADATA_KEY.decode()} metadata: not Chassis's")
    roles = json.loads(raw)
    test: pd.DataFrame = table.to_pandas()
    return Dataset(
        train=test.iloc[:0],
        validation=test.iloc[:0],
        test=test,
        feature_columns=tuple(roles["feature_columns"]),
        label_column=str(roles["label_column"]),
    )
