"""What the command modules share: argument types, early checks, loading helpers."""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

from keras_prompt.run_config import TrainConfig

# Why sequence lengths start at 2: `</s>` takes the last position.
TWO_TOKENS = "one token of text plus </s>"


class Parser(argparse.ArgumentParser):
    """Usage errors as one line, `keras-prompt <command>: error: ...`, exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def int_at_least(minimum: int, why: str = ""):
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


def positive_float(text: str) -> float:
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
def check_output_dir(path: str, argument: str, *, empty: bool = False) -> None:
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


def check_input(path: str | None, argument: str, *, directory: bool = False) -> None:
    if path is None:
        return
    found = Path(path).is_dir() if directory else Path(path).is_file()
    if not found:
        kind = "directory" if directory else "file"
        state = "is not a" if Path(path).exists() else "does not exist; expected a"
        raise FileNotFoundError(f"{argument} {path} {state} {kind}.")


def check_prompt_file(path: str, argument: str) -> dict:
    """Reads (and so validates) a prompt file; returns its metadata."""
    from keras_prompt.prompts import load_prompt_file

    try:
        return load_prompt_file(path)[1]
    except (ValueError, FileNotFoundError) as e:
        raise type(e)(f"{argument}: {e}") from None


def check_data_args(args) -> None:
    check_input(args.data_dir, "--data-dir", directory=True)
    check_input(args.tfds_data_dir, "--tfds-data-dir", directory=True)


def print_json(payload: dict) -> None:
    """A command's result on stdout (stderr carries progress and errors)."""
    print(json.dumps(payload, indent=2, sort_keys=True, default=str))


def set_seed(seed: int) -> None:
    # Must run before any tokenizer exists: TF's global-seed reset clears the
    # kernel caches that hold SentencePiece resources.
    import keras

    keras.utils.set_random_seed(seed)


def load_model(args, prompt_length: int, tune: str = "prompt"):
    """`--model` as a `PromptTunedT5` whose prompt a file will fill."""
    from keras_prompt import PromptTunedT5

    return PromptTunedT5.from_preset(
        args.model,
        prompt_length=prompt_length,
        tune=tune,
        dropout=getattr(args, "dropout", None),
        encoder_sequence_length=args.max_input_length,
    )


def load_split(task, split, args, limit=None, format_as=None):
    from keras_prompt.data import load_examples

    examples = load_examples(
        task,
        split,
        data_dir=args.data_dir,
        tfds_data_dir=args.tfds_data_dir,
        format_as=format_as,
    )
    return examples[:limit] if limit else examples


def split_source(task, split, args) -> dict:
    """Which file (and rows) a split was read from, for metrics.json."""
    from keras_prompt.data import split_source

    return split_source(task, split, args.data_dir, args.tfds_data_dir).to_json()


def add_data_args(parser) -> None:
    parser.add_argument(
        "--task", required=True, help="sst2, mrpc, qqp, rte, boolq, cb, copa, wic"
    )
    parser.add_argument(
        "--data-dir", help="folder laid out like shared/assets (glue/, superglue/)"
    )
    parser.add_argument(
        "--tfds-data-dir", help="read the task from TFDS in this data dir instead"
    )


def add_model_args(parser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="keras-hub preset name or dir, HF T5 checkpoint dir, or hf://owner/name "
        "(from the local HF cache; HF_HUB_OFFLINE=1 reads only the cache)",
    )
    parser.add_argument(
        "--max-input-length",
        type=int_at_least(2, TWO_TOKENS),
        default=TrainConfig.max_input_length,
    )
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)


def add_verbose_arg(parser) -> None:
    parser.add_argument(
        "--verbose",
        default="auto",
        help="progress bar on stderr: 0 none, 1 live, 2 one line when done; "
        "auto: live on a terminal, else one line",
    )
