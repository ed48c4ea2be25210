"""Content drift of a text column: can a classifier tell the window's texts from the reference's?

A domain classifier (logistic regression on TF-IDF of character 2-4-grams within words) is
trained on a stratified half of reference + window texts, labelled by where they came from,
and scores the other half. If the two sets come from one distribution, the held-out scores of
window texts are no higher than those of reference texts: the one-sided Mann-Whitney U test on
them gives the p-value (U / (n_window * n_reference) is the classifier's ROC AUC). Small p:
the classifier learned something real that separates the window, so the content drifted.

Why this and not Evidently's own text test (the same idea on English word TF-IDF): character
n-grams see typos, casing, encoding damage and non-English text as well as new topics (words
unseen in training are features of nothing; their n-grams are shared); the Mann-Whitney
p-value is exact enough without Evidently's 1000 random-classifier AUCs (seconds per check, and
it reseeds NumPy's global generator); and one method at every reference size (Evidently
switches to a fixed AUC > 0.55 rule above 1000 reference rows, which ignores the window size).
It is registered as an Evidently stat test so the check runs through the same report as
numeric drift, and its name ends with `p_value`, as Evidently names tests whose score is one.
"""

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

TEXT_DRIFT_METHOD = "text_domain_classifier"
TEXT_DRIFT_DISPLAY_NAME = "Domain classifier (char n-gram TF-IDF) p_value"
DEFAULT_TEXT_THRESHOLD = 0.01
# Enough to learn from and to test on, on each side; below it the test has no power.
MIN_SIDE_ROWS = 10
SEED = 0
# Evidently calls a column's stat test once per metric that shows it (three in the drift
# preset): the same pair of samples is trained on once.
_RESULTS: "OrderedDict[tuple[str, str], ContentTest]" = OrderedDict()
_KEPT_RESULTS = 4
# Character n-grams shown as typical of the window, the classifier's strongest.
SHOWN_NGRAMS = 8


@dataclass(frozen=True)
class ContentTest:
    """The domain classifier's verdict on a pair of samples, and what it learnt."""

    p_value: float
    auc: float  # held-out ROC AUC: 0.5 cannot tell the sides apart, 1.0 always can
    window_ngrams: tuple[str, ...]  # the n-grams that most mark a text as the window's

    def describe(self, column: str) -> str:
        typical = ", ".join(repr(n) for n in self.window_ngrams) or "none"
        return (
            f"text column {column!r}: a classifier tells the window's texts from the "
            f"reference's with ROC AUC {self.auc:.2f} (0.5: it cannot; p-value "
            f"{self.p_value:.2g}); character n-grams typical of the window: {typical}"
        )


def _digest(texts: pd.Series) -> str:
    hashed = pd.util.hash_pandas_object(texts.astype(str), index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def mann_whitney_greater(higher: np.ndarray, lower: np.ndarray) -> tuple[float, float]:
    """(one-sided p-value, U / (n1 * n2)) of `higher` being stochastically greater than
    `lower`: the normal approximation with tie correction and continuity correction, exact
    enough for the tens of rows a side and more the check needs."""
    n1, n2 = len(higher), len(lower)
    ranks = pd.Series(np.r_[higher, lower]).rank(method="average").to_numpy()
    u = float(ranks[:n1].sum()) - n1 * (n1 + 1) / 2
    n = n1 + n2
    _, ties = np.unique(ranks, return_counts=True)
    tie_term = float((ties.astype(np.float64) ** 3 - ties).sum()) / (n * (n - 1))
    sd = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term))
    if sd == 0.0:  # every score equal: nothing separates the two sides
        return 1.0, 0.5
    z = (u - n1 * n2 / 2 - 0.5) / sd
    return 0.5 * math.erfc(z / math.sqrt(2)), u / (n1 * n2)


def distinct_texts(texts: pd.Series) -> pd.Series:
    return pd.Series(pd.unique(texts.astype(str).to_numpy()), dtype=object)


def domain_classifier(reference: pd.Series, current: pd.Series) -> ContentTest:
    """How well a classifier tells `current` texts from `reference` ones, on held-out texts.

    Each side's distinct texts are judged: a text sent many times would otherwise land in
    both halves, be learnt by heart from the training half and "recognised" in the test
    half, a separation that says nothing about the distribution (a calm window drawn with
    repeats from the reference's own texts scored p < 1e-15). Repeats are not independent
    rows either, which the p-value assumes."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    reference, current = distinct_texts(reference), distinct_texts(current)
    if min(len(reference), len(current)) < MIN_SIDE_ROWS:
        raise ValueError(f"text content drift needs at least {MIN_SIDE_ROWS} distinct texts a side")
    texts = np.asarray([*reference, *current], dtype=object)
    labels = np.r_[np.zeros(len(reference), dtype=np.int8), np.ones(len(current), dtype=np.int8)]
    # sklearn has no types: given arrays, train_test_split returns arrays.
    train_x, test_x, train_y, test_y = cast(
        list[np.ndarray],
        train_test_split(texts, labels, test_size=0.5, stratify=labels, random_state=SEED),
    )
    vectorizer = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, max_features=2**16
    )
    # Balanced classes: a 5000-row reference against a 300-row window still learns the window.
    classifier = LogisticRegression(class_weight="balanced", max_iter=1000)
    classifier.fit(vectorizer.fit_transform(train_x), train_y)
    scores = np.asarray(classifier.decision_function(vectorizer.transform(test_x)), np.float64)
    p_value, auc = mann_whitney_greater(scores[test_y == 1], scores[test_y == 0])
    weights = np.asarray(classifier.coef_, np.float64)[0]
    names = [str(n) for n in vectorizer.get_feature_names_out()]
    strongest = [i for i in np.argsort(-weights)[:SHOWN_NGRAMS] if weights[i] > 0]
    return ContentTest(p_value, auc, tuple(names[i] for i in strongest))


def judged(reference: pd.Series, current: pd.Series) -> ContentTest:
    """`domain_classifier`, remembered for the last few pairs of samples."""
    key = (_digest(reference), _digest(current))
    if key not in _RESULTS:
        _RESULTS[key] = domain_classifier(reference, current)
        while len(_RESULTS) > _KEPT_RESULTS:
            _RESULTS.popitem(last=False)
    return _RESULTS[key]


def _stat_test(
    reference: pd.Series, current: pd.Series, feature_type: Any, threshold: float
) -> tuple[float, bool]:
    p_value = judged(reference, current).p_value
    return p_value, p_value < threshold


def register() -> None:
    """Make the method known to Evidently by name (idempotent: same name, same test)."""
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    register_stattest(
        StatTest(
            name=TEXT_DRIFT_METHOD,
            display_name=TEXT_DRIFT_DISPLAY_NAME,
            allowed_feature_types=[ColumnType.Text],
            default_threshold=DEFAULT_TEXT_THRESHOLD,
        ),
        _stat_test,
    )
