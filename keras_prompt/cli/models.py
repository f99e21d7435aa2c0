"""`make-preset`, `lm-adapt` and `check-backbone`: making and checking backbones."""

from __future__ import annotations

import sys
from pathlib import Path

from keras_prompt.cli import common
from keras_prompt.files import numbered_lines
from keras_prompt.pretraining.config import (
    OPTIMIZERS,
    PRESET_WEIGHT_DTYPES,
    PretrainConfig,
)


def cmd_make_preset(args) -> int:
    common.set_seed(args.seed)
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
    common.print_json(
        {
            "preset": str(out),
            "geometry": args.geometry,
            "parameters": int(backbone.count_params()),
            "pretrained": False,
        }
    )
    return 0


def _check_make_preset(args) -> None:
    common.check_input(args.vocab, "--vocab")
    common.check_output_dir(args.out, "--out", empty=True)


def _set_dtype(dtype: str | None) -> None:
    if dtype:
        import keras

        keras.config.set_dtype_policy(dtype)


def cmd_lm_adapt(args) -> int:
    common.set_seed(args.seed)
    _set_dtype(args.dtype)
    import shlex

    from keras_prompt.pretraining import pretrain

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
    common.print_json(result)
    return 0


def _read_text_lines(path: str, argument: str) -> list[str]:
    lines = (line.strip() for _, line in numbered_lines(path, argument))
    return [line for line in lines if line]


def cmd_check_backbone(args) -> int:
    common.set_seed(args.seed)
    from keras_prompt.models.loading import load_backbone

    if args.limit < 2:
        raise ValueError(f"--limit must be >= 2; got {args.limit}.")
    texts = None
    if args.text_file:
        texts = _read_text_lines(args.text_file, "--text-file")
    elif args.task:
        from keras_prompt.data import get_task

        texts = [
            e.inputs for e in common.load_split(get_task(args.task), "train", args)
        ]
    from keras_prompt.health import health_report

    backbone, tokenizer = load_backbone(args.model)
    report = health_report(backbone, tokenizer, texts[: args.limit] if texts else None)
    report["model"] = args.model
    common.print_json(report)
    for message in report["warnings"]:
        print(f"keras-prompt check-backbone: WARNING: {message}", file=sys.stderr)
    return 1 if report["warnings"] else 0


def _check_check_backbone(args) -> None:
    common.check_input(args.text_file, "--text-file")
    common.check_data_args(args)


def add_make_preset(sub) -> None:
    p = sub.add_parser("make-preset", help="write a randomly initialised T5 preset")
    p.add_argument("--geometry", required=True)
    p.add_argument("--vocab", required=True, help="SentencePiece model (spiece.model)")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dropout", type=float)
    p.set_defaults(func=cmd_make_preset, check=_check_make_preset)


def add_lm_adapt(sub) -> None:
    p = sub.add_parser(
        "lm-adapt", help="pretrain / LM-adapt a T5 on plain text, write a preset"
    )
    p.add_argument("--corpus", nargs="+", required=True, help="text files or dirs")
    p.add_argument("--vocab", required=True, help="SentencePiece model (spiece.model)")
    p.add_argument("--out", required=True, help="run dir (checkpoint/, preset/)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--geometry", help="train from scratch: a named geometry")
    source.add_argument("--model", help="keras-hub preset to continue from")
    p.add_argument(
        "--steps", type=int, default=PretrainConfig.steps, help="total optimizer steps"
    )
    p.add_argument(
        "--span-corruption-steps",
        type=int,
        default=PretrainConfig.span_corruption_steps,
        help="first N steps use T5 span corruption, the rest LM adaptation",
    )
    p.add_argument("--batch-size", type=int, default=PretrainConfig.batch_size)
    p.add_argument(
        "--sequence-length", type=int, default=PretrainConfig.sequence_length
    )
    p.add_argument(
        "--learning-rate", type=float, default=PretrainConfig.learning_rate
    )
    p.add_argument(
        "--optimizer", default=PretrainConfig.optimizer, choices=OPTIMIZERS
    )
    p.add_argument("--warmup-steps", type=int, default=PretrainConfig.warmup_steps)
    p.add_argument("--dropout", type=float, default=PretrainConfig.dropout)
    p.add_argument(
        "--preset-dropout",
        type=float,
        default=PretrainConfig.preset_dropout,
        help="dropout recorded in the written preset (used by later prompt tuning)",
    )
    p.add_argument("--dtype", help="e.g. mixed_bfloat16")
    p.add_argument("--eval-every", type=int, default=PretrainConfig.eval_every)
    p.add_argument("--eval-batches", type=int, default=PretrainConfig.eval_batches)
    p.add_argument(
        "--heldout-fraction", type=float, default=PretrainConfig.heldout_fraction
    )
    p.add_argument("--min-chars", type=int, default=PretrainConfig.min_chars)
    p.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=PretrainConfig.checkpoint_seconds / 60,
    )
    p.add_argument("--max-minutes", type=float, help="stop (resumably) after this long")
    p.add_argument("--resume-from", help="checkpoint dir (default: OUT/checkpoint)")
    p.add_argument(
        "--preset-weights-dtype",
        default=PretrainConfig.preset_weights_dtype,
        choices=PRESET_WEIGHT_DTYPES,
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
        default=PretrainConfig.supervised_rate,
        help="share of LM-adaptation examples taken from --supervised-tasks",
    )
    p.add_argument("--data-dir", help="the tasks' files (laid out like shared/assets)")
    p.add_argument("--seed", type=int, default=PretrainConfig.seed)
    p.add_argument("--verbose", default=2, help="Keras fit verbosity (auto, 0, 1, 2)")
    p.set_defaults(func=cmd_lm_adapt)


def add_check_backbone(sub) -> None:
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
        "--limit", type=common.int_at_least(2), default=256, help="texts to measure on"
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_check_backbone, check=_check_check_backbone)
