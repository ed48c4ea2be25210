"""The text branch of the drift check, on real sentences: standard-library docstrings."""

import ast
import random
import sysconfig
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chassis import text_domain_classifier
from chassis.drift import DriftPolicy, SkippedFile
from chassis.errors import DriftInputError
from chassis.text_domain_classifier import (
    TEXT_DRIFT_DISPLAY_NAME,
    domain_classifier,
    mann_whitney_greater,
)
from chassis.text_drift import descriptors, detect_text_drift
from chassis.text_input import TextEncoder
from chassis.traffic import TYPO_RATE, apply_text_drift

TEXT = "text"
STDLIB = Path(sysconfig.get_paths()["stdlib"])
# Two topics: GUI widgets and mail messages against networking and processes.
TOPIC_A = ("tkinter", "email")
TOPIC_B = ("http", "urllib", "multiprocessing", "concurrent")


def docstring_paragraphs(packages: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    seen: set[str] = set()
    for package in packages:
        for path in sorted((STDLIB / package).rglob("*.py")):
            if "test" in path.parts:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8", errors="ignore"))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef):
                    continue
                for paragraph in (ast.get_docstring(node) or "").split("\n\n"):
                    text = " ".join(paragraph.split())
                    if 30 <= len(text) <= 300 and text not in seen:
                        seen.add(text)
                        found.append(text)
    random.Random(0).shuffle(found)
    return found


@pytest.fixture(scope="module")
def corpora() -> tuple[list[str], list[str]]:
    return docstring_paragraphs(TOPIC_A), docstring_paragraphs(TOPIC_B)


@pytest.fixture(scope="module")
def encoder(corpora: tuple[list[str], list[str]]) -> TextEncoder:
    """A small WordPiece tokenizer learned on the reference topic only."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=2000, special_tokens=["[PAD]", "[UNK]"], limit_alphabet=60
    )
    tokenizer.train_from_iterator(corpora[0][:600], trainer)
    return TextEncoder(tokenizer.to_str(), max_length=256, truncate=True)


def texts_frame(texts: Sequence[object], **extra: object) -> pd.DataFrame:
    return pd.DataFrame({TEXT: texts, **extra})


def test_same_topic_is_no_drift_and_another_topic_is_drift_naming_column_and_method(
    corpora, encoder, tmp_path
):
    topic_a, topic_b = corpora
    reference = texts_frame(topic_a[:300])
    calm = detect_text_drift(reference, texts_frame(topic_a[600:750]), TEXT, encoder, DriftPolicy())
    assert calm.verdict == "no-drift" and calm.drifted_columns == 0
    drifted = detect_text_drift(
        reference, texts_frame(topic_b[:150]), TEXT, encoder, DriftPolicy(), tmp_path / "r.html"
    )
    assert drifted.verdict == "drift" and drifted.drifted_share == 1.0
    assert drifted.drifted_column_names() == [TEXT]
    text = next(c for c in drifted.columns if c.column == TEXT)
    assert text.method == TEXT_DRIFT_DISPLAY_NAME and text.threshold == 0.01
    assert text.score < 1e-6 and text.counted
    assert f"{TEXT_DRIFT_DISPLAY_NAME}, threshold 0.01: {TEXT}" in drifted.methods()
    assert drifted.text_content_auc is not None and drifted.text_content_auc > 0.8
    assert drifted.monitoring_metrics()["text_content_auc"] == drifted.text_content_auc
    (explained,) = drifted.explanations
    assert f"text column {TEXT!r}" in explained and "character n-grams typical" in explained
    assert (tmp_path / "r.html").stat().st_size > 10_000


def test_the_classifier_is_trained_once_a_check(corpora, encoder, monkeypatch):
    # Evidently calls a column's test once per metric showing it; the explanation reads it too.
    calls: list[int] = []
    train = text_domain_classifier.domain_classifier

    def counted(reference: pd.Series, current: pd.Series) -> text_domain_classifier.ContentTest:
        calls.append(len(current))
        return train(reference, current)

    monkeypatch.setattr(text_domain_classifier, "domain_classifier", counted)
    topic_a, topic_b = corpora
    detect_text_drift(
        texts_frame(topic_a[:200]), texts_frame(topic_b[200:300]), TEXT, encoder, DriftPolicy()
    )
    assert calls == [100]


def test_texts_sent_many_times_are_not_mistaken_for_drift(corpora, encoder):
    # Repeats would sit in both halves of the classifier's split and be recognised by heart.
    topic_a, _ = corpora
    window = random.Random(0).choices(topic_a[600:750], k=400)
    result = detect_text_drift(
        texts_frame(topic_a[:300]), texts_frame(window), TEXT, encoder, DriftPolicy()
    )
    assert result.verdict == "no-drift"
    assert result.columns[0].column == TEXT and result.columns[0].score > 0.01


def test_descriptors_explain_but_do_not_vote(corpora, encoder):
    topic_a, topic_b = corpora
    result = detect_text_drift(
        texts_frame(topic_a[:300]), texts_frame(topic_b[:150]), TEXT, encoder, DriftPolicy()
    )
    by_name = {c.column: c for c in result.columns}
    assert set(by_name) == {TEXT, "text.tokens", "text.unknown_share"}
    assert not by_name["text.tokens"].counted and not by_name["text.unknown_share"].counted
    # A vocabulary learned on the other topic cuts these texts into more, rarer pieces.
    assert by_name["text.unknown_share"].drifted or by_name["text.tokens"].drifted
    assert result.drifted_columns == 1  # the text column alone is counted


def test_the_typos_scenario_of_chassis_traffic_is_drift_and_longer_in_tokens(corpora, encoder):
    topic_a, _ = corpora
    window = apply_text_drift(topic_a[600:750], "typos", seed=1)
    result = detect_text_drift(
        texts_frame(topic_a[:300]), texts_frame(window), TEXT, encoder, DriftPolicy()
    )
    assert result.verdict == "drift"
    tokens = next(c for c in result.columns if c.column == "text.tokens")
    assert tokens.drifted  # a misspelt word is read as more word pieces


def test_domain_classifier_p_values_are_calm_on_one_distribution(corpora):
    topic_a, _ = corpora
    reference = pd.Series(topic_a[:400])
    p_values = [
        domain_classifier(reference, pd.Series(random.Random(s).sample(topic_a[400:], 150))).p_value
        for s in range(3)
    ]
    assert min(p_values) > 0.01  # false alarms at 0.05 are 1 in 20; three below 0.01: broken


def test_regressor_predictions_are_judged_and_counted(corpora, encoder):
    topic_a, _ = corpora
    rng = np.random.default_rng(0)
    reference = texts_frame(topic_a[:300], prediction=rng.normal(size=300))
    window = texts_frame(topic_a[600:750], prediction=rng.normal(3.0, size=150))
    result = detect_text_drift(
        reference, window, TEXT, encoder, DriftPolicy(), prediction_column="prediction"
    )
    assert result.drifted_column_names() == ["prediction"]
    assert result.drifted_share == 0.5 and result.verdict == "drift"


def test_empty_window_is_a_quality_failure_naming_the_skipped_files(corpora, encoder):
    reference = texts_frame(corpora[0][:100])
    skipped = (SkippedFile("m/date=2026-01-01/a.parquet", "ArrowInvalid: bad"),)
    result = detect_text_drift(
        reference, pd.DataFrame(), TEXT, encoder, DriftPolicy(), skipped_files=skipped
    )
    assert result.verdict == "data-quality-failure"
    assert "the window has no rows" in (result.unusable_reason() or "")
    assert "a.parquet" in (result.unusable_reason() or "")


def test_window_without_the_text_column_or_without_strings_is_an_error(corpora, encoder):
    reference = texts_frame(corpora[0][:100])
    with pytest.raises(DriftInputError, match=r"missing column.*'text'"):
        detect_text_drift(
            reference, pd.DataFrame({"other": ["a"] * 50}), TEXT, encoder, DriftPolicy()
        )
    with pytest.raises(DriftInputError, match="holds no strings"):
        detect_text_drift(reference, texts_frame(list(range(50))), TEXT, encoder, DriftPolicy())
    with pytest.raises(DriftInputError, match="reference snapshot is empty"):
        detect_text_drift(reference.iloc[0:0], reference, TEXT, encoder, DriftPolicy())
    with pytest.raises(DriftInputError, match="per_column_method names the text column"):
        policy = DriftPolicy(per_column_method={TEXT: "ks"})
        detect_text_drift(reference, reference, TEXT, encoder, policy)


@pytest.mark.parametrize(
    ("window", "problem"),
    [
        ([None] * 40, "holds no text"),
        (["a real sentence about widgets"] * 20 + ["  "] * 20, "50% null, empty or not a string"),
        (["a real sentence about widgets"] * 5, "fewer than 30"),
        (["the same request", "another one"] * 30, "holds 2 distinct text(s) in 60 rows"),
    ],
    ids=["all-null", "blank-spike", "too-few", "two-distinct"],
)
def test_unusable_texts_are_a_quality_failure_never_no_drift(corpora, encoder, window, problem):
    result = detect_text_drift(
        texts_frame(corpora[0][:100]), texts_frame(window), TEXT, encoder, DriftPolicy()
    )
    assert result.verdict == "data-quality-failure"
    assert any(problem in p for p in result.quality_problems), result.quality_problems


def test_a_few_blank_texts_are_left_out_and_counted(corpora, encoder):
    topic_a, _ = corpora
    window = [*topic_a[600:700], "", None]
    result = detect_text_drift(
        texts_frame(topic_a[:300]), texts_frame(window), TEXT, encoder, DriftPolicy()
    )
    assert result.verdict == "no-drift" and result.dropped_rows == 2


def test_descriptors_count_tokens_and_unknown_share(encoder):
    texts = pd.Series(["widget", "\u4e2d\u6587\u4e2d\u6587"])
    found = descriptors(texts, TEXT, encoder)
    assert list(found.columns) == ["text.tokens", "text.unknown_share"]
    assert found["text.unknown_share"].iloc[0] == 0.0
    assert found["text.unknown_share"].iloc[1] == 1.0  # characters never seen in training


def test_mann_whitney_matches_scipy_with_ties_and_gives_the_auc():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(0)
    higher, lower = np.round(rng.normal(0.3, 1, 80), 1), np.round(rng.normal(0, 1, 300), 1)
    p_value, auc = mann_whitney_greater(higher, lower)
    expected = mannwhitneyu(higher, lower, alternative="greater")
    assert p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert auc == pytest.approx(expected.statistic / (80 * 300))
    assert mann_whitney_greater(np.ones(20), np.ones(30)) == (1.0, 0.5)


@pytest.mark.slow  # imports Prefect (seconds) for the task's own function
def test_the_drift_task_judges_a_text_model_by_its_text(corpora, encoder, tmp_path):
    from chassis.prediction_window import Window
    from tasks.monitoring import judge_drift

    topic_a, topic_b = corpora
    window = Window(texts_frame(topic_b[:150]), 1, ())
    reference = texts_frame(topic_a[:300], label=0)
    result = judge_drift.fn(
        reference, window, [TEXT], DriftPolicy(), tmp_path / "r.html", None, encoder
    )
    assert result.verdict == "drift" and result.drifted_column_names() == [TEXT]
    with pytest.raises(DriftInputError, match="one feature column"):
        judge_drift.fn(
            reference, window, [TEXT, "label"], DriftPolicy(), tmp_path / "r.html", None, encoder
        )


def test_traffic_typos_change_letters_at_the_rate(corpora):
    topic_a, _ = corpora
    sent = topic_a[600:750]
    typed = apply_text_drift(sent, "typos", seed=0)
    assert typed == apply_text_drift(sent, "typos", seed=0)  # a demo can be replayed
    letters = sum(c.isalpha() for t in sent for c in t)
    changed = sum(
        a != b for s, t in zip(sent, typed, strict=True) for a, b in zip(s, t, strict=True)
    )
    assert [len(t) for t in typed] == [len(t) for t in sent]
    # Replaced by a random letter: one in 26 lands on the same one.
    assert changed / letters == pytest.approx(TYPO_RATE * 25 / 26, abs=0.02)


def test_traffic_topic_sends_the_given_texts_and_needs_some():
    assert apply_text_drift(["a", "b", "c"], "topic", replacements=["x", " ", "y"]) == [
        "x",
        "y",
        "x",
    ]
    with pytest.raises(ValueError, match="needs texts of another topic"):
        apply_text_drift(["a"], "topic", replacements=["  "])
    with pytest.raises(ValueError, match="unknown text drift scenario 'shift'"):
        apply_text_drift(["a"], "shift")


def test_traffic_refuses_a_scenario_of_the_other_kind_of_model(tmp_path):
    from chassis.errors import ChassisError
    from chassis_cli.rollout_commands import drifted_rows

    with pytest.raises(ChassisError, match="text model; --drift shift changes numeric"):
        drifted_rows("m", ["a text"], "shift", None)
    with pytest.raises(ChassisError, match="reads numeric features; --drift typos is for text"):
        drifted_rows("m", [[1.0, 2.0]], "typos", None)
    with pytest.raises(ChassisError, match="--drift topic needs --texts FILE"):
        drifted_rows("m", ["a text"], "topic", None)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ChassisError, match="holds no text"):
        drifted_rows("m", ["a text"], "topic", empty)
    other = tmp_path / "other.txt"
    other.write_text("about networking\nabout processes\n", encoding="utf-8")
    assert drifted_rows("m", ["a", "b", "c"], "topic", other) == [
        "about networking",
        "about processes",
        "about networking",
    ]
