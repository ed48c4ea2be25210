"""Temperature scaling (Guo et al., 2017) and expected calibration error.

One scalar T > 0 divides the small tier's logits; it is the T minimising the negative
log-likelihood of the validation labels. T > 1 softens an over-confident model, T < 1
sharpens an under-confident one; the argmax (and so the accuracy) never changes.
"""

import math

import numpy as np

from chassis.cascade.rule import calibrated_confidence, softmax
from chassis.errors import CascadeError

# The search runs over log T in this range: T from 0.02 to 50 covers every model we have
# seen (a T at either end means the logits carry next to no information, and the figures
# printed at build time show it). A golden-section search is deterministic and enough: the
# NLL is convex in 1/T (a log-sum-exp of linear functions plus a linear term).
LOG_T_BOUNDS = (math.log(0.02), math.log(50.0))
# Equal-width confidence bins of the expected calibration error (the usual 15, as in Guo
# et al.), over (0, 1]: bin i holds confidences in (i/15, (i+1)/15].
ECE_BINS = 15


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    probabilities = softmax(logits, temperature)
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.log(np.maximum(picked, 1e-300)).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising the validation NLL of softmax(logits / T)."""
    if len(logits) == 0 or len(logits) != len(labels):
        raise CascadeError(
            f"temperature scaling needs labelled validation rows; got {len(logits)} rows of "
            f"logits and {len(labels)} labels"
        )
    labels = np.asarray(labels, dtype=np.int64)

    def loss(log_t: float) -> float:
        return negative_log_likelihood(logits, labels, math.exp(log_t))

    low, high = LOG_T_BOUNDS
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    while high - low > 1e-5:
        if loss_a <= loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    return math.exp((low + high) / 2.0)


def expected_calibration_error(
    logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0, bins: int = ECE_BINS
) -> float:
    """Sum over equal-width confidence bins of (rows in bin / rows) x |accuracy - mean
    confidence| in the bin, confidence being the top class's probability."""
    confidence = calibrated_confidence(logits, temperature)
    correct = np.asarray(logits).argmax(axis=1) == np.asarray(labels)
    # ceil(c * bins) - 1 puts c in (i/bins, (i+1)/bins] into bin i.
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    error = 0.0
    for b in range(bins):
        in_bin = index == b
        if in_bin.any():
            gap = abs(float(correct[in_bin].mean()) - float(confidence[in_bin].mean()))
            error += float(in_bin.mean()) * gap
    return error
