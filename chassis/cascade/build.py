"""A cascade's spec from its tiers' validation logits: pure, no registry, no Prefect."""

from dataclasses import dataclass

import numpy as np

from chassis.cascade.calibration import expected_calibration_error, fit_temperature
from chassis.cascade.rule import calibrated_confidence
from chassis.cascade.spec import CascadeSpec
from chassis.cascade.threshold import Target, check_threshold, outcome
from chassis.cascade.threshold import choose_threshold as choose
from chassis.errors import CascadeError


@dataclass(frozen=True)
class TextReading:
    """How a text classifier turns a text into its input row: its stored tokenizer (by its
    sha256 tag, verified when the version is fetched) and its text-input settings."""

    tokenizer_sha256: str
    max_length: int
    truncate: bool

    def describe(self) -> str:
        cut = ", truncating" if self.truncate else ""
        return f"tokenizer sha256 {self.tokenizer_sha256[:12]}, max_length {self.max_length}{cut}"


def check_tiers(
    small: str,
    small_width: int,
    small_classes: int,
    full: str,
    full_width: int,
    full_classes: int,
    small_text: TextReading | None = None,
    full_text: TextReading | None = None,
) -> None:
    """Both tiers read the same rows and answer from the same labels, else a CascadeError
    naming both. Text classifiers must read a text as the same token ids: the gateway
    tokenizes a request once, with the cascade version's (the small tier's) tokenizer, and
    escalates those ids to the full tier."""
    check_text_tiers(small, small_text, full, full_text)
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


def check_text_tiers(
    small: str, small_text: TextReading | None, full: str, full_text: TextReading | None
) -> None:
    if small_text == full_text:
        return
    if small_text is None or full_text is None:
        reader, numbers = (small, full) if small_text is not None else (full, small)
        raise CascadeError(
            f"cascade tiers read different inputs: {reader} reads text, {numbers} numbers"
        )
    raise CascadeError(
        f"cascade tiers read text through different tokenizers: {small} ({small_text.describe()}),"
        f" {full} ({full_text.describe()}); both tiers must use the same tokenizer and max_length"
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
