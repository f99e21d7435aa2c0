"""The TFX Trainer `run_fn`: prompt-tune a frozen T5 on ExampleGen's output.

TFX's generic Trainer calls `run_fn(fn_args)` with the example files of the
upstream ExampleGen, the Trainer's `custom_config` and the directories to
write to. This module needs nothing from TFX itself (`fn_args` is read by
attribute only), so it is importable, and testable, without TFX installed.

Input: gzipped TFRecords of `tf.Example`s, one feature per CSV column, as
`CsvExampleGen` writes them from a task CSV. The columns a task needs are its
canonical feature names (`keras_prompt.data.TASKS[task].tfds_features`, e.g.
`sentence,label` for SST-2, `premise,hypothesis,label` for RTE); the column
names of the task's official files (`#1 String`, `Quality`, `text_a`, ...) are
accepted too. Labels may be class indices, verbalizers (`positive`) or the raw
values of the official files (`entailment`, `True`).

Everything is checked before any time is spent on the model: an unknown or
missing option, an unknown task, a missing checkpoint, no input files or a
missing column raise `TrainerInputError` with a message saying what to fix.
TFX marks the Trainer failed with that message and the Pusher never runs, so
nothing is pushed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from keras_prompt.run_config import (
    DEFAULT_LEARNING_RATES,
    DEFAULT_PROMPT_LENGTHS,
    PAPER_INITIALIZERS,
    TrainConfig,
)

#: The `--init` choices of `keras-prompt train` (or a `.npy` prompt file).
INITIALIZERS = PAPER_INITIALIZERS

#: Where the trainer writes its report inside the pushed SavedModel. TF
#: Serving ignores `assets.extra/` except for its warmup file.
REPORT_FILE = "assets.extra/keras_prompt_trainer.json"

#: A module file for `Trainer(module_file=...)`: it only re-exports `run_fn`.
#: It sits alone in its directory because TFX packages every `.py` file next
#: to a module file into the user-code wheel it ships to the workers.
MODULE_FILE = str(
    Path(__file__).resolve().parent / "user_module" / "keras_prompt_trainer.py"
)


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


# ----------------------------------------------------------------------
# Reading ExampleGen's output.
# ----------------------------------------------------------------------
def _expand(patterns: str | Sequence[str]) -> list[str]:
    import tensorflow as tf

    if isinstance(patterns, str):
        patterns = [patterns]
    files: list[str] = []
    for pattern in patterns:
        files.extend(sorted(tf.io.gfile.glob(pattern)))
    return files


def _feature_values(feature) -> list[Any]:
    kind = feature.WhichOneof("kind")
    return list(getattr(feature, kind).value) if kind else []


def _as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _parse_label(task, value: Any) -> int | None:
    """Label index from an index, a verbalizer or an official-file label value."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return value if 0 <= value < task.num_classes else None
    text = _as_text(value).strip()
    if text.lstrip("-").isdigit():
        return _parse_label(task, int(text))
    folded = text.lower()
    for index, name in enumerate(task.verbalizers):
        if name.lower() == folded:
            return index
    for index, raw in enumerate(task.local_label_values):
        if str(raw).lower() == folded:
            return index
    return None


