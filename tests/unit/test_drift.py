import numpy as np
import pandas as pd
import pytest

from chassis.drift import DriftConfig, DriftInputError, detect_drift

FEATURES = ["a", "b", "c", "d"]


def frame(rows=600, shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(rows, len(FEATURES)))
    data[:, :2] += shift  # half of the columns move
    return pd.DataFrame(data, columns=FEATURES)


def test_shifted_traffic_is_drift_and_same_distribution_is_not(tmp_path):
    reference = frame(seed=0)
    drifted = detect_drift(
        reference, frame(shift=3.0, seed=1), FEATURES, DriftConfig(), tmp_path / "r.html"
    )
    assert drifted.verdict == "drift"
    assert drifted.drifted_columns == 2 and drifted.drifted_share == 0.5
    assert {c.column for c in drifted.columns if c.drifted} == {"a", "b"}
    assert (tmp_path / "r.html").stat().st_size > 10_000
    calm = detect_drift(reference, frame(seed=2), FEATURES, DriftConfig())
    assert calm.verdict == "no-drift" and calm.drifted_columns == 0


def test_per_column_method_and_threshold_are_honoured():
    config = DriftConfig(per_column_method={"a": "ks"}, per_column_threshold={"a": 0.05})
    result = detect_drift(frame(seed=0), frame(shift=3.0, seed=1), FEATURES, config)
    column_a = next(c for c in result.columns if c.column == "a")
    assert "K-S" in column_a.method and column_a.threshold == 0.05 and column_a.drifted


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda f: f.iloc[0:0], "no rows"),
        (lambda f: f.assign(c=np.nan), "'c' is entirely null"),
        (lambda f: f.assign(d=f["d"].where(f.index % 2 == 0)), "'d' is 50% null"),
        (lambda f: f.head(5), "fewer than 30"),
    ],
    ids=["empty", "all-null", "null-spike", "too-few"],
)
def test_data_quality_comes_first_and_is_never_no_drift(mutate, problem):
    result = detect_drift(frame(seed=0), mutate(frame(seed=1)), FEATURES, DriftConfig())
    assert result.verdict == "data-quality-failure"
    assert any(problem in p for p in result.quality_problems)


def test_schema_mismatch_and_missing_reference_are_errors():
    with pytest.raises(DriftInputError, match="missing column"):
        detect_drift(frame(), frame().drop(columns=["b"]), FEATURES, DriftConfig())
    with pytest.raises(DriftInputError, match="non-numeric"):
        detect_drift(frame(), frame().assign(a="x"), FEATURES, DriftConfig())
    with pytest.raises(DriftInputError, match="reference snapshot is empty"):
        detect_drift(frame().iloc[0:0], frame(), FEATURES, DriftConfig())
    with pytest.raises(DriftInputError, match="drift_share"):
        DriftConfig(drift_share=0)
