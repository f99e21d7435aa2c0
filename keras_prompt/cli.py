"""`keras-prompt`: train, evaluate and inspect prompts from the command line.

keras-prompt make-preset --geometry t5_small --vocab spiece.model --out DIR
keras-prompt import-hf HF_CHECKPOINT_DIR --out PRESET_DIR
keras-prompt export-hf PRESET --out HF_CHECKPOINT_DIR
keras-prompt import-t5x T5X_CHECKPOINT_DIR --vocab spiece.model --out PRESET_DIR
keras-prompt import-peft ADAPTER_DIR --out OUT/sst2 [--model PRESET]
keras-prompt export-peft OUT/sst2.npy --out ADAPTER_DIR [--model PRESET]
keras-prompt lm-adapt --corpus DIR --vocab spiece.model --geometry t5_1_1_mini --out RUN
keras-prompt train --task sst2 --model PRESET --data-dir DATA --out OUT
    [--strategy default|mirrored|multiworker|tpu] [--backup-dir DIR]
keras-prompt eval  --task sst2 --model PRESET --prompt OUT/sst2.npy --data-dir DATA
keras-prompt inspect OUT/sst2.npy --model PRESET
keras-prompt check-backbone PRESET --task sst2 --data-dir DATA
    keras-prompt export --model PRESET --prompt sst2=OUT/sst2.npy --out EXPORT
    keras-prompt query EXPORT/1 --signature by_task --task sst2 --text "a fine film"
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Sequence

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# `--init` choices (keras_prompt.initializers.PAPER_INITIALIZERS), spelled out
# so that building the parser does not import keras.
INITIALIZERS = ("class_labels", "sampled_vocab", "random_uniform")
# Training inputs `train` measures the backbone's health on before training.
HEALTH_TEXTS = 64
# Why sequence lengths start at 2: `</s>` takes the last position.
_TWO_TOKENS = "one token of text plus </s>"


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, `keras-prompt <command>: error: ...`, exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int_at_least(minimum: int, why: str = ""):
    """An argparse type: an integer >= `minimum` (`why`: the reason, if any)."""
    reason = f" ({why})" if why else ""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum}{reason}; got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"must be >= {minimum}{reason}; got {value}"
            )
        return value

    return parse


def _positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0; got {text!r}")
    return value


# ----------------------------------------------------------------------
# Checks run before anything heavy is imported or any file is created.
# ----------------------------------------------------------------------
def _check_output_dir(path: str, argument: str, *, empty: bool = False) -> None:
    """Refuses an output directory that cannot be created or written."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{argument} {target} exists and is not a directory.")
    if empty and target.is_dir() and any(target.iterdir()):
        raise ValueError(f"{argument} {target} exists and is not empty.")
    existing = target.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(
            f"{argument} {target} cannot be created: {existing} is a file, not a "
            "directory."
        )
    # Creating something is the only reliable test: permission bits say
    # nothing for root, nor for read-only or special file systems.
    probe = existing / f".keras-prompt-probe-{os.getpid()}-{time.monotonic_ns()}"
    try:
        probe.mkdir()
    except OSError as e:
        raise ValueError(
            f"{argument} {target} is not writable: cannot create anything in "
            f"{existing} ({e.strerror})."
        ) from None
    probe.rmdir()


def _check_input(path: str | None, argument: str, *, directory: bool = False) -> None:
    if path is None:
        return
    found = Path(path).is_dir() if directory else Path(path).is_file()
    if not found:
        kind = "directory" if directory else "file"
        state = "is not a" if Path(path).exists() else "does not exist; expected a"
        raise FileNotFoundError(f"{argument} {path} {state} {kind}.")


def _check_prompt_file(path: str, argument: str) -> dict:
    """Reads (and so validates) a prompt file; returns its metadata."""
    from keras_prompt.prompts import load_prompt_file

    try:
        return load_prompt_file(path)[1]
    except (ValueError, FileNotFoundError) as e:
        raise type(e)(f"{argument}: {e}") from None


def _check_data_args(args) -> None:
    _check_input(args.data_dir, "--data-dir", directory=True)
    _check_input(args.tfds_data_dir, "--tfds-data-dir", directory=True)


def _check_train(args) -> None:
    _check_data_args(args)
    _check_output_dir(args.out, "--out")
    if args.backup_dir:
        _check_output_dir(args.backup_dir, "--backup-dir")
    if args.tune == "prompt" and args.prompt_length == 0:
        raise ValueError(
            "--prompt-length 0 (no prompt) needs --tune model; prompt tuning "
            "needs --prompt-length >= 1."
        )
    if args.init.endswith(".npy"):
        _check_prompt_file(args.init, "--init")
    elif args.init not in INITIALIZERS:
        raise ValueError(
            f"--init {args.init!r} is not one of {list(INITIALIZERS)} or a .npy path."
        )


def _check_eval(args) -> None:
    _check_data_args(args)
    if args.prompt:
        _check_prompt_file(args.prompt, "--prompt")


def _check_inspect(args) -> None:
    _check_prompt_file(args.prompt, "PROMPT")
    _check_input(args.embeddings, "--embeddings")
    _check_input(args.vocab, "--vocab")


def _check_export(args) -> None:
    if not args.prompt and args.prompt_length is None:
        raise ValueError("Give --prompt TASK=PATH.npy (repeatable) or --prompt-length.")
    for paths in _parse_bank(args.prompt).values():
        for path in paths:
            _check_prompt_file(path, "--prompt")
    _check_output_dir(args.out, "--out")
    if args.version is not None:
        target = Path(args.out) / str(args.version)
        if target.exists():
            raise ValueError(
                f"--version {args.version}: {target} already exists, and TF Serving "
                "versions are immutable; pick another --version or omit it for the "
                "next free one."
            )


