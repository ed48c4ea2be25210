"""Classification quality on a labelled split: accuracy, macro-F1, per-class recall."""

from dataclasses import dataclass
from typing import cast

import numpy as np


@dataclass(frozen=True)
class ClassificationReport:
    accuracy: float
    macro_f1: float
    per_class_recall: dict[int, float]
    rows: int

    def as_metrics(self, prefix: str = "test_") -> dict[str, float]:
        metrics = {f"{prefix}accuracy": self.accuracy, f"{prefix}macro_f1": self.macro_f1}
        metrics.update(
            {
                f"{prefix}recall_class_{label}": value
                for label, value in self.per_class_recall.items()
            }
        )
        return metrics


def classification_report(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int
) -> ClassificationReport:
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    classes = list(range(n_classes))
    # sklearn has no types: the checker infers `average: str` and `zero_division: str` from
    # the defaults ("binary", "warn"), though both take what is passed here.
    recalls = cast(  # one recall per class, with average=None
        np.ndarray,
        recall_score(y_true, y_pred, labels=classes, average=None, zero_division=0.0),  # pyright: ignore[reportArgumentType]
    )
    return ClassificationReport(
        accuracy=float(accuracy_score(y_true, y_pred)),
        macro_f1=float(
            f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0.0)  # pyright: ignore[reportArgumentType]
        ),
        per_class_recall={label: float(r) for label, r in zip(classes, recalls, strict=True)},
        rows=len(y_true),
    )
