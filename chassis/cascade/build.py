"""A cascade's spec from its tiers' validation logits: pure, no registry, no Prefect."""

import numpy as np

from chassis.cascade.calibration import expected_calibration_error, fit_temperature
from chassis.cascade.rule import calibrated_confidence
from chassis.cascade.spec import CascadeSpec
from chassis.cascade.threshold import Target, check_threshold, outcome
from chassis.cascade.threshold import choose_threshold as choose
from chassis.errors import CascadeError


def check_tiers(
    small: str, small_width: int, small_classes: int, full: str, full_width: int, full_classes: int
) -> None:
    """Both tiers read the same rows and answer from the same labels, else a CascadeError
    naming both."""
    if small_width != full_width:
        raise CascadeError(
            f"cascade tiers read different input widths: {small} reads {small_width} "
            f"features, {full} reads {full_width}"
        )
    if small_classes != full_classes:
        raise CascadeError(
            f"cascade tiers have different label sets: {small} answers {small_classes} "
            f"classes, {full} answers {full_classes}"
        )


def build_spec(
    full_version: int,
    small_logits: np.ndarray,
    full_logits: np.ndarray,
    labels: np.ndarray,
    target: Target,
    threshold: float | None = None,
) -> CascadeSpec:
    """Calibrate the small tier on the validation rows, then choose the threshold for
    `target` (or take `threshold` as given, checked in (0, 1])."""
    if small_logits.shape != full_logits.shape:
        raise CascadeError(
            f"the tiers' validation outputs differ in shape: {small_logits.shape} and "
            f"{full_logits.shape}"
        )
    labels = np.asarray(labels, dtype=np.int64)
    temperature = fit_temperature(small_logits, labels)
    if threshold is None:
        chosen = choose(small_logits, full_logits, labels, temperature, target)
        described = target.describe()
    else:
        confidence = calibrated_confidence(small_logits, temperature)
        chosen = outcome(
            check_threshold(threshold),
            confidence,
            small_logits.argmax(axis=1),
            full_logits.argmax(axis=1),
            labels,
        )
        described = f"threshold {threshold:g} given"
    return CascadeSpec(
        full_version=full_version,
        temperature=temperature,
        threshold=chosen.threshold,
        ece_before=expected_calibration_error(small_logits, labels, 1.0),
        ece_after=expected_calibration_error(small_logits, labels, temperature),
        validation_escalation_share=chosen.escalation_share,
        validation_accuracy_loss_pp=chosen.accuracy_loss_pp,
        target=described,
    )
