"""Choosing the cascade's threshold on validation data, to meet the user's target.

Two targets, one of which is given:
- `max_accuracy_loss_pp` (default 0.5): the cascade's accuracy may be at most this many
  percentage points below the full tier's. The threshold chosen is the lowest one from which
  every higher threshold meets the target too: the lowest single threshold meeting it can be
  a lucky dip between two that do not, and would not hold on new data.
- `max_escalation_share`: at most this share of rows may go to the full tier; the threshold
  chosen is the highest one meeting it (the most accurate cascade with that budget).
"""

import math
from dataclasses import dataclass

import numpy as np

from chassis.cascade.rule import calibrated_confidence, merged_labels
from chassis.errors import CascadeError

DEFAULT_MAX_ACCURACY_LOSS_PP = 0.5


@dataclass(frozen=True)
class Target:
    max_accuracy_loss_pp: float | None = None
    max_escalation_share: float | None = None

    def __post_init__(self) -> None:
        if (self.max_accuracy_loss_pp is None) == (self.max_escalation_share is None):
            raise CascadeError(
                "give exactly one cascade target: a maximum accuracy loss (pp) or a maximum "
                "escalation share"
            )
        loss = self.max_accuracy_loss_pp
        if loss is not None and not (math.isfinite(loss) and 0 <= loss <= 100):
            raise CascadeError(f"maximum accuracy loss must be in [0, 100] pp, got {loss!r}")
        share = self.max_escalation_share
        if share is not None and not (math.isfinite(share) and 0 <= share <= 1):
            raise CascadeError(f"maximum escalation share must be in [0, 1], got {share!r}")

    def describe(self) -> str:
        if self.max_accuracy_loss_pp is not None:
            return f"at most {self.max_accuracy_loss_pp:g} pp accuracy loss vs the full tier"
        return f"at most {self.max_escalation_share:.1%} of rows escalated"


def check_threshold(threshold: float) -> float:
    """`threshold` if it is in (0, 1]; a CascadeError naming it otherwise."""
    if isinstance(threshold, bool) or not (math.isfinite(threshold) and 0 < threshold <= 1):
        raise CascadeError(
            f"cascade threshold must be in (0, 1] (a calibrated probability), got {threshold!r}"
        )
    return float(threshold)


@dataclass(frozen=True)
class Outcome:
    """The cascade at one threshold, on labelled rows."""

    threshold: float
    escalation_share: float
    accuracy: float
    full_accuracy: float

    @property
    def accuracy_loss_pp(self) -> float:
        return (self.full_accuracy - self.accuracy) * 100.0


def outcome(
    threshold: float,
    confidence: np.ndarray,
    small_labels: np.ndarray,
    full_labels: np.ndarray,
    labels: np.ndarray,
) -> Outcome:
    answered = confidence >= threshold
    cascade = merged_labels(small_labels, full_labels[~answered], answered)
    return Outcome(
        threshold,
        float(1.0 - answered.mean()),
        float((cascade == labels).mean()),
        float((full_labels == labels).mean()),
    )


def choose_threshold(
    small_logits: np.ndarray,
    full_logits: np.ndarray,
    labels: np.ndarray,
    temperature: float,
    target: Target,
) -> Outcome:
    confidence = calibrated_confidence(small_logits, temperature)
    small_labels = np.asarray(small_logits).argmax(axis=1)
    full_labels = np.asarray(full_logits).argmax(axis=1)
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise CascadeError("choosing a cascade threshold needs labelled validation rows")
    if target.max_escalation_share is not None:
        # share(t) = rows with confidence < t: t = the k-th smallest confidence escalates at
        # most k rows (ties escalate fewer), k = floor(share x rows).
        k = math.floor(target.max_escalation_share * len(confidence) + 1e-9)
        ordered = np.sort(confidence)
        threshold = 1.0 if k >= len(ordered) else float(ordered[k])
        return outcome(
            check_threshold(min(threshold, 1.0)), confidence, small_labels, full_labels, labels
        )
    assert target.max_accuracy_loss_pp is not None
    # Every distinct confidence is a threshold where the outcome changes; 1.0 escalates
    # all but the rows the small tier is certain about.
    candidates = np.unique(np.concatenate([confidence[confidence > 0], [1.0]]))
    chosen: Outcome | None = None
    for threshold in candidates[::-1]:  # from the highest down, while the target holds
        result = outcome(float(threshold), confidence, small_labels, full_labels, labels)
        if result.accuracy_loss_pp > target.max_accuracy_loss_pp + 1e-9:
            break
        chosen = result
    if chosen is None:
        raise CascadeError(
            f"no threshold meets {target.describe()}: even at threshold 1 the cascade loses "
            f"more on the validation rows"
        )
    return chosen
