"""Drift of a text model's served texts against its reference, with data quality first.

The text branch of chassis/drift.py, judged in the same order and returning the same
`DriftResult`: the schema must match (the text column present, holding strings; else
`DriftInputError`); the window must be usable (rows; texts that are null, not strings or
blank counted like nulls, within the policy's null share; the serving suite, when run);
only then Evidently's report judges the text column with the domain classifier of
chassis/text_domain_classifier.py, and a regressor's predictions (when the reference holds
them) with the numeric tests, and the verdict is the share of those columns that drifted.

Two descriptors, read with the served version's own tokenizer, are judged beside them but
not counted in the verdict: they say what moved, in terms of what the model reads. Tokens per
text (longer, shorter), and the share of tokens the tokenizer could not map (its unknown
token: typos, another script, encoding damage). A drifted descriptor with a calm content test
is a note for a human, not a retraining: the content test already saw the same texts.
"""

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from chassis.drift import (
    DriftPolicy,
    DriftResult,
    NonFinite,
    SkippedFile,
    Verdict,
    check_schema,
    column_problem,
    count_non_finite,
    finite_rows,
    no_rows_problem,
    run_evidently,
    sample_rows,
    suite_fails,
)
from chassis.errors import DriftInputError
from chassis.expectations import SuiteResult
from chassis.text_domain_classifier import MIN_SIDE_ROWS, judged
from chassis.text_input import TextEncoder

TOKENS, UNKNOWN_SHARE = "tokens", "unknown_share"


def descriptor_name(column: str, descriptor: str) -> str:
    return f"{column}.{descriptor}"


def check_text_schema(frame: pd.DataFrame, column: str) -> None:
    if column not in frame.columns:
        raise DriftInputError(
            f"prediction log does not match the reference: missing column(s) {column!r}"
        )
    values = frame[column]
    strings = values.map(lambda v: isinstance(v, str))
    if len(values) and not bool(strings.any()) and bool(values.notna().any()):
        raise DriftInputError(
            f"prediction log does not match the reference: text column {column!r} holds no "
            f"strings (dtype {values.dtype})"
        )


def usable_texts(values: pd.Series) -> pd.Series:
    """True where the value is a string with something besides whitespace."""
    return values.map(lambda v: isinstance(v, str) and bool(v.strip())).astype(bool)


def _text_problem(column: str, rows: int, unusable: int, policy: DriftPolicy) -> str | None:
    if unusable == rows:
        return f"column {column!r} holds no text (every value is null, empty or not a string)"
    if unusable / rows > policy.max_null_share:
        return (
            f"column {column!r} is {unusable / rows:.0%} null, empty or not a string "
            f"(limit {policy.max_null_share:.0%})"
        )
    return None


def unknown_token_id(encoder: TextEncoder) -> int | None:
    """The id of the tokenizer's unknown token, or None when its model has none (byte-level
    BPE maps every text to known tokens)."""
    token = json.loads(encoder.tokenizer_json).get("model", {}).get("unk_token")
    if not isinstance(token, str):
        return None
    return encoder.tokenizer.token_to_id(token)


def descriptors(texts: pd.Series, column: str, encoder: TextEncoder) -> pd.DataFrame:
    """Per text: its length in the model's tokens (special tokens included, before any
    truncation) and, when the tokenizer has an unknown token, the share of tokens that are it."""
    encodings = encoder.tokenizer.encode_batch([str(t) for t in texts])
    counts = np.array([len(e.ids) for e in encodings], dtype=np.float64)
    frame = pd.DataFrame({descriptor_name(column, TOKENS): counts}, index=texts.index)
    unknown = unknown_token_id(encoder)
    if unknown is not None:
        hits = np.array([sum(1 for i in e.ids if i == unknown) for e in encodings], np.float64)
        frame[descriptor_name(column, UNKNOWN_SHARE)] = hits / np.maximum(counts, 1.0)
    return frame


def _usable_rows(
    frame: pd.DataFrame, column: str, prediction: str | None, encoder: TextEncoder
) -> pd.DataFrame:
    """The usable rows as Evidently sees them: the text, its descriptors, the prediction."""
    kept = frame[usable_texts(frame[column])]
    if prediction:
        kept = finite_rows(kept, [prediction])
    parts = [kept[[column]].astype({column: str}), descriptors(kept[column], column, encoder)]
    if prediction:
        parts.append(kept[[prediction]].astype("float64"))
    return pd.concat(parts, axis=1)


