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

import os
import sys
from collections.abc import Sequence

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Every command module imports only the standard library and keras_prompt's
# light modules at the top: arguments are checked before TensorFlow loads.
from keras_prompt.cli import (  # noqa: E402  (after the environment)
    common,
    inspect_prompt,
    interop,
    models,
    serving,
    training,
)
from keras_prompt.cli.inspect_prompt import cmd_inspect  # noqa: E402
from keras_prompt.cli.interop import (  # noqa: E402
    cmd_export_hf,
    cmd_export_peft,
    cmd_import_hf,
    cmd_import_peft,
    cmd_import_t5x,
)
from keras_prompt.cli.models import (  # noqa: E402
    cmd_check_backbone,
    cmd_lm_adapt,
    cmd_make_preset,
)
from keras_prompt.cli.serving import cmd_export, cmd_query  # noqa: E402
from keras_prompt.cli.training import INITIALIZERS, cmd_eval, cmd_train  # noqa: E402


def build_parser() -> common.Parser:
    """The `keras-prompt` parser: one subcommand per `add_*` function."""
    parser = common.Parser(prog="keras-prompt", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        models.add_make_preset,
        models.add_lm_adapt,
        interop.add_import_hf,
        interop.add_export_hf,
        interop.add_import_t5x,
        interop.add_import_peft,
        interop.add_export_peft,
        models.add_check_backbone,
        training.add_train,
        training.add_eval,
        serving.add_export,
        serving.add_query,
        inspect_prompt.add_inspect,
    ):
        add(sub)
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


__all__ = [
    "INITIALIZERS",
    "build_parser",
    "cmd_check_backbone",
    "cmd_eval",
    "cmd_export",
    "cmd_export_hf",
    "cmd_export_peft",
    "cmd_import_hf",
    "cmd_import_peft",
    "cmd_import_t5x",
    "cmd_inspect",
    "cmd_lm_adapt",
    "cmd_make_preset",
    "cmd_query",
    "cmd_train",
    "main",
]