def _export_metadata(export: Path) -> dict | None:
    """The metadata `keras-prompt export` writes beside the SavedModel, if any."""
    path = export / "assets.extra" / "prompt_bank.json"
    try:
        metadata = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return metadata if isinstance(metadata, dict) else None


def _check_query(args) -> None:
    export = Path(args.export)
    if not export.exists():
        raise FileNotFoundError(f"EXPORT {export} does not exist.")
    if not (export / "saved_model.pb").is_file():
        children = export.iterdir() if export.is_dir() else ()
        versions = sorted(
            (p for p in children if p.name.isdigit()), key=lambda p: int(p.name)
        )
        if versions:
            raise ValueError(
                f"EXPORT {export} is an export base directory; pass one of its "
                f"versions, e.g. {versions[-1]}."
            )
        raise ValueError(f"EXPORT {export} is not a SavedModel (no saved_model.pb).")
    if args.candidates is not None and not all(c.strip() for c in args.candidates):
        raise ValueError(
            f"--candidates must be non-blank strings; got {args.candidates!r}."
        )
    metadata = _export_metadata(export) or {}
    signatures = metadata.get("signatures")
    if isinstance(signatures, dict):
        if args.signature not in signatures:
            raise ValueError(
                f"{export} has no signature {args.signature!r}; it has "
                f"{sorted(signatures)}."
            )
        inputs = signatures[args.signature].get("inputs", [])
        if "prompt" in inputs:
            raise ValueError(
                f"--signature {args.signature} takes a prompt tensor, which "
                "`keras-prompt query` does not send; use by_task or ensemble (the "
                "export's prompt bank), or keras_prompt.serving.client."
            )
        if "task" in inputs and not args.task:
            raise ValueError(f"--signature {args.signature} needs --task.")
        if "candidates" in inputs and not args.candidates:
            raise ValueError(f"--signature {args.signature} needs --candidates.")
    tasks = metadata.get("tasks")
    if args.task and isinstance(tasks, dict) and args.task not in tasks:
        raise ValueError(
            f"--task {args.task!r} is not in {export}'s prompt bank; it has "
            f"{sorted(tasks)}."
        )


def _check_make_preset(args) -> None:
    _check_input(args.vocab, "--vocab")
    _check_output_dir(args.out, "--out", empty=True)


def _check_import_hf(args) -> None:
    _check_input(args.checkpoint, "CHECKPOINT", directory=True)
    _check_output_dir(args.out, "--out", empty=True)


def _check_check_backbone(args) -> None:
    _check_input(args.text_file, "--text-file")
    _check_data_args(args)


def _print_json(payload: dict) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True, default=str))


def _set_seed(seed: int) -> None:
    # Must run before any tokenizer exists: TF's global-seed reset clears the
    # kernel caches that hold SentencePiece resources.
    import keras

    keras.utils.set_random_seed(seed)


def _set_dtype(dtype: str | None) -> None:
    if dtype:
        import keras

        keras.config.set_dtype_policy(dtype)


def _load_model(
    args, task=None, prompt_length=None, init="random_uniform", tune="prompt"
):
    from keras_prompt import PromptTunedT5
    from keras_prompt.initializers import by_name

    initializer = (
        by_name(init, task.verbalizers, args.seed, argument="--init") if task else init
    )
    if prompt_length is None:
        prompt_length = args.prompt_length
    return PromptTunedT5.from_preset(
        args.model,
        prompt_length=prompt_length,
        prompt_initializer=initializer,
        tune=tune,
        dropout=getattr(args, "dropout", None),
        encoder_sequence_length=args.max_input_length,
    )


def _resolve_tune_args(args) -> None:
    """Fills `train`'s defaults that depend on `--tune`, and checks them."""
    from keras_prompt.models.prompt_tuned_t5 import DEFAULT_LEARNING_RATES

    if args.prompt_length is None:
        args.prompt_length = 100 if args.tune == "prompt" else 0
    if args.learning_rate is None:
        args.learning_rate = DEFAULT_LEARNING_RATES[args.tune]
    if args.tune == "model" and (args.backup_dir or args.checkpoint_every):
        raise ValueError(
            "--backup-dir and --checkpoint-every write prompt-only state, which "
            "cannot restore a --tune model run (its backbone trains too); drop "
            "them for model tuning."
        )


def cmd_make_preset(args) -> int:
    _set_seed(args.seed)
    import keras_hub

    from keras_prompt.models.geometries import build_backbone

    out = Path(args.out)
    overrides = {"dropout": args.dropout} if args.dropout is not None else {}
    backbone = build_backbone(args.geometry, **overrides)
    tokenizer = keras_hub.models.T5Tokenizer(proto=str(args.vocab))
    backbone.save_to_preset(out)
    tokenizer.save_to_preset(out)
    (out / "MODEL_CARD.md").write_text(
        f"# Randomly initialised T5 ({args.geometry})\n\n"
        f"Made by `keras-prompt make-preset --geometry {args.geometry} "
        f"--seed {args.seed}`. NOT pretrained: accuracies measured on it are "
        "those of a random frozen network.\n"
    )
    _print_json(
        {
            "preset": str(out),
            "geometry": args.geometry,
            "parameters": int(backbone.count_params()),
            "pretrained": False,
        }
    )
    return 0