def read_examples(
    file_patterns: str | Sequence[str], task: Any, *, limit: int | None = None
) -> list:
    """`keras_prompt.data.Example`s from ExampleGen TFRecords of a task.

    Args:
        file_patterns: glob pattern(s), as TFX's `fn_args.train_files`.
        task: a `keras_prompt.data.Task` or its name.
        limit: keep the first `limit` examples.

    Raises:
        TrainerInputError: no files match, a column the task needs is absent,
            or an example has an empty field or an unknown label.
    """
    import tensorflow as tf

    from keras_prompt.data import Example, get_task

    task = get_task(task)
    files = _expand(file_patterns)
    if not files:
        raise TrainerInputError(f"No example files match {list(file_patterns)}.")
    compression = "GZIP" if files[0].endswith(".gz") else ""
    records = tf.data.TFRecordDataset(files, compression_type=compression)

    # Canonical feature name -> accepted column names, in preference order.
    aliases = {
        feature: [feature]
        + [
            column
            for column, f in task.local_fields
            if f == feature and column != feature
        ]
        for _, feature in task.input_fields
    }
    label_columns = ["label"] + (
        [task.local_label_field] if task.local_label_field != "label" else []
    )
    columns: dict[str, str] | None = None
    examples = []
    for index, record in enumerate(records.as_numpy_iterator()):
        if limit is not None and index >= limit:
            break
        proto = tf.train.Example.FromString(record)
        values = {k: _feature_values(v) for k, v in proto.features.feature.items()}
        if columns is None:
            columns = _resolve_columns(task, aliases, label_columns, values, files)
        features = {}
        for feature, column in columns.items():
            found = values.get(column, [])
            if not found or (feature != "label" and not _as_text(found[0]).strip()):
                raise TrainerInputError(
                    f"Example {index} of {files[0] if len(files) == 1 else files} "
                    f"has no value in column {column!r}, which task {task.name!r} "
                    "needs (an empty CSV cell?)."
                )
            features[feature] = found[0]
        label = _parse_label(task, features.pop("label"))
        if label is None:
            raise TrainerInputError(
                f"Example {index}: label {_as_text(values[columns['label']][0])!r} "
                f"in column {columns['label']!r} is not a label of task "
                f"{task.name!r}: use 0..{task.num_classes - 1} or one of "
                f"{list(task.verbalizers)}."
            )
        text = {k: _as_text(v) for k, v in features.items()}
        examples.append(
            Example(task.format_input(text), task.format_target(label), label)
        )
    if not examples:
        raise TrainerInputError(f"The example files {files} hold no examples.")
    return examples


def _resolve_columns(task, aliases, label_columns, values, files) -> dict[str, str]:
    """Canonical feature -> column name present in the data (first example)."""
    columns: dict[str, str] = {}
    wanted = {**aliases, "label": label_columns}
    missing = []
    for feature, names in wanted.items():
        present = [n for n in names if n in values]
        if present:
            columns[feature] = present[0]
        else:
            missing.append(
                names[0] if len(names) == 1 else " or ".join(map(repr, names))
            )
    if missing:
        raise TrainerInputError(
            f"Task {task.name!r} needs column(s) {missing}, which the examples in "
            f"{files[0] if len(files) == 1 else files} lack; they have columns "
            f"{sorted(values)}. A task CSV needs the header "
            f"{','.join(task.tfds_features)} (write one with "
            "keras_prompt.tfx.write_task_csv)."
        )
    return columns


# ----------------------------------------------------------------------
# run_fn
# ----------------------------------------------------------------------
def _check_checkpoint(checkpoint: str) -> None:
    """A checkpoint that looks like a path must exist (clear error, early)."""
    import tensorflow as tf

    looks_like_path = (
        os.sep in checkpoint or "://" in checkpoint or checkpoint.startswith(".")
    )
    if looks_like_path and not tf.io.gfile.isdir(checkpoint):
        raise TrainerInputError(
            f"custom_config['checkpoint'] {checkpoint!r} is not a directory: it "
            "must be a keras-hub preset or Hugging Face T5 checkpoint directory "
            "readable from the Trainer's worker."
        )


def _local_copy(directory: str, scratch: Path) -> str:
    """`directory`, copied to local disk first when it is a remote URL.

    On Kubeflow / Vertex the checkpoint is usually a `gs://` folder; keras-hub
    and the Hugging Face importer read local paths, so it is fetched once with
    `tf.io.gfile` (which speaks every filesystem TF was built with).
    """
    import tensorflow as tf

    if "://" not in directory:
        return directory
    target = scratch / "checkpoint"
    for path, _, names in tf.io.gfile.walk(directory):
        relative = os.path.relpath(path.rstrip("/"), directory.rstrip("/"))
        folder = target / relative
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            tf.io.gfile.copy(
                f"{path.rstrip('/')}/{name}", str(folder / name), overwrite=True
            )
    return str(target)


def _install_serving_model(version_dir: Path, serving_model_dir: str) -> None:
    """Moves an exported version directory to TFX's `serving_model_dir`."""
    import tensorflow as tf

    if tf.io.gfile.exists(serving_model_dir):
        tf.io.gfile.rmtree(serving_model_dir)
    if "://" in serving_model_dir:
        for path, _, names in tf.io.gfile.walk(str(version_dir)):
            relative = os.path.relpath(path, version_dir)
            target = os.path.join(serving_model_dir, relative)
            tf.io.gfile.makedirs(target)
            for name in names:
                tf.io.gfile.copy(os.path.join(path, name), os.path.join(target, name))
    else:
        Path(serving_model_dir).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(version_dir), serving_model_dir)


