"""Held-out accuracy vs steps and seconds of prompt (or model) tuning.

Trains with `keras_prompt.training.train_prompt` (one `model.fit`) and scores
the held-out split by rank classification every `--every` steps
(`HeldOutEvaluation`), appending one JSON line per evaluation to `--out`.
Prints the last record, the majority-class baseline and the command.

    python benchmarks/learning_curve.py --model PRESET --data-dir ../shared/assets \
        --task sst2 --tune prompt --prompt-length 100 --steps 2000 --every 250 \
        --out runs/curves/p100.jsonl
    python benchmarks/learning_curve.py --plot docs/sst2_learning_curve.png \
        runs/curves/p100.jsonl runs/curves/model.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def train(args) -> None:
    import keras

    keras.utils.set_random_seed(args.seed)
    if args.dtype:
        keras.config.set_dtype_policy(args.dtype)
    from keras_prompt import PromptTunedT5
    from keras_prompt.data import get_task, load_examples
    from keras_prompt.initializers import by_name
    from keras_prompt.optimizers import PromptAdafactor
    from keras_prompt.training import HeldOutEvaluation, train_prompt

    task = get_task(args.task)
    train_examples = load_examples(task, "train", data_dir=args.data_dir)
    held_out = load_examples(task, args.eval_split, data_dir=args.data_dir)
    held_out = held_out[: args.eval_limit] if args.eval_limit else held_out
    prompt_length = args.prompt_length if args.tune == "prompt" else 0
    model = PromptTunedT5.from_preset(
        args.model,
        prompt_length=prompt_length,
        prompt_initializer=by_name(args.init, task.verbalizers, args.seed),
        tune=args.tune,
        dropout=args.dropout,
        encoder_sequence_length=args.max_input_length,
        dtype=args.weights_dtype,
    )
    learning_rate = args.learning_rate or (0.3 if args.tune == "prompt" else 1e-3)
    if args.optimizer == "adafactor":
        optimizer = PromptAdafactor(learning_rate=learning_rate)
    else:
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    model.compile(optimizer=optimizer)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    header = {
        "command": "python " + shlex.join(sys.argv),
        "model": args.model,
        "majority_baseline": max(Counter(e.label for e in held_out).values())
        / len(held_out),
        "held_out": f"{args.eval_split} ({len(held_out)} rows)",
        "learning_rate": learning_rate,
        "dropout": model.backbone.get_config()["dropout"],
        "precision": args.weights_dtype or args.dtype or "float32",
        "prompt_dtype": (
            model.soft_prompt.prompt.dtype if model.soft_prompt else None
        ),
    }
    out.write_text(json.dumps({"header": header}) + "\n")
    curve = HeldOutEvaluation(task, held_out, every=args.every, path=str(out))
    start = time.perf_counter()
    train_prompt(
        model,
        task,
        train_examples,
        steps=args.steps,
        batch_size=args.batch_size,
        max_input_length=args.max_input_length,
        seed=args.seed,
        callbacks=[curve],
        verbose=0,
    )
    last = curve.records[-1] if curve.records else {}
    summary = {
        **header,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "last": {k: last.get(k) for k in ("step", "train_seconds", "accuracy", "auc")},
        "best_accuracy": max((r["accuracy"] for r in curve.records), default=None),
    }
    print(json.dumps(summary, indent=2))


def read_curve(path: str) -> tuple[dict, list[dict]]:
    lines = [json.loads(line) for line in Path(path).read_text().splitlines()]
    header = lines[0].get("header", {}) if lines else {}
    return header, [line for line in lines if "step" in line]


def plot(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.2))
    baseline = None
    for path in args.curves:
        header, records = read_curve(path)
        baseline = header.get("majority_baseline", baseline)
        label = Path(path).stem
        axis.plot(
            [r["step"] for r in records],
            [100 * r["accuracy"] for r in records],
            marker="o",
            label=label,
        )
    if baseline is not None:
        axis.axhline(100 * baseline, color="grey", ls="--", label="majority class")
    axis.set_xlabel("training steps (batch 32)")
    axis.set_ylabel("held-out accuracy (%)")
    axis.set_title(args.title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(args.plot, dpi=120)
    print(f"wrote {args.plot}")


def main() -> None:
    if "--plot" in sys.argv:
        parser = argparse.ArgumentParser()
        parser.add_argument("--plot", required=True)
        parser.add_argument("--title", default="SST-2 held-out accuracy")
        parser.add_argument("curves", nargs="+")
        plot(parser.parse_args())
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--tune", default="prompt", choices=["prompt", "model"])
    parser.add_argument("--prompt-length", type=int, default=100)
    parser.add_argument("--init", default="class_labels")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument(
        "--optimizer", default="adafactor", choices=["adafactor", "adam"]
    )
    parser.add_argument("--dropout", type=float)
    parser.add_argument("--dtype", help="global dtype policy, e.g. mixed_bfloat16")
    parser.add_argument(
        "--weights-dtype",
        help="the backbone's weights, e.g. bfloat16 (the prompt stays float32)",
    )
    parser.add_argument("--max-input-length", type=int, default=128)
    parser.add_argument("--eval-split", default="validation")
    parser.add_argument("--eval-limit", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    train(parser.parse_args())


if __name__ == "__main__":
    main()