def cmd_lm_adapt(args) -> int:
    _set_seed(args.seed)
    _set_dtype(args.dtype)
    import shlex

    from keras_prompt.pretraining import PretrainConfig, pretrain

    config = PretrainConfig(
        corpus=args.corpus,
        out=args.out,
        vocab=args.vocab,
        geometry=args.geometry,
        model=args.model,
        steps=args.steps,
        span_corruption_steps=args.span_corruption_steps,
        batch_size=args.batch_size,
        sequence_length=args.sequence_length,
        learning_rate=args.learning_rate,
        optimizer=args.optimizer,
        warmup_steps=args.warmup_steps,
        dropout=args.dropout,
        dtype=args.dtype,
        eval_every=args.eval_every,
        eval_batches=args.eval_batches,
        heldout_fraction=args.heldout_fraction,
        min_chars=args.min_chars,
        checkpoint_seconds=args.checkpoint_minutes * 60,
        max_minutes=args.max_minutes,
        seed=args.seed,
        preset_weights_dtype=args.preset_weights_dtype,
        resume_from=args.resume_from,
        preset_dropout=args.preset_dropout,
        supervised_tasks=tuple(args.supervised_tasks),
        supervised_files=tuple(args.supervised_files),
        supervised_rate=args.supervised_rate,
        data_dir=args.data_dir,
        command="keras-prompt " + shlex.join(sys.argv[1:]),
    )
    try:
        result = pretrain(config, verbose=args.verbose)
    except KeyboardInterrupt:
        return 130
    _print_json(result)
    return 0


def cmd_import_hf(args) -> int:
    from keras_prompt.checkpoints import convert_hf_checkpoint

    path = convert_hf_checkpoint(args.checkpoint, args.out, verbose=args.verbose)
    _print_json({"preset": str(path)})
    return 0


def cmd_export_hf(args) -> int:
    from keras_prompt.checkpoints import export_hf_checkpoint

    try:
        path = export_hf_checkpoint(
            args.preset, args.out, dtype=args.dtype, verbose=args.verbose
        )
    except FileExistsError as error:
        raise ValueError(str(error)) from None
    _print_json(
        {"checkpoint": str(path), "files": sorted(p.name for p in path.iterdir())}
    )
    return 0


def cmd_import_t5x(args) -> int:
    from keras_prompt.checkpoints.t5x import (
        convert_t5x_checkpoint,
        read_t5x_checkpoint,
    )

    checkpoint = read_t5x_checkpoint(args.checkpoint)
    try:
        path = convert_t5x_checkpoint(
            checkpoint.directory,
            args.out,
            args.vocab,
            relative_attention_max_distance=args.max_distance,
            verbose=args.verbose,
        )
    except FileExistsError as error:
        raise ValueError(str(error)) from None
    _print_json(
        {
            "preset": str(path),
            "checkpoint": str(checkpoint.directory),
            "step": checkpoint.step,
        }
    )
    return 0


def _backbone_or_none(model: str | None):
    if not model:
        return None
    from keras_prompt.models.prompt_tuned_t5 import load_backbone

    return load_backbone(model)[0]


def cmd_import_peft(args) -> int:
    from keras_prompt.models.prompt_tuned_t5 import backbone_fingerprint
    from keras_prompt.peft_prompts import load_peft_prompt
    from keras_prompt.prompts import save_prompt_file

    backbone = _backbone_or_none(args.model)
    prompt, metadata = load_peft_prompt(
        args.adapter, hidden_dim=backbone.hidden_dim if backbone else None
    )
    if backbone is not None and "backbone" not in metadata:
        metadata["backbone"] = {
            "fingerprint": backbone_fingerprint(backbone),
            "preset": args.model,
            "hidden_dim": backbone.hidden_dim,
        }
    path = save_prompt_file(args.out, prompt, metadata)
    _print_json({"prompt": str(path), "shape": list(prompt.shape)})
    return 0


def cmd_export_peft(args) -> int:
    from keras_prompt.peft_prompts import save_peft_prompt
    from keras_prompt.prompts import load_prompt_file

    prompt, metadata = load_prompt_file(args.prompt)
    backbone = _backbone_or_none(args.model)
    try:
        path = save_peft_prompt(
            prompt,
            args.out,
            model=backbone,
            base_model_name_or_path=args.base_model or args.model,
            metadata=metadata,
        )
    except FileExistsError as error:
        raise ValueError(str(error)) from None
    _print_json({"adapter": str(path), "shape": list(prompt.shape)})
    return 0


