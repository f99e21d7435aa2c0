"""Train and evaluate a prompt on a task: the loop behind `keras-prompt train`."""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import keras
import numpy as np

from keras_prompt.data import (
    Example,
    Task,
    compute_metrics,
    get_task,
    make_dataset,
)
from keras_prompt.models.prompt_tuned_t5 import PromptTunedT5


def _target_length(model: PromptTunedT5, task: Task) -> int:
    """Room for the longest verbalizer (+ `</s>` and the start token)."""
    tokenizer = model._require_tokenizer()
    lengths = [
        len(np.asarray(tokenizer.tokenize(v)).reshape(-1)) for v in task.verbalizers
    ]
    return max(lengths) + 2


def train_prompt(
    model: PromptTunedT5,
    task: Task | str,
    examples: Sequence[Example],
    *,
    steps: int,
    batch_size: int = 32,
    max_input_length: int = 256,
    seed: int = 0,
    fixed_shape: bool = False,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    steps_per_epoch: int | None = None,
    initial_epoch: int = 0,
    verbose: int | str = "auto",
) -> keras.callbacks.History:
    """Runs `model.fit` for `steps` optimizer steps on shuffled, repeated data.

    Batches are length-bucketed by default (`fixed_shape=True` pads every
    batch to `max_input_length`, which XLA/TPU compilation wants). Epochs are
    just reporting units of `steps_per_epoch` steps (default: all `steps` in
    one), so callbacks such as checkpoints see regular boundaries.
    """
    task = get_task(task)
    if steps < 1:
        raise ValueError(f"`steps` must be >= 1; got {steps}.")
    if not examples:
        raise ValueError(f"No training examples were given for task {task.name!r}.")
    dataset = make_dataset(
        examples,
        model._require_tokenizer(),
        batch_size=batch_size,
        max_input_length=max_input_length,
        max_target_length=_target_length(model, task),
        shuffle=True,
        seed=seed,
        repeat=True,
        fixed_shape=fixed_shape,
    )
    steps_per_epoch = min(steps_per_epoch or steps, steps)
    epochs = math.ceil(steps / steps_per_epoch)
    return model.fit(
        dataset,
        epochs=epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps_per_epoch,
        callbacks=list(callbacks),
        verbose=verbose,
    )


def evaluate_prompt(
    model: PromptTunedT5,
    task: Task | str,
    examples: Sequence[Example],
    *,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Rank-classification metrics of the model's prompt on `examples`.

    Each example's label is the verbalizer with the highest log-likelihood
    (the paper's evaluation for classification), then the task's metric
    (accuracy, plus F1 for MRPC/QQP) is computed.
    """
    task = get_task(task)
    if not examples:
        raise ValueError(f"No evaluation examples were given for task {task.name!r}.")
    start = time.perf_counter()
    predicted = model.predict_label(
        [e.inputs for e in examples], list(task.verbalizers), batch_size=batch_size
    )
    metrics: dict[str, Any] = dict(
        compute_metrics(task, predicted, [e.label for e in examples])
    )
    metrics["num_examples"] = len(examples)
    metrics["seconds"] = round(time.perf_counter() - start, 2)
    return metrics
