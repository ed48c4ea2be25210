"""Quality on a labelled split, by task: a classifier's accuracy, macro-F1 and per-class
recall; a regressor's MAE, RMSE and R2. Which way each metric is better, and which one a
task is judged on first, are defined here once (gates and compression selection read them).
"""

import math
from dataclasses import dataclass
from typing import cast

import numpy as np

from chassis.task import CLASSIFICATION, REGRESSION, Task

# Every quality metric Chassis measures, and whether a higher value is better.
GREATER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "macro_f1": True,
    "mae": False,
    "rmse": False,
    "r2": True,
}
# The metrics a task measures; the first is its primary metric (best-epoch choice aside).
TASK_METRICS: dict[Task, tuple[str, ...]] = {
    CLASSIFICATION: ("accuracy", "macro_f1"),
    REGRESSION: ("rmse", "mae", "r2"),
}

# How reports and summaries name each metric.
METRIC_LABELS: dict[str, str] = {
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "rmse": "RMSE",
    "mae": "MAE",
    "r2": "R2",
}


def primary_metric(task: Task) -> str:
    return TASK_METRICS[task][0]


def greater_is_better(metric: str) -> bool:
    return GREATER_IS_BETTER[metric]


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

    def summary(self) -> str:
        return f"accuracy {self.accuracy:.4f}, macro-F1 {self.macro_f1:.4f}"

    def quality(self) -> dict[str, float]:
        """The task's metrics (TASK_METRICS), unprefixed: what gates compare."""
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1}


@dataclass(frozen=True)
class RegressionReport:
    mae: float
    rmse: float
    r2: float
    rows: int

    def as_metrics(self, prefix: str = "test_") -> dict[str, float]:
        return {f"{prefix}mae": self.mae, f"{prefix}rmse": self.rmse, f"{prefix}r2": self.r2}

    def summary(self) -> str:
        return f"RMSE {self.rmse:.4g}, MAE {self.mae:.4g}, R2 {self.r2:.4f}"

    def quality(self) -> dict[str, float]:
        """The task's metrics (TASK_METRICS), unprefixed: what gates compare."""
        return {"rmse": self.rmse, "mae": self.mae, "r2": self.r2}


QualityReport = ClassificationReport | RegressionReport


def regression_report(y_true: np.ndarray, y_pred: np.ndarray) -> RegressionReport:
    """MAE, RMSE and R2 of predictions (any shape with one value a row) against targets.
    R2 is 1 - SSE / SST; a constant target (SST 0) gives R2 0 unless the fit is exact."""
    truth = y_true.reshape(-1).astype(np.float64)
    errors = y_pred.reshape(-1).astype(np.float64) - truth
    sse = float(np.sum(errors**2))
    sst = float(np.sum((truth - truth.mean()) ** 2)) if truth.size else 0.0
    r2 = 1.0 - sse / sst if sst > 0 else (1.0 if sse == 0 else 0.0)
    return RegressionReport(
        mae=float(np.mean(np.abs(errors))) if truth.size else 0.0,
        rmse=math.sqrt(sse / truth.size) if truth.size else 0.0,
        r2=r2,
        rows=int(truth.size),
    )


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


def quality_report(
    task: Task, truth: np.ndarray, outputs: np.ndarray, n_classes: int | None
) -> QualityReport:
    """The report of a model's raw outputs on a split: a classifier's logits are argmaxed,
    a regressor's single output is its prediction."""
    if task == REGRESSION:
        return regression_report(truth, outputs[:, 0])
    assert n_classes is not None, "a classifier's report needs its number of classes"
    return classification_report(truth, outputs.argmax(axis=1), n_classes)
