"""Top-k metrics: the one place that defines how predictions are scored.

The GLC 2022 metric is the top-30 error: the share of observations whose true species is
not among the 30 predicted ids. Predicted sets hold distinct ids (the organizers' code
would count a duplicate twice).
"""

import numpy as np


def top_k_error(predicted: np.ndarray, labels: np.ndarray, k: int | None = None) -> float:
    """Share of rows whose label is not in the first ``k`` columns of ``predicted``.

    ``predicted`` is (n, K) species ids, best first; ``k`` defaults to K.
    """
    predicted = np.asarray(predicted)
    labels = np.asarray(labels)
    if predicted.ndim != 2 or len(predicted) != len(labels):
        raise ValueError(f"predicted {predicted.shape} and labels {labels.shape} do not match")
    k = predicted.shape[1] if k is None else k
    if k > predicted.shape[1]:
        raise ValueError(f"k={k} but only {predicted.shape[1]} ids per row")
    if len(labels) == 0:
        return float("nan")
    hit = (predicted[:, :k] == labels[:, None]).any(axis=1)
    return float(1.0 - hit.mean())


def expected_top_k_error(probabilities: np.ndarray, predicted: np.ndarray) -> float:
    """Expected top-k error of sets ``predicted`` when labels follow ``probabilities``.

    With ``predicted`` the k most probable ids per row this is the Bayes-optimal error.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    covered = np.take_along_axis(probabilities, np.asarray(predicted), axis=1).sum(axis=1)
    return float(1.0 - covered.mean())
