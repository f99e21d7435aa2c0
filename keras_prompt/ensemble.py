"""Prompt ensembling (Lester et al. 2021, Section 6.3 / Table 3).

K prompts trained for the same task on one frozen model form an ensemble:
each example is classified under every prompt and the majority vote is the
answer. Because the backbone is shared, all K prompts run through the model
as *one* batch of per-example prompts (`B x K` rows), not K separate passes
over the data, which is the paper's point about ensembling cheaply.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import tensorflow as tf

from keras_prompt.progress import ProgressBar

if TYPE_CHECKING:
    from keras_prompt.models.prompt_tuned_t5 import PromptTunedT5


@dataclass(frozen=True)
class EnsemblePrediction:
    """What `ensemble_predict` returns.

    Attributes:
        labels: `(N,)` int, the ensemble's answer (majority vote).
        prompt_labels: `(N, K)` int, each prompt's own rank-classification
            answer.
        votes: `(N, C)` int, how many prompts voted for each label.
        scores: `(N, K, C)` float32 log-likelihoods of each verbalizer under
            each prompt.
    """

    labels: np.ndarray
    prompt_labels: np.ndarray
    votes: np.ndarray
    scores: np.ndarray


def majority_vote(prompt_labels, scores=None, num_labels: int | None = None):
    """Majority vote over prompts; returns `(labels (N,), votes (N, C))`.

    Args:
        prompt_labels: `(N, K)` int labels, one per example and prompt.
        scores: optional `(N, K, C)` log-likelihoods. A tie in the vote goes
            to the tied label with the highest mean log-likelihood over the
            K prompts (as the TF Serving `ensemble` signature does); without
            scores, to the smallest tied label index.
        num_labels: C; defaults to `scores.shape[-1]`, else the largest label
            + 1.

    Raises:
        ValueError: malformed shapes or labels outside `[0, num_labels)`.
    """
    prompt_labels = np.asarray(prompt_labels)
    if prompt_labels.ndim != 2 or prompt_labels.shape[1] < 1:
        raise ValueError(
            "`prompt_labels` must have shape (num_examples, num_prompts >= 1); "
            f"got {prompt_labels.shape}."
        )
    if scores is not None:
        scores = np.asarray(scores, dtype="float64")
        if scores.ndim != 3 or scores.shape[:2] != prompt_labels.shape:
            raise ValueError(
                "`scores` must have shape (num_examples, num_prompts, num_labels) "
                f"matching `prompt_labels` {prompt_labels.shape}; got {scores.shape}."
            )
        num_labels = num_labels or scores.shape[-1]
    if num_labels is None:
        num_labels = int(prompt_labels.max()) + 1
    if prompt_labels.min() < 0 or prompt_labels.max() >= num_labels:
        raise ValueError(
            f"`prompt_labels` must be in [0, {num_labels}); got values from "
            f"{prompt_labels.min()} to {prompt_labels.max()}."
        )
    num_examples, num_prompts = prompt_labels.shape
    if scores is None:
        scores = np.zeros((num_examples, num_prompts, num_labels))
    labels, votes, _ = vote(
        tf.constant(scores.reshape(num_examples * num_prompts, -1), tf.float64),
        tf.constant(prompt_labels.reshape(-1), tf.int32),
        tf.constant(np.repeat(np.arange(num_examples), num_prompts), tf.int32),
        num_examples,
        num_labels,
    )
    return labels.numpy().astype("int64"), votes.numpy().astype("int64")


def vote(scores, labels, row, batch, num_labels: int):
    """The majority vote as TF ops: `(label, votes, num_prompts)` per example.

    `majority_vote` and the serving export's `ensemble` signature both use
    it. `scores` `[M, C]` and `labels` `[M]` are the rank-classification
    results of the M (example, prompt) rows, `row` `[M]` their example index. The
    label is the majority vote (paper section 6); a tie goes to the tied
    label with the highest mean log-likelihood over the ensemble, which keeps
    the result deterministic and uses the evidence the vote throws away.
    """
    votes = tf.math.unsorted_segment_sum(
        tf.one_hot(labels, num_labels, dtype=tf.int32), row, batch
    )
    num_prompts = tf.math.unsorted_segment_sum(tf.ones_like(row), row, batch)
    finite = tf.where(tf.math.is_finite(scores), scores, 0.0)
    mean = tf.math.unsorted_segment_sum(finite, row, batch) / tf.cast(
        tf.maximum(num_prompts, 1)[:, None], scores.dtype
    )
    top = tf.reduce_max(votes, axis=-1, keepdims=True)
    label = tf.argmax(
        tf.where(votes == top, mean, -np.inf), axis=-1, output_type=tf.int32
    )
    return label, votes, num_prompts


def _as_prompt_stack(prompts, prompt_shape: tuple[int, int]) -> np.ndarray:
    from keras_prompt.prompts import check_prompt_array, read_prompt_array

    if isinstance(prompts, np.ndarray) and prompts.ndim == 3:
        members = list(prompts)
    else:
        members = list(prompts)
    if not members:
        raise ValueError("`prompts` is empty; give at least one prompt.")
    arrays = []
    for i, member in enumerate(members):
        if isinstance(member, (str, os.PathLike)):
            member = read_prompt_array(member)
        array = np.asarray(member, dtype="float32")
        if array.shape != tuple(prompt_shape):
            raise ValueError(
                f"`prompts[{i}]` must have the model's prompt shape "
                f"{tuple(prompt_shape)} (prompt_length, hidden_dim); got "
                f"{array.shape}."
            )
        arrays.append(check_prompt_array(array, prompt_shape))
    return np.stack(arrays).astype("float32")


def ensemble_predict(
    model: PromptTunedT5,
    prompts: Sequence[Any] | np.ndarray,
    texts: Sequence[str],
    verbalizers: Sequence[str],
    *,
    batch_size: int = 16,
    verbose: int | str = 0,
) -> EnsemblePrediction:
    """Classifies `texts` with an ensemble of prompts by majority vote.

    For each chunk of `batch_size` texts, every (text, prompt) pair becomes
    one row of a single `batch_size x K` batch through the frozen model, with
    per-example prompts (`PromptTunedT5.score(prompts=...)`); each row is
    rank-classified over `verbalizers`, and the K answers per text are
    majority-voted (`majority_vote`; ties go to the higher mean
    log-likelihood).

    Args:
        model: a `PromptTunedT5` whose `prompt_length` and width match the
            prompts.
        prompts: K prompts: a `(K, prompt_length, hidden_dim)` array, or a
            list of arrays or prompt-file paths (`.npy`).
        texts: N task inputs (already in the task's text-to-text form).
        verbalizers: C label strings, in label order.
        batch_size: texts per forward pass (the pass holds `batch_size * K`
            rows).
        verbose: 0 (silent), 1, 2 or `"auto"`: a Keras progress bar over the
            texts on stderr (`keras_prompt.progress`).

    Returns:
        An `EnsemblePrediction` (ensemble labels, each prompt's labels, vote
        counts, scores).
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ValueError("`texts` is empty; give at least one string.")
    verbalizers = list(verbalizers)
    if len(verbalizers) < 2:
        raise ValueError(
            f"`verbalizers` must hold at least 2 label strings; got {verbalizers!r}."
        )
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1; got {batch_size}.")
    stack = _as_prompt_stack(prompts, model.prompt_shape)
    num_prompts = stack.shape[0]
    chunks = []
    bar = ProgressBar(len(texts), verbose, unit_name="example")
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        rows = [text for text in chunk for _ in range(num_prompts)]
        row_prompts = np.tile(stack, (len(chunk), 1, 1))
        scores = model.score(
            rows, verbalizers, prompts=row_prompts, batch_size=len(rows)
        )
        chunks.append(scores.reshape(len(chunk), num_prompts, len(verbalizers)))
        bar.add(len(chunk))
    scores = np.concatenate(chunks, axis=0).astype("float32")
    prompt_labels = np.argmax(scores, axis=-1)
    labels, votes = majority_vote(prompt_labels, scores, len(verbalizers))
    return EnsemblePrediction(labels, prompt_labels, votes, scores)


def ensemble_report(
    prediction: EnsemblePrediction,
    gold_labels: Sequence[int],
    task=None,
) -> dict[str, Any]:
    """The paper's Table 3 numbers: per-prompt, average, best and ensemble.

    Args:
        prediction: from `ensemble_predict`.
        gold_labels: `(N,)` gold label indices.
        task: optional `keras_prompt.data.Task` (or name) whose metric to use
            (adds F1 for MRPC/QQP); accuracy only when omitted.

    Returns:
        `{"per_prompt": [metrics...], "average": {...}, "best": {...},
        "ensemble": {...}}`, each metrics dict holding `accuracy` (and `f1`).
        "best" is the prompt with the highest accuracy.
    """
    from keras_prompt.data import compute_metrics
    from keras_prompt.data.evaluation import accuracy

    gold = np.asarray(gold_labels)
    if gold.shape != prediction.labels.shape:
        raise ValueError(
            f"`gold_labels` must have one label per example "
            f"({prediction.labels.shape[0]}); got shape {gold.shape}."
        )

    def metrics(labels):
        if task is None:
            return {"accuracy": accuracy(labels, gold)}
        return dict(compute_metrics(task, labels, gold))

    per_prompt = [metrics(prediction.prompt_labels[:, k])
                  for k in range(prediction.prompt_labels.shape[1])]
    average = {
        key: float(np.mean([m[key] for m in per_prompt])) for key in per_prompt[0]
    }
    best = max(per_prompt, key=lambda m: m["accuracy"])
    return {
        "per_prompt": per_prompt,
        "average": average,
        "best": dict(best),
        "ensemble": metrics(prediction.labels),
    }
