"""One training run from a `TrainConfig`: train -> evaluate -> save prompt and metrics.

`keras-prompt train`, the TFX trainer (`keras_prompt.tfx.run_fn`) and the
examples all call `run_training`, so a run means the same everywhere: the
model is built from the config (under the distribution strategy's scope),
trained with `keras_prompt.training.train_prompt` (resuming from a backup,
distributing the data), evaluated by rank classification, and, on the chief,
the prompt (or, for model tuning, the backbone as a preset) and the metrics
file are written to `config.out`.

Example:

```python
from keras_prompt.run import run_training
from keras_prompt.run_config import TrainConfig
run = run_training(TrainConfig(task="sst2", model="presets/t5", out="runs/sst2",
                               data_dir="../shared/assets", steps=200))
run.metrics["eval"]["accuracy"]
```
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_prompt import distribute
from keras_prompt.callbacks import PromptBackup, PromptCheckpoint
from keras_prompt.data import Example, Task, get_task, load_examples, split_source
from keras_prompt.run_config import TrainConfig
from keras_prompt.steps import optimizer_step


@dataclasses.dataclass
class TrainingRun:
    """What `run_training` returns.

    Attributes:
        model: the trained `PromptTunedT5`.
        history: `fit`'s history.
        metrics: the metrics file's content (settings, timings, strategy,
            backbone health, `eval`); also written to `out/metrics_file`.
        prompt_path: the prompt file written, if any.
        train_seconds: seconds spent in `fit`.
    """

    model: Any
    history: keras.callbacks.History
    metrics: dict[str, Any]
    prompt_path: Path | None
    train_seconds: float


def run_training(
    config: TrainConfig,
    *,
    strategy: tf.distribute.Strategy | None = None,
    train_examples: Sequence[Example] | None = None,
    eval_examples: Sequence[Example] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    load_from: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> TrainingRun:
    """Trains, evaluates and saves one run; see the module docstring.

    Args:
        config: the run's settings.
        strategy: a `tf.distribute` strategy made beforehand (multi-worker
            start-up must precede any TensorFlow op); default none.
        train_examples, eval_examples: the examples; default read from
            `config.data_dir` / `config.tfds_data_dir` (the `train` split and
            `config.eval_split`, cut at `config.eval_limit`).
        callbacks: more `fit` callbacks (after the backup and checkpoint).
        load_from: read the backbone from this local copy of `config.model`
            (prompt files still record `config.model`).
        warn: called with each backbone-health warning; default
            `warnings.warn`.
    """
    config = config.resolved()
    task = get_task(config.task)
    strategy = strategy or tf.distribute.get_strategy()
    info = distribute.describe(strategy)
    _check_distribution(config, info)
    if config.dtype:
        keras.config.set_dtype_policy(config.dtype)
    # Read (and validate) all data before any training time is spent.
    if train_examples is None:
        train_examples = _load_split(config, task, "train")
    if eval_examples is None:
        eval_examples = _load_split(config, task, config.eval_split)
    if config.eval_limit:
        eval_examples = eval_examples[: config.eval_limit]
    with strategy.scope():
        model = _build_model(config, task, load_from)
    health = _check_health(config, model, train_examples, warn)
    out = Path(config.out) if config.out else None
    if out is not None and info["chief"]:
        out.mkdir(parents=True, exist_ok=True)
    history, train_seconds, resumed = _train(
        config, task, model, train_examples, callbacks
    )
    metrics = _metrics(config, task, model, history, train_seconds, info, health)
    metrics["resumed_from_step"] = resumed
    prompt_path = None
    if info["chief"]:
        # Workers train in lockstep with the chief and hold the same prompt;
        # only the chief writes the prompt and metrics (and evaluates).
        prompt_path = _save(config, task, model, out, metrics)
        metrics["eval"] = _evaluate(config, task, model, eval_examples)
        if out is not None and config.metrics_file:
            text = json.dumps(metrics, indent=2, default=str) + "\n"
            (out / config.metrics_file).write_text(text)
    return TrainingRun(model, history, metrics, prompt_path, train_seconds)


def _check_distribution(config: TrainConfig, info: dict[str, Any]) -> None:
    if config.strategy == "tpu" and config.batch_size % info["num_replicas"]:
        raise ValueError(
            f"--batch-size {config.batch_size} must be a multiple of the "
            f"{info['num_replicas']} TPU cores, which need equal static batches."
        )
    if config.checkpoint_every is not None and config.checkpoint_every < 1:
        raise ValueError(
            f"--checkpoint-every must be >= 1; got {config.checkpoint_every}."
        )


def _load_split(config: TrainConfig, task: Task, split: str) -> list[Example]:
    return load_examples(
        task, split, data_dir=config.data_dir, tfds_data_dir=config.tfds_data_dir
    )


def _build_model(config: TrainConfig, task: Task, load_from: str | None):
    from keras_prompt import PromptTunedT5
    from keras_prompt.initializers import by_name
    from keras_prompt.optimizers import PromptAdafactor

    model = PromptTunedT5.from_preset(
        load_from or config.model,
        prompt_length=config.prompt_length,
        prompt_initializer=by_name(config.init, task.verbalizers, config.seed),
        tune=config.tune,
        dropout=config.dropout,
        encoder_sequence_length=config.max_input_length,
    )
    if load_from:
        model.preset = config.model  # prompt files name the source, not a copy
    model.compile(
        optimizer=PromptAdafactor(learning_rate=config.learning_rate),
        jit_compile=config.jit_compile,
    )
    return model


def _check_health(config, model, examples, warn) -> dict[str, Any] | None:
    """The backbone's health on the first training inputs; warns when bad."""
    if not config.health_texts:
        return None
    from keras_prompt.health import health_report

    texts = [e.inputs for e in examples[: config.health_texts]]
    report = health_report(model.backbone, model.preprocessor.tokenizer, texts)
    for message in report["warnings"]:
        if warn is None:
            import warnings

            warnings.warn(message, stacklevel=3)
        else:
            warn(message)
    return report