def quality_problems(
    current: pd.DataFrame, column: str, prediction: str | None, policy: DriftPolicy
) -> tuple[list[str], tuple[NonFinite, ...], int]:
    """Problems that make the window unusable, its columns' null counts, and how many rows
    the distribution test leaves out (unusable text or non-finite prediction)."""
    rows = len(current)
    problems: list[str] = []
    if rows < policy.min_rows:
        problems.append(f"the window has {rows} rows, fewer than {policy.min_rows}")
    usable = usable_texts(current[column])
    unusable = rows - int(usable.sum())
    counts = [NonFinite(column, rows, unusable, 0, 0)]
    if (problem := _text_problem(column, rows, unusable, policy)) is not None:
        problems.append(problem)
    if prediction:
        counted = count_non_finite(current, [prediction])
        counts += counted
        problems += [p for p in (column_problem(c, policy) for c in counted) if p]
        usable &= np.isfinite(current[prediction].astype("float64"))
    kept = int(usable.sum())
    if not problems and kept < policy.min_rows:
        problems.append(
            f"{rows - kept} of {rows} rows have no text or a non-finite prediction; the "
            f"{kept} left are fewer than {policy.min_rows}"
        )
    distinct = int(current.loc[usable, column].nunique())
    if not problems and distinct < MIN_SIDE_ROWS:
        problems.append(
            f"column {column!r} holds {distinct} distinct text(s) in {kept} rows; the content "
            f"test needs at least {MIN_SIDE_ROWS}"
        )
    return problems, tuple(c for c in counts if c.total), rows - kept


def detect_text_drift(
    reference: pd.DataFrame | None,
    current: pd.DataFrame,
    column: str,
    encoder: TextEncoder,
    policy: DriftPolicy,
    html_path: Path | None = None,
    skipped_files: Sequence[SkippedFile] = (),
    serving_suite: SuiteResult | None = None,
    prediction_column: str | None = None,
) -> DriftResult:
    """Judge the window's texts in `column` against the reference's, as `detect_drift` does
    numeric features: same policy, same result, same order (schema, quality, distribution).
    `encoder` is the served version's: its tokenizer gives the descriptors."""
    if reference is None or len(reference) == 0:
        raise DriftInputError("the reference snapshot is empty; cannot judge drift")
    if column in policy.per_column_method:
        raise DriftInputError(
            f"per_column_method names the text column {column!r}: a text column is judged by "
            "the text domain classifier (its per_column_threshold is the p-value threshold)"
        )
    check_text_schema(reference, column)
    if prediction_column:
        check_schema(reference, [prediction_column])
    skipped = tuple(skipped_files)
    if len(current) == 0:  # an empty log has no columns either: report it as what it is
        return DriftResult(
            "data-quality-failure",
            0,
            len(reference),
            quality_problems=(no_rows_problem(skipped),),
            skipped_files=skipped,
            drift_share_needed=policy.drift_share,
        )
    check_text_schema(current, column)
    if prediction_column:
        check_schema(current, [prediction_column])
    problems, non_finite, dropped = quality_problems(current, column, prediction_column, policy)
    if problems or suite_fails(serving_suite, policy):
        return DriftResult(
            "data-quality-failure",
            len(current),
            len(reference),
            quality_problems=tuple(problems),
            non_finite=non_finite,
            skipped_files=skipped,
            serving_suite=serving_suite,
            serving_suite_action=policy.serving_suite,
            drift_share_needed=policy.drift_share,
        )
    judged_reference = _usable_rows(reference, column, prediction_column, encoder)
    if len(judged_reference) == 0:
        raise DriftInputError("the reference snapshot has no row with a usable text")
    judged_current = _usable_rows(current, column, prediction_column, encoder)
    names = list(judged_current.columns)
    _, _, columns = run_evidently(
        judged_reference, judged_current, names, policy, html_path, text_columns=[column]
    )
    # The samples Evidently judged (run_evidently draws them so): the classifier's result
    # is remembered, not trained again.
    content = judged(
        sample_rows(judged_reference, policy.max_rows, policy.seed)[column],
        sample_rows(judged_current, policy.max_rows, policy.seed + 1)[column],
    )
    counted_names = {column, prediction_column}
    columns = tuple(c if c.column in counted_names else replace(c, counted=False) for c in columns)
    counted = [c for c in columns if c.counted]
    drifted = sum(1 for c in counted if c.drifted)
    share = drifted / len(counted)
    verdict: Verdict = "drift" if share >= policy.drift_share else "no-drift"
    return DriftResult(
        verdict,
        len(current),
        len(reference),
        drifted,
        share,
        columns,
        non_finite=non_finite,
        dropped_rows=dropped,
        skipped_files=skipped,
        serving_suite=serving_suite,
        serving_suite_action=policy.serving_suite,
        explanations=(content.describe(column),),
        text_content_auc=content.auc,
        drift_share_needed=policy.drift_share,
    )
