"""The settings of one training run, and the defaults everything else takes from them.

`TrainConfig` is what `keras-prompt train` parses (its argparse defaults are
the fields' defaults), what the TFX trainer builds from its
`custom_config`, and what the examples fill in; `keras_prompt.run.run_training`
runs it: train -> evaluate -> save the prompt and `metrics.json`.

This module imports nothing heavy, so the command line can build its parser
and check its arguments before TensorFlow loads.

Example:

```python
from keras_prompt.run_config import TrainConfig
config = TrainConfig(task="sst2", model="presets/t5", out="runs/sst2", steps=200)
config.resolved().learning_rate  # 0.3, the paper's rate for prompts
```
"""

from __future__ import annotations

import dataclasses
from typing import Any

#: What `PromptTunedT5(tune=...)` trains: only the soft prompt (the paper's
#: prompt tuning), or every backbone weight too (model tuning, the paper's
#: baseline).
TUNE_MODES: tuple[str, ...] = ("prompt", "model")

#: `compile(optimizer="auto")` learning rates per tune mode: the paper's 0.3
#: for prompts; for model tuning T5's fine-tuning rate 1e-3 (constant
#: Adafactor, Raffel et al. 2020), the rate the embedded checkpoint was
#: pretrained with.
DEFAULT_LEARNING_RATES: dict[str, float] = {"prompt": 0.3, "model": 1e-3}

#: Prompt lengths per tune mode: the paper's best (100) for prompt tuning;
#: none for model tuning, the paper's baseline.
DEFAULT_PROMPT_LENGTHS: dict[str, int] = {"prompt": 100, "model": 0}

#: The paper's three prompt initialisations, as `keras_prompt.initializers.
#: by_name` (and `keras-prompt train --init`) accept them.
PAPER_INITIALIZERS: tuple[str, ...] = (
    "class_labels",
    "sampled_vocab",
    "random_uniform",
)


@dataclasses.dataclass
class TrainConfig:
    """One prompt-tuning (or model-tuning) run on a task.

    Attributes:
        task: a task name of `keras_prompt.data.TASKS`.
        model: the frozen backbone: keras-hub preset name or directory, Hugging
            Face T5 checkpoint directory, or `hf://owner/name`.
        out: output folder for the prompt file and `metrics_file`; `None`
            writes nothing.
        data_dir, tfds_data_dir: where the task's files are (official files,
            or TFDS), when the run reads the examples itself.
        tune: `"prompt"` or `"model"` (see `TUNE_MODES`).
        prompt_length: prompt vectors; `None`: `DEFAULT_PROMPT_LENGTHS[tune]`.
        init: one of `PAPER_INITIALIZERS` or a `.npy` prompt file.
        steps, batch_size: optimizer steps and global batch size.
        learning_rate: Adafactor's constant rate; `None`:
            `DEFAULT_LEARNING_RATES[tune]`.
        max_input_length: encoder tokens, `</s>` included.
        seed: prompt initialisation and data order.
        dtype: a dtype policy such as `"mixed_bfloat16"` (the prompt and
            optimizer stay float32); `None` keeps the global one.
        dropout: the frozen backbone's dropout while training; `None` keeps
            the checkpoint's.
        fixed_shape: pad every batch to `max_input_length` (XLA, TPUs).
        jit_compile: XLA-compile the train step (`"auto"`: Keras' choice,
            XLA on accelerators only).
        eval_split, eval_limit, eval_batch_size: the held-out evaluation.
        backup_dir: prompt-only backups; a rerun resumes from them.
        checkpoint_every: steps between backups and `out/checkpoints/
            {last,best}` prompts (default with `backup_dir`: 100).
        strategy, connect_timeout, tpu: the `tf.distribute` strategy
            (`keras_prompt.distribute.get_strategy`).
        verbose: Keras `fit` verbosity (`"auto"`, 0, 1, 2), also the
            evaluation's progress bar.
        health_texts: measure the backbone's health on this many training
            inputs before training (0: skip; `keras_prompt.health`).
        prompt_name: the prompt file's name in `out`; default the task's.
        metrics_file: the metrics file's name in `out`; `None` writes none.
    """

    task: str
    model: str
    out: str | None = None
    data_dir: str | None = None
    tfds_data_dir: str | None = None
    tune: str = "prompt"
    prompt_length: int | None = None
    init: str = "class_labels"
    steps: int = 1000
    batch_size: int = 32
    learning_rate: float | None = None
    max_input_length: int = 256
    seed: int = 0
    dtype: str | None = None
    dropout: float | None = None
    fixed_shape: bool = False
    jit_compile: bool | str = False
    eval_split: str = "validation"
    eval_limit: int | None = None
    eval_batch_size: int = 64
    backup_dir: str | None = None
    checkpoint_every: int | None = None
    strategy: str = "default"
    connect_timeout: float = 300.0
    tpu: str | None = None
    verbose: int | str = "auto"
    health_texts: int = 64
    prompt_name: str | None = None
    metrics_file: str | None = "metrics.json"

    @classmethod
    def from_namespace(cls, namespace: Any) -> TrainConfig:
        """The fields an `argparse.Namespace` (or any object) has."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{n: getattr(namespace, n) for n in names if hasattr(namespace, n)})

    def resolved(self) -> TrainConfig:
        """A copy with the tune-dependent defaults filled in."""
        return dataclasses.replace(
            self,
            prompt_length=(
                DEFAULT_PROMPT_LENGTHS[self.tune]
                if self.prompt_length is None
                else self.prompt_length
            ),
            learning_rate=(
                DEFAULT_LEARNING_RATES[self.tune]
                if self.learning_rate is None
                else self.learning_rate
            ),
            # XLA on TPUs needs static shapes.
            fixed_shape=self.fixed_shape or self.strategy == "tpu",
        )

    def save_every(self) -> int | None:
        """Steps between backups: `checkpoint_every`, or 100 with a backup dir."""
        if self.checkpoint_every:
            return self.checkpoint_every
        return min(100, self.steps) if self.backup_dir else None