def run_fn(fn_args: Any) -> dict[str, Any]:
    """TFX Trainer entry point: train the prompt, evaluate, export for serving.

    Reads `fn_args.train_files` / `eval_files` / `custom_config` /
    `train_steps`, writes the SavedModel (signatures `serving_default`,
    `classify`, `by_task`, `ensemble`, `serve_tf_examples`, and
    `evaluate_tf_examples` for the Evaluator; see
    `keras_prompt.serving.export_saved_model`) to `fn_args.serving_model_dir`
    with the trained prompt banked under the task's name (so `by_task` and
    `serve_tf_examples` rank-classify over its verbalizers), and the prompt
    file, `metrics.json` and (with tensorboard installed) TensorBoard logs to
    `fn_args.model_run_dir`.

    Returns the report also stored as `assets.extra/keras_prompt_trainer.json`
    in the SavedModel (options, timings, final loss, eval metrics).
    """
    import keras

    from keras_prompt.data import get_task
    from keras_prompt.run import run_training
    from keras_prompt.serving import PromptBank, export_saved_model

    started = time.perf_counter()
    options = TrainerOptions.from_custom_config(
        getattr(fn_args, "custom_config", None), getattr(fn_args, "train_steps", None)
    )
    task = get_task(options.task)
    _check_checkpoint(options.checkpoint)
    # All data is read and validated before the model is loaded.
    train_examples = read_examples(fn_args.train_files, task)
    eval_examples = read_examples(fn_args.eval_files, task, limit=options.eval_limit)
    read_seconds = time.perf_counter() - started

    run_dir = getattr(fn_args, "model_run_dir", None)
    callbacks = []
    if run_dir and importlib.util.find_spec("tensorboard") is not None:
        # TFX shows model_run_dir in TensorBoard. TF 2.21 no longer installs
        # tensorboard, and keras' callback fails without it.
        callbacks.append(keras.callbacks.TensorBoard(log_dir=run_dir))
    with tempfile.TemporaryDirectory(prefix="keras_prompt_tfx_") as scratch:
        staging_dir = Path(scratch)
        run = run_training(
            options.train_config(staging_dir),
            train_examples=train_examples,
            eval_examples=eval_examples,
            callbacks=callbacks,
            load_from=_local_copy(options.checkpoint, staging_dir),
        )
        report = {
            "task": task.name,
            "options": options.to_custom_config(),
            "num_train_examples": len(train_examples),
            "read_seconds": round(read_seconds, 2),
            "train_seconds": round(run.train_seconds, 2),
            "final_loss": run.metrics["final_loss"],
            "eval": run.metrics["eval"],
        }
        bank = PromptBank.from_arrays(
            {task.name: run.model.get_prompt()}, {task.name: task.verbalizers}
        )
        start = time.perf_counter()
        version_dir = export_saved_model(
            run.model,
            staging_dir / "export",
            version=1,
            prompt_bank=bank,
            max_input_length=options.max_input_length,
            max_decode_length=options.max_decode_length,
            default_task=task.name,
            # The Evaluator scores ExampleGen's examples, in the task's raw
            # columns, through this signature.
            eval_task=task,
        )
        report["export_seconds"] = round(time.perf_counter() - start, 2)
        report["total_seconds"] = round(time.perf_counter() - started, 2)
        text = json.dumps(report, indent=2, sort_keys=True, default=str) + "\n"
        (version_dir / REPORT_FILE).write_text(text, encoding="utf-8")
        if run_dir:
            prompt = run.prompt_path
            _write_run_files(run_dir, text, [prompt, prompt.with_suffix(".json")])
        _install_serving_model(version_dir, fn_args.serving_model_dir)
    print(f"keras_prompt.tfx: {text}")
    return report


def _write_run_files(run_dir: str, report: str, files: Iterable[Path]) -> None:
    import tensorflow as tf

    tf.io.gfile.makedirs(run_dir)
    with tf.io.gfile.GFile(os.path.join(run_dir, "metrics.json"), "w") as f:
        f.write(report)
    for path in files:
        tf.io.gfile.copy(str(path), os.path.join(run_dir, path.name), overwrite=True)
