"""The cascade's one rule, used by the threshold search, the gates' measurement and the
gateway alike: the small tier answers a row when its calibrated top-class probability is at
least the threshold; every other row is escalated to the full tier."""

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of `logits / temperature`, in float64 (a float32 softmax rounds
    confident rows to exactly 1.0, which would tie them with every threshold of 1)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def calibrated_confidence(logits: np.ndarray, temperature: float) -> np.ndarray:
    """The top class's probability after temperature scaling, one per row."""
    # 1 / sum(exp((z - z_max) / T)): the softmax's largest entry without the full matrix.
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    return 1.0 / np.exp(shifted).sum(axis=1)


def cascade_answer(small_logits: np.ndarray, temperature: float, threshold: float) -> np.ndarray:
    """Boolean mask of the rows the small tier answers (True) rather than escalates."""
    return calibrated_confidence(small_logits, temperature) >= threshold


def merged_labels(
    small_labels: np.ndarray, full_labels: np.ndarray, answered_by_small: np.ndarray
) -> np.ndarray:
    """The cascade's labels in row order: `full_labels` holds one label per escalated row."""
    labels = np.array(small_labels, copy=True)
    labels[~answered_by_small] = full_labels
    return labels
