"""The TFX Trainer's `custom_config`, validated before any time is spent.

An unknown or missing option, an unknown task or a bad value raises
`TrainerInputError` with a message saying what to fix; TFX marks the Trainer
failed with it and nothing is pushed. `TrainerOptions.train_config` is the
`keras_prompt.run_config.TrainConfig` the trainer runs, and the options'
defaults are that config's.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

from keras_prompt.run_config import (
    DEFAULT_LEARNING_RATES,
    DEFAULT_PROMPT_LENGTHS,
    PAPER_INITIALIZERS,
    TrainConfig,
)

#: The `--init` choices of `keras-prompt train` (or a `.npy` prompt file).
INITIALIZERS = PAPER_INITIALIZERS


class TrainerInputError(ValueError):
    """Bad Trainer input (options or data); the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class TrainerOptions:
    """The Trainer's `custom_config`, validated.

    Attributes:
        checkpoint: keras-hub preset directory or name, or Hugging Face T5
            checkpoint directory (as `keras-prompt train --model`). On a
            remote orchestrator it must be readable from the Trainer's worker.
        task: a task of `keras_prompt.data.TASKS` (`sst2`, `rte`, ...).
        steps: optimizer steps; default the Trainer's `train_args.num_steps`.
        prompt_length: prompt vectors (the paper's best is 100).
        init: `class_labels`, `sampled_vocab`, `random_uniform` or a `.npy`.
        batch_size, learning_rate: training batch and Adafactor rate (0.3).
        max_input_length: encoder tokens, `</s>` included (training, export).
        max_decode_length: most tokens the export decodes, `</s>` included.
        eval_batch_size: rank-classification batch.
        eval_limit: evaluate on the first N eval examples only.
        seed: prompt-initializer and data-shuffling seed.
    """

    checkpoint: str
    task: str
    steps: int | None = None
    prompt_length: int = DEFAULT_PROMPT_LENGTHS["prompt"]
    init: str = TrainConfig.init
    batch_size: int = TrainConfig.batch_size
    learning_rate: float = DEFAULT_LEARNING_RATES["prompt"]
    max_input_length: int = TrainConfig.max_input_length
    max_decode_length: int = 16
    eval_batch_size: int = TrainConfig.eval_batch_size
    eval_limit: int | None = None
    seed: int = TrainConfig.seed

    @classmethod
    def from_custom_config(
        cls, config: Mapping[str, Any] | None, train_steps: int | None = None
    ) -> TrainerOptions:
        """Validates a `custom_config`; `train_steps` fills a missing `steps`."""
        from keras_prompt.data import TASKS

        if config is None:
            config = {}
        if isinstance(config, str):  # A RuntimeParameter arrives as JSON.
            config = json.loads(config)
        if not isinstance(config, Mapping):
            raise TrainerInputError(
                f"custom_config must be a dict; got {type(config).__name__}."
            )
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - set(fields))
        if unknown:
            raise TrainerInputError(
                f"custom_config has unknown key(s) {unknown}; known keys: "
                f"{sorted(fields)}."
            )
        missing = [k for k in ("checkpoint", "task") if not config.get(k)]
        if missing:
            raise TrainerInputError(
                f"custom_config lacks {missing}: the Trainer needs `checkpoint` "
                "(a keras-hub preset or Hugging Face T5 checkpoint directory) and "
                f"`task` (one of {', '.join(sorted(TASKS))})."
            )
        values = dict(config)
        values["checkpoint"] = os.fspath(values["checkpoint"])
        task = str(values["task"]).strip().lower()
        if task not in TASKS:
            raise TrainerInputError(
                f"custom_config names unknown task {values['task']!r}; known "
                f"tasks: {', '.join(sorted(TASKS))}."
            )
        values["task"] = task
        if values.get("steps") is None:
            values["steps"] = train_steps or None
        for name in (
            "steps",
            "prompt_length",
            "batch_size",
            "max_input_length",
            "max_decode_length",
            "eval_batch_size",
            "eval_limit",
        ):
            value = values.get(name, fields[name].default)
            if value is None and name in ("eval_limit",):
                continue
            if value is None:
                raise TrainerInputError(
                    "No training length: set custom_config['steps'] or the "
                    "Trainer's train_args=TrainArgs(num_steps=...)."
                )
            minimum = 2 if name in ("max_input_length", "max_decode_length") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise TrainerInputError(
                    f"custom_config[{name!r}] must be an integer >= {minimum}; "
                    f"got {value!r}."
                )
        rate = values.get("learning_rate", fields["learning_rate"].default)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
            raise TrainerInputError(
                f"custom_config['learning_rate'] must be a positive number; got "
                f"{rate!r}."
            )
        init = values.get("init", fields["init"].default)
        if not isinstance(init, str) or (
            init not in INITIALIZERS and not init.endswith(".npy")
        ):
            raise TrainerInputError(
                f"custom_config['init'] must be one of {list(INITIALIZERS)} or a "
                f".npy prompt file; got {init!r}."
            )
        seed = values.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TrainerInputError(
                f"custom_config['seed'] must be an int; got {seed!r}."
            )
        return cls(**values)

    def to_custom_config(self) -> dict[str, Any]:
        """JSON-able dict, the inverse of `from_custom_config`."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def train_config(self, out: str | os.PathLike) -> TrainConfig:
        """The run these options describe, writing its prompt to `out`."""
        return TrainConfig(
            task=self.task,
            model=self.checkpoint,
            out=os.fspath(out),
            prompt_length=self.prompt_length,
            init=self.init,
            steps=self.steps,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            max_input_length=self.max_input_length,
            eval_batch_size=self.eval_batch_size,
            seed=self.seed,
            jit_compile="auto",
            verbose=2,
            health_texts=0,
            metrics_file=None,
        )
