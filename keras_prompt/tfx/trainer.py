"""The TFX Trainer `run_fn`: prompt-tune a frozen T5 on ExampleGen's output.

TFX's generic Trainer calls `run_fn(fn_args)` with the example files of the
upstream ExampleGen, the Trainer's `custom_config` and the directories to
write to. This module needs nothing from TFX itself (`fn_args` is read by
attribute only), so it is importable, and testable, without TFX installed.

Input: ExampleGen's TFRecords of a task's CSV (`keras_prompt.tfx.examples`);
options: the Trainer's `custom_config` (`keras_prompt.tfx.options`). The run
itself is `keras_prompt.run.run_training`, as for `keras-prompt train`.

Everything is checked before any time is spent on the model: an unknown or
missing option, an unknown task, a missing checkpoint, no input files or a
missing column raise `TrainerInputError` with a message saying what to fix.
TFX marks the Trainer failed with that message and the Pusher never runs, so
nothing is pushed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

from keras_prompt.tfx.examples import read_examples
from keras_prompt.tfx.options import (
    INITIALIZERS,
    TrainerInputError,
    TrainerOptions,
)

#: Where the trainer writes its report inside the pushed SavedModel. TF
#: Serving ignores `assets.extra/` except for its warmup file.
REPORT_FILE = "assets.extra/keras_prompt_trainer.json"

#: A module file for `Trainer(module_file=...)`: it only re-exports `run_fn`.
#: It sits alone in its directory because TFX packages every `.py` file next
#: to a module file into the user-code wheel it ships to the workers.
MODULE_FILE = str(
    Path(__file__).resolve().parent / "user_module" / "keras_prompt_trainer.py"
)


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


__all__ = [
    "INITIALIZERS",
    "MODULE_FILE",
    "REPORT_FILE",
    "TrainerInputError",
    "TrainerOptions",
    "read_examples",
    "run_fn",
]
