"""Metrics for text-to-text classification, as GLUE / SuperGLUE report them.

Implemented with NumPy rather than scikit-learn so that the package has no
extra dependency and the edge cases (no predicted positives, unparseable
generations) are explicit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keras_prompt.data.tasks import Task, get_task

#: Label index used for a generation that matches no verbalizer. It is never
#: equal to a gold label, so it counts as wrong for accuracy and, for F1, as a
#: negative prediction (a false negative when the gold label is positive).
INVALID_LABEL: int = -1


def label_from_text(task: Task | str, text: str | bytes) -> int:
    """Map generated text back to a label index (INVALID_LABEL if none matches).

    Matching is exact after stripping whitespace: T5 scores a generation that
    is not a class name as wrong, and so do we.
    """
    task = get_task(task)
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    text = text.strip()
    for index, verbalizer in enumerate(task.verbalizers):
        if text == verbalizer:
            return index
    return INVALID_LABEL


def _as_labels(name: str, labels: Sequence[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}.")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer labels, got {array.dtype}.")
    return array.astype(np.int64)


def accuracy(
    predicted_labels: Sequence[int] | np.ndarray,
    gold_labels: Sequence[int] | np.ndarray,
) -> float:
    """Fraction of predictions equal to the gold label."""
    predicted = _as_labels("predicted_labels", predicted_labels)
    gold = _as_labels("gold_labels", gold_labels)
    _check_lengths(predicted, gold)
    return float(np.mean(predicted == gold))


def f1_score(
    predicted_labels: Sequence[int] | np.ndarray,
    gold_labels: Sequence[int] | np.ndarray,
    positive_label: int = 1,
) -> float:
    """F1 of the positive class: ``2 TP / (2 TP + FP + FN)``; 0.0 if undefined.

    The undefined case (no gold and no predicted positives) is 0.0, matching
    scikit-learn's ``f1_score`` default that GLUE's scorer uses.
    """
    predicted = _as_labels("predicted_labels", predicted_labels)
    gold = _as_labels("gold_labels", gold_labels)
    _check_lengths(predicted, gold)
    predicted_positive = predicted == positive_label
    gold_positive = gold == positive_label
    tp = int(np.sum(predicted_positive & gold_positive))
    fp = int(np.sum(predicted_positive & ~gold_positive))
    fn = int(np.sum(~predicted_positive & gold_positive))
    denominator = 2 * tp + fp + fn
    return 0.0 if denominator == 0 else 2 * tp / denominator


def roc_auc(
    scores: Sequence[float] | np.ndarray,
    gold_labels: Sequence[int] | np.ndarray,
    positive_label: int = 1,
) -> float:
    """Area under the ROC curve of ``scores`` for the ``positive_label`` class.

    The Mann-Whitney statistic with ties counted as half: the probability that
    a random positive example scores higher than a random negative one. 0.5 is
    no ranking signal. Used with the rank-classification margin
    ``log p(verbalizer 1) - log p(verbalizer 0)``, it shows whether a prompt
    separates the classes even when every argmax is the same class.

    Raises:
        ValueError: lengths differ, or one class is absent (AUC undefined).
    """
    values = np.asarray(scores, dtype="float64")
    gold = _as_labels("gold_labels", gold_labels)
    if values.shape != gold.shape:
        raise ValueError(
            f"`scores` must be 1-D with one score per gold label; got shape "
            f"{values.shape} for {gold.size} labels."
        )
    positive = gold == positive_label
    num_pos, num_neg = int(positive.sum()), int((~positive).sum())
    if num_pos == 0 or num_neg == 0:
        raise ValueError(
            "roc_auc needs both classes among `gold_labels`; got "
            f"{num_pos} positive and {num_neg} negative examples."
        )
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype="float64")
    sorted_values = values[order]
    # Average ranks over ties (1-based).
    _, first, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    rank_sum = ranks[positive].sum()
    return float((rank_sum - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg))


def _check_lengths(predicted: np.ndarray, gold: np.ndarray) -> None:
    if predicted.shape != gold.shape:
        raise ValueError(
            f"{predicted.size} predicted labels but {gold.size} gold labels."
        )
    if predicted.size == 0:
        raise ValueError("Cannot compute metrics on zero examples.")


def compute_metrics(
    task: Task | str,
    predicted_labels: Sequence[int] | np.ndarray,
    gold_labels: Sequence[int] | np.ndarray,
) -> dict[str, float]:
    """The task's metrics as fractions in [0, 1].

    ``{"accuracy": ...}`` for every task, plus ``{"f1": ...}`` (positive class
    = label 1) for ``metric == "f1_accuracy"`` tasks (MRPC, QQP). Predictions
    may contain :data:`INVALID_LABEL` for unparseable generations.
    """
    task = get_task(task)
    gold = _as_labels("gold_labels", gold_labels)
    if gold.size and (gold.min() < 0 or gold.max() >= task.num_classes):
        raise ValueError(
            f"gold_labels must be in 0..{task.num_classes - 1} for task {task.name!r}."
        )
    metrics = {"accuracy": accuracy(predicted_labels, gold)}
    if task.metric == "f1_accuracy":
        metrics["f1"] = f1_score(predicted_labels, gold, positive_label=1)
    return metrics


def rank_classification_metrics(
    task: Task | str,
    scores: Sequence[Sequence[float]] | np.ndarray,
    gold_labels: Sequence[int] | np.ndarray,
) -> dict:
    """Metrics of rank classification from per-candidate log-likelihoods.

    ``scores`` is ``(examples, num_classes)``: the log-likelihood of each
    label's verbalizer (the paper's evaluation); the predicted label is the
    argmax. Returns :func:`compute_metrics`' metrics plus, for binary tasks,
    ``auc`` (ROC AUC of the margin ``scores[:, 1] - scores[:, 0]``; ``None``
    when one class is absent) and ``predicted_counts``, how often each label
    was predicted, so a constant answer is visible at a glance.

    Example:

    >>> rank_classification_metrics("sst2", [[-1.0, -2.0], [-3.0, -0.5]], [0, 1])
    {'accuracy': 1.0, 'auc': 1.0, 'predicted_counts': [1, 1]}
    """
    task = get_task(task)
    scores = np.asarray(scores, dtype="float64")
    if scores.ndim != 2 or scores.shape[1] != task.num_classes:
        raise ValueError(
            f"`scores` must have shape (examples, {task.num_classes}) for task "
            f"{task.name!r}; got {scores.shape}."
        )
    predicted = np.argmax(scores, axis=-1)
    metrics: dict = dict(compute_metrics(task, predicted, gold_labels))
    if task.num_classes == 2:
        try:
            metrics["auc"] = roc_auc(scores[:, 1] - scores[:, 0], gold_labels)
        except ValueError:
            metrics["auc"] = None
    metrics["predicted_counts"] = np.bincount(
        predicted, minlength=task.num_classes
    ).tolist()
    return metrics
