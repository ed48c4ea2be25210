"""Cascade core: calibration, expected calibration error, threshold choice and the rule."""

import json

import numpy as np
import pytest

from chassis.cascade.build import TextReading, build_spec, check_tiers
from chassis.cascade.calibration import expected_calibration_error, fit_temperature
from chassis.cascade.rule import calibrated_confidence, cascade_answer, merged_labels
from chassis.cascade.spec import CascadeSpec
from chassis.cascade.threshold import Target, choose_threshold, outcome
from chassis.errors import CascadeError


def overconfident(
    rows: int = 4000, classes: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax at T=1 is the true distribution's (correct with probability
    p_i), scaled by 4: a model that is right as often as before but far more sure of it."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0.0, 1.5, size=(rows, classes))
    probabilities = np.exp(true_logits) / np.exp(true_logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(classes, p=p) for p in probabilities])
    return true_logits * 4.0, labels


def test_temperature_scaling_of_an_overconfident_model_lowers_ece() -> None:
    logits, labels = overconfident()
    temperature = fit_temperature(logits, labels)
    before = expected_calibration_error(logits, labels, 1.0)
    after = expected_calibration_error(logits, labels, temperature)
    assert 3.0 < temperature < 5.0  # the factor the logits were inflated by
    assert after < before / 3
    assert after < 0.05


def test_temperature_fit_is_deterministic() -> None:
    logits, labels = overconfident(rows=500)
    assert fit_temperature(logits, labels) == fit_temperature(logits, labels)


def test_ece_of_a_perfectly_calibrated_bin_is_zero() -> None:
    # Two classes, confidence 0.75 on every row, right on exactly 3 of 4 rows.
    logits = np.tile(np.array([[np.log(3.0), 0.0]]), (4, 1))
    labels = np.array([0, 0, 0, 1])
    assert expected_calibration_error(logits, labels) == pytest.approx(0.0, abs=1e-12)


def test_rule_answers_confident_rows_and_merges_in_row_order() -> None:
    logits = np.array([[5.0, 0.0], [0.1, 0.0], [0.0, 6.0]])
    mask = cascade_answer(logits, 1.0, 0.9)
    assert mask.tolist() == [True, False, True]
    # A higher temperature flattens the probabilities: fewer rows are confident.
    assert cascade_answer(logits, 10.0, 0.9).tolist() == [False, False, False]
    merged = merged_labels(logits.argmax(axis=1), np.array([1]), mask)
    assert merged.tolist() == [0, 1, 1]
    assert calibrated_confidence(logits, 1.0)[0] == pytest.approx(1 / (1 + np.exp(-5.0)))


def test_threshold_meets_the_accuracy_target_on_validation_rows() -> None:
    logits, labels = overconfident(rows=3000, seed=1)
    full = np.eye(5)[labels] * 10.0  # the full tier is always right
    temperature = fit_temperature(logits, labels)
    chosen = choose_threshold(logits, full, labels, temperature, Target(max_accuracy_loss_pp=2.0))
    assert 0 < chosen.threshold <= 1
    assert chosen.accuracy_loss_pp <= 2.0 + 1e-9  # counted in whole rows: float sums
    assert 0 < chosen.escalation_share < 1
    # Every higher threshold meets it too, and the next lower one does not (or none exists).
    confidence = calibrated_confidence(logits, temperature)
    small, full_labels = logits.argmax(axis=1), full.argmax(axis=1)
    lower = confidence[confidence < chosen.threshold]
    if len(lower):
        below = outcome(float(lower.max()), confidence, small, full_labels, labels)
        assert below.accuracy_loss_pp > 2.0 + 1e-9


def test_threshold_meets_an_escalation_budget() -> None:
    logits, labels = overconfident(rows=1000, seed=2)
    full = np.eye(5)[labels] * 10.0
    chosen = choose_threshold(logits, full, labels, 1.0, Target(max_escalation_share=0.2))
    assert chosen.escalation_share <= 0.2
    assert chosen.escalation_share > 0.15  # the budget is used, not wasted


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.01, float("nan")])
def test_threshold_outside_zero_one_is_refused(threshold: float) -> None:
    logits, labels = overconfident(rows=50)
    with pytest.raises(CascadeError, match=r"threshold must be in \(0, 1\]"):
        build_spec(2, logits, logits, labels, Target(max_accuracy_loss_pp=0.5), threshold)


def test_bad_targets_and_tiers_are_refused() -> None:
    with pytest.raises(CascadeError, match="exactly one"):
        Target()
    with pytest.raises(CascadeError, match="escalation share"):
        Target(max_escalation_share=1.5)
    with pytest.raises(
        CascadeError, match="input widths: small v3 reads 64 features, full v1 reads 13"
    ):
        check_tiers("small v3", 64, 10, "full v1", 13, 10)
    with pytest.raises(
        CascadeError, match="label sets: small v3 answers 3 classes, full v1 answers 10"
    ):
        check_tiers("small v3", 64, 3, "full v1", 64, 10)


def test_text_tiers_must_read_texts_through_the_same_tokenizer() -> None:
    minilm = TextReading("ab" * 32, 64, False)
    check_tiers("small v2", 64, 4, "full v1", 64, 4, minilm, TextReading("ab" * 32, 64, False))
    cases = [
        (TextReading("cd" * 32, 64, False), "tokenizer sha256 cdcdcdcdcdcd, max_length 64"),
        (
            TextReading("ab" * 32, 128, False),
            "full v1 (tokenizer sha256 abababababab, max_length 128)",
        ),
        (TextReading("ab" * 32, 64, True), "max_length 64, truncating"),
    ]
    for full, named in cases:
        with pytest.raises(CascadeError) as refused:
            check_tiers("small v2", 64, 4, "full v1", full.max_length, 4, minilm, full)
        message = str(refused.value)
        assert message.startswith("cascade tiers read text through different tokenizers: ")
        assert "small v2 (tokenizer sha256 abababababab, max_length 64)" in message
        assert named in message and "\n" not in message
    # A text tier and a numeric one: named before their widths are compared.
    with pytest.raises(
        CascadeError, match="different inputs: full v1 reads text, small v2 numbers"
    ):
        check_tiers("small v2", 64, 4, "full v1", 64, 4, None, minilm)


def test_spec_round_trips_through_its_tag() -> None:
    logits, labels = overconfident(rows=400)
    spec = build_spec(7, logits, np.eye(5)[labels] * 10.0, labels, Target(max_accuracy_loss_pp=0.5))
    assert CascadeSpec.from_json(spec.to_json()) == spec
    assert spec.ece_after < spec.ece_before
    with pytest.raises(CascadeError, match="unreadable cascade tag"):
        CascadeSpec.from_json(json.dumps({"full_version": 2}))