def _train(config: TrainConfig, task: Task, model, examples, extra_callbacks):
    from keras_prompt.training import train_prompt

    callbacks: list[keras.callbacks.Callback] = []
    if config.backup_dir:
        callbacks.append(
            PromptBackup(
                config.backup_dir,
                save_freq=config.save_every(),
                run_config={
                    "task": task.name,
                    "batch_size": config.batch_size,
                    "seed": config.seed,
                    "max_input_length": config.max_input_length,
                    "fixed_shape": config.fixed_shape,
                },
            )
        )
    if config.checkpoint_every and config.out:
        callbacks.append(
            PromptCheckpoint(
                Path(config.out) / "checkpoints",
                monitor="loss",
                metadata={"task": task.name, "verbalizers": list(task.verbalizers)},
            )
        )
    start = time.perf_counter()
    history = train_prompt(
        model,
        task,
        examples,
        steps=config.steps,
        batch_size=config.batch_size,
        max_input_length=config.max_input_length,
        seed=config.seed,
        fixed_shape=config.fixed_shape,
        callbacks=[*callbacks, *extra_callbacks],
        steps_per_epoch=config.save_every(),
        verbose=config.verbose,
    )
    seconds = time.perf_counter() - start
    restored = callbacks[0].restored_meta if config.backup_dir else None
    return history, seconds, int(restored["step"]) if restored else None


def _metrics(config, task, model, history, train_seconds, info, health):
    losses = history.history.get("loss") or [None]
    return {
        "task": task.name,
        "model": config.model,
        "prompt": None,
        "steps": config.steps,
        "trained_steps": optimizer_step(model),
        "resumed_from_step": None,
        "batch_size": config.batch_size,
        "prompt_length": config.prompt_length,
        "tune": config.tune,
        "trainable_parameters": int(
            sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        ),
        "learning_rate": config.learning_rate,
        "init": config.init if config.prompt_length else None,
        "seed": config.seed,
        "dtype": config.dtype or "float32",
        "dropout": float(model.backbone.get_config()["dropout"]),
        "jit_compile": config.jit_compile,
        "fixed_shape": config.fixed_shape,
        **info,
        "prompt_sha256": (
            hashlib.sha256(model.get_prompt().tobytes()).hexdigest()
            if config.prompt_length
            else None
        ),
        "train_seconds": round(train_seconds, 1),
        "final_loss": None if losses[-1] is None else float(losses[-1]),
        "eval_split": config.eval_split,
        "train_source": _source(config, task, "train"),
        "eval_source": _source(config, task, config.eval_split),
        "backbone_health": health,
        "eval": None,
    }


def _source(config: TrainConfig, task: Task, split: str) -> dict[str, Any] | None:
    """Which file (and rows) a split was read from (`None`: examples given)."""
    if config.data_dir is None and config.tfds_data_dir is None:
        return None
    return split_source(task, split, config.data_dir, config.tfds_data_dir).to_json()


def _save(config, task, model, out: Path | None, metrics) -> Path | None:
    """Writes the prompt (or, for model tuning, the backbone as a preset)."""
    if out is None:
        return None
    name = config.prompt_name or task.name
    if config.tune == "model":
        # The backbone changed: write it as a preset (plus the prompt, if
        # any, recorded as belonging to that preset).
        preset = out / "preset"
        model.backbone.save_to_preset(preset)
        model.preprocessor.tokenizer.save_to_preset(preset)
        metrics["preset"] = str(preset)
        if not config.prompt_length:
            return None
        from keras_prompt.prompts import save_prompt_file

        metadata = model.prompt_metadata(
            task=task.name,
            verbalizers=list(task.verbalizers),
            init=config.init,
            seed=config.seed,
            tune="model",
            trained_backbone=str(preset),
        )
        path = save_prompt_file(out / name, model.get_prompt(), metadata)
    else:
        path = model.save_prompt(
            out / name,
            task=task.name,
            verbalizers=task.verbalizers,
            init=config.init,
            seed=config.seed,
        )
    metrics["prompt"] = str(path)
    return path


def _evaluate(config: TrainConfig, task: Task, model, examples) -> dict[str, Any]:
    from keras_prompt.training import evaluate_prompt

    return evaluate_prompt(
        model, task, examples, batch_size=config.eval_batch_size, verbose=config.verbose
    )