def _tokenized(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    import tensorflow as tf

    ids = tokenizer(tf.constant(list(texts), tf.string))
    if hasattr(ids, "to_list"):
        ids = ids.to_list()
    return [[int(i) for i in row] for row in ids]


def _health_report(backbone, tokenizer, texts: Sequence[str] | None) -> dict:
    from keras_prompt.health import check_backbone, health_warnings

    tokens = _tokenized(tokenizer, texts) if texts else None
    report = check_backbone(backbone, tokens)
    report["warnings"] = health_warnings(report)
    return report


def _read_text_lines(path: str, argument: str) -> list[str]:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{argument} {file} does not exist.")
    lines = []
    with open(file, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as e:
                raise ValueError(
                    f"{argument} {file}, line {number}: not UTF-8 text ({e.reason} "
                    f"at byte {e.start})."
                ) from None
            if line:
                lines.append(line)
    return lines


def cmd_check_backbone(args) -> int:
    _set_seed(args.seed)
    from keras_prompt.models.prompt_tuned_t5 import load_backbone

    if args.limit < 2:
        raise ValueError(f"--limit must be >= 2; got {args.limit}.")
    texts = None
    if args.text_file:
        texts = _read_text_lines(args.text_file, "--text-file")
    elif args.task:
        from keras_prompt.data import get_task

        texts = [e.inputs for e in _load_split(get_task(args.task), "train", args)]
    backbone, tokenizer = load_backbone(args.model)
    report = _health_report(backbone, tokenizer, texts[: args.limit] if texts else None)
    report["model"] = args.model
    _print_json(report)
    for message in report["warnings"]:
        print(f"keras-prompt check-backbone: WARNING: {message}", file=sys.stderr)
    return 1 if report["warnings"] else 0


def _load_split(task, split, args, limit=None, format_as=None):
    from keras_prompt.data import load_examples

    examples = load_examples(
        task,
        split,
        data_dir=args.data_dir,
        tfds_data_dir=args.tfds_data_dir,
        format_as=format_as,
    )
    return examples[:limit] if limit else examples


def _split_source(task, split, args) -> dict:
    """Which file (and rows) a split was read from, for metrics.json."""
    from keras_prompt.data import split_source

    return split_source(task, split, args.data_dir, args.tfds_data_dir).to_json()


def _get_strategy(args):
    """The `--strategy`; made first, as multi-worker set-up must precede TF ops."""
    from keras_prompt import distribute

    return distribute.get_strategy(
        args.strategy, connect_timeout=args.connect_timeout, tpu=args.tpu
    )


def cmd_train(args) -> int:
    strategy = _get_strategy(args)
    _set_seed(args.seed)
    _set_dtype(args.dtype)
    import hashlib

    import numpy as np

    from keras_prompt import distribute
    from keras_prompt.callbacks import PromptBackup, PromptCheckpoint
    from keras_prompt.data import get_task
    from keras_prompt.optimizers import PromptAdafactor
    from keras_prompt.training import evaluate_prompt, train_prompt

    task = get_task(args.task)
    _resolve_tune_args(args)
    info = distribute.describe(strategy)
    fixed_shape = args.fixed_shape or args.strategy == "tpu"  # XLA: static shapes
    if args.strategy == "tpu" and args.batch_size % info["num_replicas"]:
        raise ValueError(
            f"--batch-size {args.batch_size} must be a multiple of the "
            f"{info['num_replicas']} TPU cores, which need equal static batches."
        )
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise ValueError(
            f"--checkpoint-every must be >= 1; got {args.checkpoint_every}."
        )
    checkpoint_every = args.checkpoint_every or (
        min(100, args.steps) if args.backup_dir else None
    )
    # Read (and validate) all data before any training time is spent.
    train_examples = _load_split(task, "train", args)
    eval_examples = _load_split(task, args.eval_split, args, args.eval_limit)
    with strategy.scope():
        model = _load_model(args, task, init=args.init, tune=args.tune)
        model.compile(
            optimizer=PromptAdafactor(learning_rate=args.learning_rate),
            jit_compile=args.jit_compile,
        )
    health = _health_report(
        model.backbone,
        model.preprocessor.tokenizer,
        [e.inputs for e in train_examples[:HEALTH_TEXTS]],
    )
    for message in health["warnings"]:
        print(
            f"keras-prompt train: WARNING: --model {args.model}: {message}; a "
            "prompt cannot steer this backbone (`keras-prompt check-backbone`).",
            file=sys.stderr,
            flush=True,
        )
    out = Path(args.out)
    chief = info["chief"]
    if chief:
        out.mkdir(parents=True, exist_ok=True)
    callbacks = []
    if args.backup_dir:
        callbacks.append(
            PromptBackup(
                args.backup_dir,
                save_freq=checkpoint_every,
                run_config={
                    "task": task.name,
                    "batch_size": args.batch_size,
                    "seed": args.seed,
                    "max_input_length": args.max_input_length,
                    "fixed_shape": fixed_shape,
                },
            )
        )
    if args.checkpoint_every:
        callbacks.append(
            PromptCheckpoint(
                out / "checkpoints",
                monitor="loss",
                metadata={"task": task.name, "verbalizers": list(task.verbalizers)},
            )
        )
    start = time.perf_counter()
    history = train_prompt(
        model,
        task,
        train_examples,
        steps=args.steps,
        batch_size=args.batch_size,
        max_input_length=args.max_input_length,
        seed=args.seed,
        fixed_shape=fixed_shape,
        callbacks=callbacks,
        steps_per_epoch=checkpoint_every,
        verbose=args.verbose,
    )
    train_seconds = time.perf_counter() - start
    backups = [c for c in callbacks if isinstance(c, PromptBackup)]
    resumed = backups[0].restored_meta if backups else None
    losses = history.history.get("loss") or [None]
    result = {
        "task": task.name,
        "model": args.model,
        "prompt": None,
        "steps": args.steps,
        "trained_steps": int(model.optimizer.iterations.numpy()),
        "resumed_from_step": int(resumed["step"]) if resumed else None,
        "batch_size": args.batch_size,
        "prompt_length": args.prompt_length,
        "tune": args.tune,
        "trainable_parameters": int(
            sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        ),
        "learning_rate": args.learning_rate,
        "init": args.init if args.prompt_length else None,
        "seed": args.seed,
        "dtype": args.dtype or "float32",
        "dropout": float(model.backbone.get_config()["dropout"]),
        "jit_compile": bool(args.jit_compile),
        "fixed_shape": fixed_shape,
        **info,
        "prompt_sha256": (
            hashlib.sha256(model.get_prompt().tobytes()).hexdigest()
            if args.prompt_length
            else None
        ),
        "train_seconds": round(train_seconds, 1),
        "final_loss": None if losses[-1] is None else float(losses[-1]),
        "eval_split": args.eval_split,
        "train_source": _split_source(task, "train", args),
        "eval_source": _split_source(task, args.eval_split, args),
        "backbone_health": health,
        "eval": None,
    }
    if not chief:
        # Workers train in lockstep with the chief and hold the same prompt;
        # only the chief writes the prompt and metrics (and evaluates).
        _print_json(result)
        return 0
    if args.tune == "model":
        # The backbone changed: write it as a preset (plus the prompt, if
        # any, recorded as belonging to that preset).
        preset = out / "preset"
        model.backbone.save_to_preset(preset)
        model.preprocessor.tokenizer.save_to_preset(preset)
        result["preset"] = str(preset)
        if args.prompt_length:
            from keras_prompt.prompts import save_prompt_file

            metadata = model.prompt_metadata(
                task=task.name,
                verbalizers=list(task.verbalizers),
                init=args.init,
                seed=args.seed,
                tune="model",
                trained_backbone=str(preset),
            )
            result["prompt"] = str(
                save_prompt_file(out / task.name, model.get_prompt(), metadata)
            )
    else:
        prompt_path = model.save_prompt(
            out / task.name,
            task=task.name,
            verbalizers=task.verbalizers,
            init=args.init,
            seed=args.seed,
        )
        result["prompt"] = str(prompt_path)
    result["eval"] = evaluate_prompt(
        model,
        task,
        eval_examples,
        batch_size=args.eval_batch_size,
        verbose=args.verbose,
    )
    (out / "metrics.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    _print_json(result)
    return 0


def cmd_eval(args) -> int:
    from keras_prompt.data import get_task
    from keras_prompt.prompts import load_prompt_file
    from keras_prompt.training import evaluate_prompt

    task = get_task(args.task)
    examples = _load_split(task, args.split, args, args.limit, args.format_as)
    scored_task = get_task(args.format_as) if args.format_as else task
    if args.prompt:
        values, _ = load_prompt_file(args.prompt)
        model = _load_model(args, prompt_length=values.shape[0])
        model.load_prompt(args.prompt)
    else:
        # No prompt: the model alone (e.g. a `train --tune model` preset).
        model = _load_model(args, prompt_length=0, tune="model")
    metrics = evaluate_prompt(
        model,
        task,
        examples,
        batch_size=args.batch_size,
        verbalizers=scored_task.verbalizers,
        verbose=args.verbose,
    )
    _print_json(
        {
            "task": task.name,
            "split": args.split,
            "prompt": args.prompt,
            "format_as": scored_task.name,
            "source": _split_source(task, args.split, args),
            **metrics,
        }
    )
    return 0


def cmd_inspect(args) -> int:
    import numpy as np

    from keras_prompt.inspection import describe_prompt
    from keras_prompt.prompts import load_prompt_file

    prompt, metadata = load_prompt_file(args.prompt)
    embeddings, id_to_token = None, None
    if args.embeddings:
        from keras_prompt.prompts import read_prompt_array

        embeddings = read_prompt_array(args.embeddings)
    elif args.model:
        import keras_hub

        from keras_prompt.models.prompt_tuned_t5 import backbone_fingerprint
        from keras_prompt.prompts import check_prompt_backbone, prompt_paths

        backbone = keras_hub.models.T5Backbone.from_preset(args.model)
        check_prompt_backbone(
            metadata,
            prompt_paths(args.prompt)[1],
            fingerprint=backbone_fingerprint(backbone),
            hidden_dim=backbone.hidden_dim,
        )
        embeddings = np.asarray(backbone.token_embedding.embeddings.numpy())
    if args.vocab or args.model:
        import keras_hub

        tokenizer = (
            keras_hub.models.T5Tokenizer(proto=str(args.vocab))
            if args.vocab
            else keras_hub.models.T5Tokenizer.from_preset(args.model)
        )
        vocabulary_size = tokenizer.vocabulary_size()

        def id_to_token(i: int) -> str:
            return tokenizer.id_to_token(i) if i < vocabulary_size else f"<extra_{i}>"

    report = describe_prompt(prompt, embeddings, id_to_token, k=args.k)
    report["file"] = args.prompt
    report["metadata"] = metadata
    verbalizers = args.verbalizers
    if args.task:
        from keras_prompt.data import get_task

        verbalizers = list(get_task(args.task).verbalizers)
    if verbalizers:
        from keras_prompt.inspection import verbalizer_hit_rate

        if embeddings is None or not (args.vocab or args.model):
            raise ValueError(
                "--verbalizers/--task need an embedding table (--model or "
                "--embeddings) and a vocabulary (--model or --vocab)."
            )
        verbalizer_ids = sorted(
            {
                int(i)
                for v in verbalizers
                for i in np.asarray(tokenizer.tokenize(v)).reshape(-1)
            }
        )
        report["verbalizers"] = list(verbalizers)
        report["verbalizer_tokens"] = [id_to_token(i) for i in verbalizer_ids]
        report["verbalizer_hit_rate"] = verbalizer_hit_rate(
            prompt, embeddings, verbalizer_ids, k=args.k
        )
    if args.json:
        _print_json(report)
        return 0
    print(
        f"{args.prompt}: shape {tuple(report['shape'])}, norm mean "
        f"{report['norm_mean']:.3f} (min {report['norm_min']:.3f}, max "
        f"{report['norm_max']:.3f})"
    )
    for position, norm in enumerate(report["norms"]):
        line = f"  [{position:3d}] norm {norm:7.3f}"
        if "nearest" in report:
            tokens = ", ".join(
                f"{n['token'] if n['token'] is not None else n['id']}"
                f" ({n['cosine']:.2f})"
                for n in report["nearest"][position]
            )
            line += f"  nearest: {tokens}"
        print(line)
    if "verbalizer_hit_rate" in report:
        print(
            f"verbalizer hit-rate: {report['verbalizer_hit_rate']:.3f} of "
            f"{report['shape'][0]} positions have a verbalizer token "
            f"({', '.join(report['verbalizer_tokens'])}) among their {args.k} "
            "nearest tokens"
        )
    return 0


def _parse_bank(items: Sequence[str]) -> dict[str, list[str]]:
    bank: dict[str, list[str]] = {}
    for item in items:
        task, sep, path = item.partition("=")
        if not sep or not task or not path:
            raise ValueError(f"--prompt expects TASK=PATH.npy; got {item!r}.")
        bank.setdefault(task, []).append(path)
    return bank


def cmd_export(args) -> int:
    from keras_prompt.serving import PromptBank, export_saved_model

    bank = PromptBank.from_files(_parse_bank(args.prompt)) if args.prompt else None
    prompt_length = bank.prompt_shape[0] if bank is not None else args.prompt_length
    model = _load_model(args, prompt_length=prompt_length)
    path = export_saved_model(
        model,
        args.out,
        version=args.version,
        prompt_bank=bank,
        max_input_length=args.max_input_length,
        max_decode_length=args.max_decode_length,
        verbose=args.verbose,
    )
    _print_json({"export": str(path), "tasks": bank.tasks if bank else ["default"]})
    return 0


def cmd_query(args) -> int:
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)

    from keras_prompt.serving.client import build_inputs

    loaded = tf.saved_model.load(args.export)
    if args.signature not in loaded.signatures:
        raise ValueError(
            f"{args.export} has no signature {args.signature!r}; it has "
            f"{sorted(loaded.signatures)}."
        )
    texts = args.text
    inputs = build_inputs(
        args.signature,
        text=texts,
        task=[args.task] * len(texts) if args.task else None,
        candidates=args.candidates,
    )
    try:
        outputs = loaded.signatures[args.signature](
            **{k: tf.constant(v) for k, v in inputs.items()}
        )
    except tf.errors.InvalidArgumentError as e:
        raise ValueError(_graph_refusal(e.message)) from None
    decoded = {}
    for name, value in outputs.items():
        array = value.numpy()
        if array.dtype == object:
            array = [
                [b.decode() for b in row] if array.ndim > 1 else row.decode()
                for row in array
            ]
        else:
            array = array.tolist()
        decoded[name] = array
    _print_json({"signature": args.signature, "text": texts, **decoded})
    return 0


def _graph_refusal(message: str) -> str:
    """The text of a serving graph's failed `tf.debugging.Assert`, without
    TensorFlow's framing (node names, bracketed message parts)."""
    message = message.split("\n\t [[")[0]
    head, found, parts = message.partition("assertion failed: ")
    if not found:
        return message
    parts = parts.strip()
    if parts.startswith("[") and parts.endswith("]"):
        parts = " ".join(part.strip() for part in parts[1:-1].split("] ["))
    return parts


def _add_data_args(parser) -> None:
    parser.add_argument(
        "--task", required=True, help="sst2, mrpc, qqp, rte, boolq, cb, copa, wic"
    )
    parser.add_argument(
        "--data-dir", help="folder laid out like shared/assets (glue/, superglue/)"
    )
    parser.add_argument(
        "--tfds-data-dir", help="read the task from TFDS in this data dir instead"
    )


def _add_model_args(parser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="keras-hub preset name or dir, HF T5 checkpoint dir, or hf://owner/name "
        "(from the local HF cache; HF_HUB_OFFLINE=1 reads only the cache)",
    )
    parser.add_argument(
        "--max-input-length", type=_int_at_least(2, _TWO_TOKENS), default=256
    )
    parser.add_argument("--seed", type=int, default=0)


def _add_verbose_arg(parser) -> None:
    parser.add_argument(
        "--verbose",
        default="auto",
        help="progress bar on stderr: 0 none, 1 live, 2 one line when done; "
        "auto: live on a terminal, else one line",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="keras-prompt", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-preset", help="write a randomly initialised T5 preset")
    p.add_argument("--geometry", required=True)
    p.add_argument("--vocab", required=True, help="SentencePiece model (spiece.model)")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dropout", type=float)
    p.set_defaults(func=cmd_make_preset, check=_check_make_preset)

    p = sub.add_parser(
        "lm-adapt", help="pretrain / LM-adapt a T5 on plain text, write a preset"
    )
    p.add_argument("--corpus", nargs="+", required=True, help="text files or dirs")
    p.add_argument("--vocab", required=True, help="SentencePiece model (spiece.model)")
    p.add_argument("--out", required=True, help="run dir (checkpoint/, preset/)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--geometry", help="train from scratch: a named geometry")
    source.add_argument("--model", help="keras-hub preset to continue from")
    p.add_argument("--steps", type=int, default=1000, help="total optimizer steps")
    p.add_argument(
        "--span-corruption-steps",
        type=int,
        default=0,
        help="first N steps use T5 span corruption, the rest LM adaptation",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--sequence-length", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--optimizer", default="adamw", choices=("adamw", "adafactor"))
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument(
        "--preset-dropout",
        type=float,
        default=0.0,
        help="dropout recorded in the written preset (used by later prompt tuning)",
    )
    p.add_argument("--dtype", help="e.g. mixed_bfloat16")
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--eval-batches", type=int, default=16)
    p.add_argument("--heldout-fraction", type=float, default=0.005)
    p.add_argument("--min-chars", type=int, default=20)
    p.add_argument("--checkpoint-minutes", type=float, default=5.0)
    p.add_argument("--max-minutes", type=float, help="stop (resumably) after this long")
    p.add_argument("--resume-from", help="checkpoint dir (default: OUT/checkpoint)")
    p.add_argument(
        "--preset-weights-dtype",
        default="float16",
        choices=("float32", "float16", "bfloat16"),
    )
    p.add_argument(
        "--supervised-tasks",
        nargs="+",
        default=(),
        help="mix these tasks' labelled train splits into LM adaptation (T5 "
        "1.0-style multi-task pretraining; needs --data-dir)",
    )
    p.add_argument(
        "--supervised-files",
        nargs="+",
        default=(),
        help="text-to-text TSV files (inputs<TAB>targets) mixed in like "
        "--supervised-tasks",
    )
    p.add_argument(
        "--supervised-rate",
        type=float,
        default=0.0,
        help="share of LM-adaptation examples taken from --supervised-tasks",
    )
    p.add_argument("--data-dir", help="the tasks' files (laid out like shared/assets)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", default=2, help="Keras fit verbosity (auto, 0, 1, 2)")
    p.set_defaults(func=cmd_lm_adapt)

    p = sub.add_parser(
        "import-hf", help="convert a Hugging Face T5 checkpoint to a preset"
    )
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True)
    _add_verbose_arg(p)
    p.set_defaults(func=cmd_import_hf, check=_check_import_hf)

    p = sub.add_parser(
        "export-hf",
        help="write a T5 preset as a Hugging Face checkpoint (config.json, "
        "model.safetensors, spiece.model)",
    )
    p.add_argument("preset", help="keras-hub preset name/dir or HF T5 checkpoint dir")
    p.add_argument("--out", required=True, help="new or empty directory")
    p.add_argument(
        "--dtype", default="float32", choices=("float32", "bfloat16", "float16")
    )
    _add_verbose_arg(p)
    p.set_defaults(func=cmd_export_hf)

    p = sub.add_parser(
        "import-t5x", help="convert a T5X (T5 1.0/1.1) checkpoint to a preset"
    )
    p.add_argument(
        "checkpoint", help="checkpoint_<step> dir, or a dir of them (latest read)"
    )
    p.add_argument("--vocab", required=True, help="the model's spiece.model")
    p.add_argument("--out", required=True, help="new or empty preset directory")
    p.add_argument(
        "--max-distance",
        type=int,
        default=128,
        help="the checkpoint's relative_attention max_distance (not stored in it)",
    )
    _add_verbose_arg(p)
    p.set_defaults(func=cmd_import_t5x)

    p = sub.add_parser(
        "import-peft", help="a PEFT prompt-tuning adapter as a prompt file"
    )
    p.add_argument("adapter", help="PEFT adapter dir (adapter_config.json, weights)")
    p.add_argument("--out", required=True, help="prompt path: writes OUT.npy, OUT.json")
    p.add_argument("--model", help="check the width against this preset/checkpoint")
    p.set_defaults(func=cmd_import_peft)

    p = sub.add_parser(
        "export-peft", help="a prompt file as a PEFT prompt-tuning adapter"
    )
    p.add_argument("prompt", help="prompt file (.npy, with its .json)")
    p.add_argument("--out", required=True, help="new or empty adapter directory")
    p.add_argument("--model", help="check the width against this preset/checkpoint")
    p.add_argument(
        "--base-model", help="base_model_name_or_path to record (default: --model)"
    )
    p.set_defaults(func=cmd_export_peft)

    p = sub.add_parser(
        "check-backbone",
        help="can a prompt steer this T5? embedding collapse, encoder use "
        "(exit code 1 when a figure says no)",
    )
    p.add_argument("model", help="keras-hub preset name/dir or HF T5 checkpoint dir")
    text = p.add_mutually_exclusive_group()
    text.add_argument("--text-file", help="UTF-8 text, one text per line")
    text.add_argument("--task", help="use this task's training inputs (e.g. sst2)")
    p.add_argument("--data-dir", help="with --task: folder laid out like shared/assets")
    p.add_argument("--tfds-data-dir", help="with --task: read the task from TFDS")
    p.add_argument(
        "--limit", type=_int_at_least(2), default=256, help="texts to measure on"
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_check_backbone, check=_check_check_backbone)

    p = sub.add_parser("train", help="prompt-tune a frozen T5 on a task")
    _add_data_args(p)
    _add_model_args(p)
    p.add_argument(
        "--tune",
        default="prompt",
        choices=["prompt", "model"],
        help="prompt: train only the prompt (frozen backbone); model: train every "
        "weight (the paper's model-tuning baseline; writes OUT/preset)",
    )
    p.add_argument(
        "--prompt-length",
        type=_int_at_least(0),
        default=None,
        help="default 100 with --tune prompt, 0 (no prompt) with --tune model",
    )
    p.add_argument(
        "--init", default="class_labels", help=f"{'|'.join(INITIALIZERS)} or a .npy"
    )
    p.add_argument("--steps", type=_int_at_least(1), default=1000)
    p.add_argument("--batch-size", type=_int_at_least(1), default=32)
    p.add_argument(
        "--learning-rate",
        type=_positive_float,
        default=None,
        help="Adafactor's constant rate; default 0.3 (prompt) or 1e-3 (model)",
    )
    p.add_argument(
        "--dtype", help="e.g. mixed_bfloat16 (prompt and optimizer stay float32)"
    )
    p.add_argument(
        "--dropout",
        type=float,
        help="the frozen backbone's dropout while training (default: the checkpoint's)",
    )
    p.add_argument(
        "--fixed-shape",
        action="store_true",
        help="pad every batch to --max-input-length",
    )
    p.add_argument("--eval-split", default="validation")
    p.add_argument(
        "--eval-limit",
        type=_int_at_least(1),
        help="evaluate on the first N examples only",
    )
    p.add_argument("--eval-batch-size", type=_int_at_least(1), default=64)
    p.add_argument(
        "--out", required=True, help="output folder for the prompt and metrics.json"
    )
    p.add_argument(
        "--verbose", default="auto", help="Keras fit verbosity (auto, 0, 1, 2)"
    )
    p.add_argument(
        "--strategy",
        default="default",
        choices=["default", "mirrored", "multiworker", "tpu"],
        help="tf.distribute strategy: none, this machine's GPUs, the TF_CONFIG "
        "cluster (one command per worker), or a TPU",
    )
    p.add_argument(
        "--connect-timeout",
        type=_positive_float,
        default=300.0,
        help="multiworker: seconds to wait for every TF_CONFIG peer",
    )
    p.add_argument("--tpu", help="tpu: TPU name or grpc:// address (default TPU_NAME)")
    p.add_argument(
        "--jit-compile",
        action="store_true",
        help="XLA-compile the train step (use with --fixed-shape)",
    )
    p.add_argument(
        "--backup-dir",
        help="prompt-only backups here; rerunning the command resumes from them",
    )
    p.add_argument(
        "--checkpoint-every",
        type=_int_at_least(1),
        help="steps between backups and OUT/checkpoints/{last,best} prompts "
        "(default with --backup-dir: 100)",
    )
    p.set_defaults(func=cmd_train, check=_check_train)

    p = sub.add_parser("eval", help="rank-classification metrics of a saved prompt")
    _add_data_args(p)
    _add_model_args(p)
    p.add_argument(
        "--prompt", help="prompt file; omit to evaluate the model alone (no prompt)"
    )
    p.add_argument(
        "--format-as",
        help="phrase the examples as this task's (prefix, fields, verbalizers): "
        "zero-shot transfer, e.g. --task mrpc --format-as qqp",
    )
    p.add_argument("--split", default="validation")
    p.add_argument("--limit", type=_int_at_least(1))
    p.add_argument("--batch-size", type=_int_at_least(1), default=64)
    _add_verbose_arg(p)
    p.set_defaults(func=cmd_eval, check=_check_eval)

    p = sub.add_parser(
        "export", help="write a TF Serving SavedModel with a prompt bank"
    )
    p.add_argument("--model", required=True, help="the frozen backbone's preset/dir")
    p.add_argument(
        "--prompt",
        action="append",
        default=[],
        help="TASK=PATH.npy; repeat for more tasks, or a task's ensemble members",
    )
    p.add_argument(
        "--prompt-length", type=_int_at_least(1), help="only without --prompt"
    )
    p.add_argument("--out", required=True, help="export base dir (versions inside)")
    p.add_argument(
        "--version", type=_int_at_least(0), default=None, help="default: next free"
    )
    p.add_argument(
        "--max-input-length", type=_int_at_least(2, _TWO_TOKENS), default=256
    )
    p.add_argument(
        "--max-decode-length", type=_int_at_least(2, _TWO_TOKENS), default=16
    )
    p.add_argument("--seed", type=int, default=0)
    _add_verbose_arg(p)
    p.set_defaults(func=cmd_export, check=_check_export)

    p = sub.add_parser(
        "query", help="call a signature of an export (TF + TF Text only)"
    )
    p.add_argument("export", help="a version dir, e.g. EXPORT/1")
    p.add_argument("--signature", default="by_task")
    p.add_argument("--text", action="append", required=True)
    p.add_argument("--task")
    p.add_argument("--candidates", nargs="+")
    p.set_defaults(func=cmd_query, check=_check_query)

    p = sub.add_parser("inspect", help="shape, norms and nearest vocabulary tokens")
    p.add_argument("prompt")
    p.add_argument("--model", help="preset whose embedding table and vocabulary to use")
    p.add_argument(
        "--embeddings", help="a (vocab, hidden) .npy embedding table instead"
    )
    p.add_argument("--vocab", help="SentencePiece model for token strings")
    p.add_argument(
        "--verbalizers",
        nargs="+",
        help="label strings: report the fraction of positions with one of their "
        "tokens among the k nearest (the verbalizer hit-rate)",
    )
    p.add_argument("--task", help="use this task's verbalizers (e.g. sst2)")
    p.add_argument("-k", type=_int_at_least(1), default=5)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect, check=_check_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    # keras-hub's T5 layers trip Keras' generic masking warning on every
    # build; it says nothing about this program's use of them.
    warnings.filterwarnings("ignore", message=".*does not support masking.*")
    warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "verbose", None) not in (None, "auto"):
        args.verbose = int(args.verbose)
    try:
        if getattr(args, "check", None):
            args.check(args)
        return args.func(args)
    except (ValueError, OSError, TimeoutError) as e:
        _print_error(args.command, e)
        return 2
    except Exception as e:
        if os.environ.get("KERAS_PROMPT_TRACEBACK"):
            raise
        _print_error(
            args.command,
            f"unexpected {type(e).__name__}: {e} (set KERAS_PROMPT_TRACEBACK=1 "
            "for the traceback)",
        )
        return 1


def _print_error(command: str, error) -> None:
    """The error as one line (TF errors and some OS errors span several)."""
    message = " ".join(line.strip() for line in str(error).splitlines())
    print(f"keras-prompt {command}: error: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
