"""`train` and `eval`: one training run (`keras_prompt.run`), and its metrics."""

from __future__ import annotations

import sys

from keras_prompt.cli import common
from keras_prompt.run_config import PAPER_INITIALIZERS as INITIALIZERS
from keras_prompt.run_config import TUNE_MODES, TrainConfig


def _check_train(args) -> None:
    common.check_data_args(args)
    common.check_output_dir(args.out, "--out")
    if args.backup_dir:
        common.check_output_dir(args.backup_dir, "--backup-dir")
    if args.tune == "prompt" and args.prompt_length == 0:
        raise ValueError(
            "--prompt-length 0 (no prompt) needs --tune model; prompt tuning "
            "needs --prompt-length >= 1."
        )
    if args.tune == "model" and (args.backup_dir or args.checkpoint_every):
        raise ValueError(
            "--backup-dir and --checkpoint-every write prompt-only state, which "
            "cannot restore a --tune model run (its backbone trains too); drop "
            "them for model tuning."
        )
    if args.init.endswith(".npy"):
        common.check_prompt_file(args.init, "--init")
    elif args.init not in INITIALIZERS:
        raise ValueError(
            f"--init {args.init!r} is not one of {list(INITIALIZERS)} or a .npy path."
        )


def _check_eval(args) -> None:
    common.check_data_args(args)
    if args.prompt:
        common.check_prompt_file(args.prompt, "--prompt")


def cmd_train(args) -> int:
    from keras_prompt import distribute

    # Made first: multi-worker set-up must precede every TensorFlow op.
    strategy = distribute.get_strategy(
        args.strategy, connect_timeout=args.connect_timeout, tpu=args.tpu
    )
    common.set_seed(args.seed)
    from keras_prompt.run import run_training

    def warn(message: str) -> None:
        print(
            f"keras-prompt train: WARNING: --model {args.model}: {message}; a "
            "prompt cannot steer this backbone (`keras-prompt check-backbone`).",
            file=sys.stderr,
            flush=True,
        )

    run = run_training(TrainConfig.from_namespace(args), strategy=strategy, warn=warn)
    common.print_json(run.metrics)
    return 0


def cmd_eval(args) -> int:
    from keras_prompt.data import get_task
    from keras_prompt.prompts import load_prompt_file
    from keras_prompt.training import evaluate_prompt

    task = get_task(args.task)
    examples = common.load_split(task, args.split, args, args.limit, args.format_as)
    scored_task = get_task(args.format_as) if args.format_as else task
    if args.prompt:
        values, _ = load_prompt_file(args.prompt)
        model = common.load_model(args, prompt_length=values.shape[0])
        model.load_prompt(args.prompt)
    else:
        # No prompt: the model alone (e.g. a `train --tune model` preset).
        model = common.load_model(args, prompt_length=0, tune="model")
    metrics = evaluate_prompt(
        model,
        task,
        examples,
        batch_size=args.batch_size,
        verbalizers=scored_task.verbalizers,
        verbose=args.verbose,
    )
    common.print_json(
        {
            "task": task.name,
            "split": args.split,
            "prompt": args.prompt,
            "format_as": scored_task.name,
            "source": common.split_source(task, args.split, args),
            **metrics,
        }
    )
    return 0


def add_train(sub) -> None:
    p = sub.add_parser("train", help="prompt-tune a frozen T5 on a task")
    common.add_data_args(p)
    common.add_model_args(p)
    p.add_argument(
        "--tune",
        default=TrainConfig.tune,
        choices=list(TUNE_MODES),
        help="prompt: train only the prompt (frozen backbone); model: train every "
        "weight (the paper's model-tuning baseline; writes OUT/preset)",
    )
    p.add_argument(
        "--prompt-length",
        type=common.int_at_least(0),
        default=TrainConfig.prompt_length,
        help="default 100 with --tune prompt, 0 (no prompt) with --tune model",
    )
    p.add_argument(
        "--init", default=TrainConfig.init, help=f"{'|'.join(INITIALIZERS)} or a .npy"
    )
    p.add_argument("--steps", type=common.int_at_least(1), default=TrainConfig.steps)
    p.add_argument(
        "--batch-size", type=common.int_at_least(1), default=TrainConfig.batch_size
    )
    p.add_argument(
        "--learning-rate",
        type=common.positive_float,
        default=TrainConfig.learning_rate,
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
    p.add_argument("--eval-split", default=TrainConfig.eval_split)
    p.add_argument(
        "--eval-limit",
        type=common.int_at_least(1),
        help="evaluate on the first N examples only",
    )
    p.add_argument(
        "--eval-batch-size",
        type=common.int_at_least(1),
        default=TrainConfig.eval_batch_size,
    )
    p.add_argument(
        "--out", required=True, help="output folder for the prompt and metrics.json"
    )
    p.add_argument(
        "--verbose",
        default=TrainConfig.verbose,
        help="Keras fit verbosity (auto, 0, 1, 2)",
    )
    p.add_argument(
        "--strategy",
        default=TrainConfig.strategy,
        choices=["default", "mirrored", "multiworker", "tpu"],
        help="tf.distribute strategy: none, this machine's GPUs, the TF_CONFIG "
        "cluster (one command per worker), or a TPU",
    )
    p.add_argument(
        "--connect-timeout",
        type=common.positive_float,
        default=TrainConfig.connect_timeout,
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
        type=common.int_at_least(1),
        help="steps between backups and OUT/checkpoints/{last,best} prompts "
        "(default with --backup-dir: 100)",
    )
    p.set_defaults(func=cmd_train, check=_check_train)


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="rank-classification metrics of a saved prompt")
    common.add_data_args(p)
    common.add_model_args(p)
    p.add_argument(
        "--prompt", help="prompt file; omit to evaluate the model alone (no prompt)"
    )
    p.add_argument(
        "--format-as",
        help="phrase the examples as this task's (prefix, fields, verbalizers): "
        "zero-shot transfer, e.g. --task mrpc --format-as qqp",
    )
    p.add_argument("--split", default="validation")
    p.add_argument("--limit", type=common.int_at_least(1))
    p.add_argument("--batch-size", type=common.int_at_least(1), default=64)
    common.add_verbose_arg(p)
    p.set_defaults(func=cmd_eval, check=_check_eval)
