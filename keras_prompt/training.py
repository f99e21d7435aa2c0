"""Train and evaluate a prompt on a task: the loop behind `keras-prompt train`."""

from __future__ import annotations

import functools
import json
import math
import time
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_prompt.data import (
    Example,
    Task,
    get_task,
    make_dataset,
    rank_classification_metrics,
)
from keras_prompt.models.prompt_tuned_t5 import PromptTunedT5
from keras_prompt.steps import StepCounter, optimizer_step


def _target_length(model: PromptTunedT5, task: Task) -> int:
    """Room for the longest verbalizer (+ `</s>` and the start token)."""
    tokenizer = model.require_tokenizer()
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
    one; the last epoch is cut short so exactly `steps` steps run), so
    callbacks such as checkpoints see regular boundaries.

    Distribution: build and compile `model` under a `tf.distribute` strategy's
    scope and this runs data-parallel under it; `batch_size` is the global
    batch, and every step trains on the same examples as on one device (see
    `keras_prompt.distribute.distribute_dataset`).

    Resuming: if `callbacks` holds a `keras_prompt.callbacks.PromptBackup`
    whose directory has a backup, the state is restored first and training
    continues at the backed-up step with the batches not yet seen, so the
    run ends at `steps` steps as if it had never stopped.
    """
    task = get_task(task)
    _check_arguments(model, task, examples, steps, max_input_length)
    done = _restore(model, callbacks)
    steps_per_epoch = min(steps_per_epoch or steps, steps)
    epochs = math.ceil(steps / steps_per_epoch)
    if done >= steps:
        history = keras.callbacks.History()
        history.history, history.epoch = {}, []
        return history
    loop = _FitLoop(
        model,
        functools.partial(
            make_dataset,
            examples,
            model.require_tokenizer(),
            batch_size=batch_size,
            max_input_length=max_input_length,
            max_target_length=_target_length(model, task),
            shuffle=True,
            seed=seed,
            repeat=True,
            fixed_shape=fixed_shape,
        ),
        batch_size,
        [*callbacks, _StopAtStep(optimizer_step(model) - done + steps)],
        verbose,
    )
    epoch, offset = divmod(done, steps_per_epoch)
    epoch += initial_epoch
    if offset:
        # Finish the interrupted epoch first, then run whole epochs.
        remaining = min(steps_per_epoch - offset, steps - done)
        loop.fit(done, epoch, epoch + 1, remaining)
        done += remaining
        epoch += 1
    if done < steps:
        loop.fit(done, epoch, initial_epoch + epochs, steps_per_epoch)
    return loop.history


def _check_arguments(model, task: Task, examples, steps: int, max_input_length: int):
    if steps < 1:
        raise ValueError(f"`steps` must be >= 1; got {steps}.")
    if max_input_length < 2:
        raise ValueError(
            "`max_input_length` must be >= 2 (one token of text plus </s>); got "
            f"{max_input_length}."
        )
    if not examples:
        raise ValueError(f"No training examples were given for task {task.name!r}.")
    if getattr(model, "optimizer", None) is None:
        raise ValueError(
            "Compile the model before training (under the strategy's scope "
            "when distributing): `model.compile()`."
        )


def _restore(model, callbacks) -> int:
    """Restores any `PromptBackup`; returns the steps of this run already done."""
    from keras_prompt import distribute
    from keras_prompt.callbacks import PromptBackup

    strategy = model.distribute_strategy
    if not model.optimizer.built:
        # Slots must exist (in the strategy's scope) before a restore, and
        # before `fit` would otherwise create them inside a replica context.
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)
    done = 0
    for callback in callbacks:
        if isinstance(callback, PromptBackup):
            meta = callback.restore(model)
            if meta is not None:
                done = max(0, int(meta["step"]) - callback.run_start_step)
    distribute.check_same_on_all_workers(strategy, done, "the resumed step")
    return done


class _FitLoop:
    """`fit` calls over one data stream, their histories merged."""

    def __init__(self, model, make_data, batch_size, callbacks, verbose):
        self.model = model
        self.make_data = make_data
        self.batch_size = batch_size
        self.callbacks = callbacks
        self.verbose = verbose
        self.element_spec = make_data().element_spec
        self.history = keras.callbacks.History()
        self.history.history, self.history.epoch = {}, []

    def _data(self, skip: int):
        # Same seed, same order: skipping what was trained on resumes the
        # data stream where the interrupted run left it.
        def build():
            dataset = self.make_data()
            return dataset.skip(skip) if skip else dataset

        return build

    def fit(self, skip, first_epoch, last_epoch, epoch_steps):
        from keras_prompt import distribute

        model, strategy = self.model, self.model.distribute_strategy
        data = distribute.distribute_dataset(
            self._data(skip), strategy, self.batch_size
        )
        # keras-hub's `fit` maps its preprocessing over tf.data datasets and
        # cannot take a distributed one; these batches are tokenized already,
        # so Keras' own `fit` takes them directly.
        fit_function = (
            model.fit
            if isinstance(data, tf.data.Dataset)
            else functools.partial(keras.Model.fit, model)
        )
        with (
            distribute.no_batch_peek(model, self.element_spec),
            distribute.multi_worker_metrics_fix(strategy),
        ):
            result = fit_function(
                data,
                epochs=last_epoch,
                initial_epoch=first_epoch,
                steps_per_epoch=epoch_steps,
                callbacks=self.callbacks,
                verbose=self.verbose,
            )
        for key, values in result.history.items():
            self.history.history.setdefault(key, []).extend(values)
        self.history.epoch.extend(result.epoch)
        self.history.params = result.params
        self.history.set_model(model)


class _StopAtStep(StepCounter):
    """Ends `fit` after exactly `last_step` optimizer steps in total."""

    def __init__(self, last_step: int):
        super().__init__()
        self.last_step = last_step

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        if self.step >= self.last_step:
            self.model.stop_training = True


def evaluate_prompt(
    model: PromptTunedT5,
    task: Task | str,
    examples: Sequence[Example],
    *,
    batch_size: int = 64,
    prompts: np.ndarray | None = None,
    verbalizers: Sequence[str] | None = None,
    verbose: int | str = 0,
) -> dict[str, Any]:
    """Rank-classification metrics of the model's prompt on `examples`.

    Each example's label is the verbalizer with the highest log-likelihood
    (the paper's evaluation for classification), then the task's metric
    (accuracy, plus F1 for MRPC/QQP) is computed. For binary tasks the result
    also holds `auc`, the ROC AUC of the margin `log p(verbalizer 1) -
    log p(verbalizer 0)` (0.5 = no ranking signal; `None` when one class is
    absent), and `predicted_counts`, how often each label was predicted, so a
    prompt that always answers the majority class is visible at a glance.

    Args:
        model: the model; its own prompt is used unless `prompts` is given.
        task: the task (metric, verbalizers).
        examples: labelled examples.
        batch_size: examples per forward pass.
        prompts: optional `(len(examples), prompt_length, hidden_dim)`
            per-example prompts, passed to `PromptTunedT5.score`.
        verbalizers: score these label strings instead of `task.verbalizers`
            (same count and order), e.g. the source task's verbalizers when
            evaluating a transferred prompt zero-shot.
        verbose: 0 (silent), 1, 2 or `"auto"`: a Keras progress bar over the
            examples on stderr (`keras_prompt.progress`).
    """
    task = get_task(task)
    if not examples:
        raise ValueError(f"No evaluation examples were given for task {task.name!r}.")
    candidates = list(task.verbalizers if verbalizers is None else verbalizers)
    if len(candidates) != task.num_classes:
        raise ValueError(
            f"`verbalizers` must hold {task.num_classes} strings for task "
            f"{task.name!r} (one per label, in label order); got {candidates!r}."
        )
    start = time.perf_counter()
    scores = model.score(
        [e.inputs for e in examples],
        candidates,
        prompts=prompts,
        batch_size=batch_size,
        verbose=verbose,
    )
    metrics = rank_classification_metrics(task, scores, [e.label for e in examples])
    metrics["num_examples"] = len(examples)
    metrics["seconds"] = round(time.perf_counter() - start, 2)
    return metrics


class HeldOutEvaluation(StepCounter):
    """Rank-classification metrics on held-out examples every `every` steps.

    Records a learning curve (`self.records`: step, seconds of training,
    accuracy and the task's other metrics) and, with `path`, appends each
    record to a JSON-lines file. Evaluation time is not counted in
    `train_seconds`.

    Example:

    ```python
    curve = HeldOutEvaluation("sst2", validation, every=100)
    train_prompt(model, "sst2", train, steps=1000, callbacks=[curve])
    curve.records[-1]["accuracy"]
    ```
    """

    def __init__(
        self,
        task: Task | str,
        examples: Sequence[Example],
        *,
        every: int,
        path: str | None = None,
        batch_size: int = 64,
    ):
        super().__init__()
        if every < 1:
            raise ValueError(f"`every` must be >= 1; got {every}.")
        self.task = get_task(task)
        self.examples = list(examples)
        self.every = every
        self.path = path
        self.batch_size = batch_size
        self.records: list[dict[str, Any]] = []
        self._train_seconds = 0.0
        self._since: float | None = None

    def on_train_batch_begin(self, batch, logs=None):
        if self._since is None:
            self._since = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        step = self.step
        if step % self.every:
            return
        self._train_seconds += time.perf_counter() - self._since
        metrics = evaluate_prompt(
            self.model, self.task, self.examples, batch_size=self.batch_size
        )
        record = {
            "step": step,
            "train_seconds": round(self._train_seconds, 1),
            "loss": None if not logs or "loss" not in logs else float(logs["loss"]),
            **metrics,
        }
        self.records.append(record)
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        self._since = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self._since is not None:
            self._train_seconds += time.perf_counter() - self._since
        self._since = None
