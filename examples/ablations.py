"""Prompt length x initialisation ablation on SST-2 (Lester et al. 2021, Figure 3).

Trains one prompt per (prompt length, init, seed) on a frozen T5 for a fixed
number of steps, evaluates it by rank classification on the held-out SST-2
validation split (optionally its first `--eval-limit` rows), and writes

* `OUT/ablations.csv`: one row per run (accuracy, margin AUC, predicted
  "positive" count, final training loss, seconds);
* `OUT/prompts/p{length}_{init}_s{seed}.npy` (+ `.json`): every trained prompt,
  for `keras-prompt inspect` and the verbalizer hit-rate;
* `OUT/ablations.png` (or `--plot`): the paper's Figure 3 layout, x = prompt
  length on a log scale, one line per init, mean over seeds with the min-max
  spread shaded; a second panel shows the margin AUC.

Runs already in the CSV are skipped, so a killed sweep resumes by rerunning
the same command. `--plot-only` redraws the figure from an existing CSV.

Example (the small sweep in docs/results.md):

    python examples/ablations.py --data-dir ../shared/assets --out runs/ablate \
        --lengths 1 5 20 100 --seeds 0 1 2 --steps 150 --batch-size 16 \
        --plot docs/ablations.png
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Sequence

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_prompt.run_config import (  # noqa: E402  (after the environment)
    DEFAULT_LEARNING_RATES,
    TrainConfig,
)

INITS = ("random_uniform", "sampled_vocab", "class_labels")
FIELDS = (
    "prompt_length",
    "init",
    "seed",
    "steps",
    "batch_size",
    "learning_rate",
    "model",
    "eval_examples",
    "accuracy",
    "auc",
    "predicted_positive",
    "final_loss",
    "train_seconds",
    "eval_seconds",
    "prompt",
)
INIT_LABELS = {
    "random_uniform": "Random Uniform",
    "sampled_vocab": "Sampled Vocab",
    "class_labels": "Class Label",
}


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _append_row(path: Path, row: dict) -> None:
    new = not path.is_file()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k) for k in FIELDS})


def run_one(args, length: int, init: str, seed: int, train, evaluation) -> dict:
    """Trains and evaluates one prompt; returns its CSV row."""
    import keras

    # Seed before the model (and its tokenizer) exists: seeding clears TF's
    # kernel caches, which would break an earlier tokenizer.
    keras.utils.set_random_seed(seed)
    from keras_prompt.run import run_training

    config = TrainConfig(
        task="sst2",
        model=args.model,
        out=str(Path(args.out) / "prompts"),
        prompt_name=f"p{length}_{init}_s{seed}",
        metrics_file=None,
        prompt_length=length,
        init=init,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_input_length=args.max_input_length,
        seed=seed,
        jit_compile="auto",
        verbose=0,
        health_texts=0,
    )
    run = run_training(config, train_examples=train, eval_examples=evaluation)
    metrics = run.metrics["eval"]
    return {
        "prompt_length": length,
        "init": init,
        "seed": seed,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "model": str(args.model),
        "eval_examples": metrics["num_examples"],
        "accuracy": round(metrics["accuracy"], 6),
        "auc": None if metrics["auc"] is None else round(metrics["auc"], 6),
        "predicted_positive": metrics["predicted_counts"][1],
        "final_loss": round(run.metrics["final_loss"], 6),
        "train_seconds": round(run.train_seconds, 1),
        "eval_seconds": metrics["seconds"],
        "prompt": str(run.prompt_path),
    }


def plot(rows: Sequence[dict[str, str]], path: str | os.PathLike, title: str) -> None:
    """Figure 3 style: metric vs prompt length (log x), one line per init."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = [("accuracy", "SST-2 validation accuracy (%)", 100.0)]
    if any(r.get("auc") not in (None, "", "None") for r in rows):
        metrics.append(("auc", "margin ROC AUC", 1.0))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.0))
    axes = np.atleast_1d(axes)
    for ax, (key, label, scale) in zip(axes, metrics):
        for init in INITS:
            lengths = sorted(
                {int(r["prompt_length"]) for r in rows if r["init"] == init}
            )
            if not lengths:
                continue
            stats = []
            for length in lengths:
                values = [
                    float(r[key]) * scale
                    for r in rows
                    if r["init"] == init
                    and int(r["prompt_length"]) == length
                    and r[key] not in (None, "", "None")
                ]
                stats.append((np.mean(values), np.min(values), np.max(values)))
            mean, low, high = (np.array(s) for s in zip(*stats))
            (line,) = ax.plot(lengths, mean, marker="o", label=INIT_LABELS[init])
            ax.fill_between(lengths, low, high, alpha=0.2, color=line.get_color())
        if key == "accuracy":
            majority = [
                float(r["majority"]) * scale for r in rows if r.get("majority")
            ]
            if majority:
                ax.axhline(majority[0], color="grey", ls="--", lw=1,
                           label="majority class")
                ax.axhline(100.0 - majority[0], color="grey", ls=":", lw=1,
                           label="minority class")
        else:
            ax.axhline(0.5, color="grey", ls="--", lw=1, label="chance")
        ax.set_xscale("log")
        ax.set_xlabel("prompt length (log scale)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="preset (default: the embedded checkpoint)")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1, 5, 20, 100])
    parser.add_argument("--inits", nargs="+", default=list(INITS), choices=INITS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument(
        "--learning-rate", type=float, default=DEFAULT_LEARNING_RATES["prompt"]
    )
    parser.add_argument("--max-input-length", type=int, default=128)
    parser.add_argument(
        "--eval-limit", type=int, help="first N held-out validation rows only"
    )
    parser.add_argument("--plot", help="PNG path (default OUT/ablations.png)")
    parser.add_argument("--plot-only", action="store_true")
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be >= 1.")
    if any(length < 1 for length in args.lengths):
        raise SystemExit(f"error: --lengths must be >= 1; got {args.lengths}.")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "ablations.csv"
    plot_path = args.plot or out / "ablations.png"
    if args.model is None:
        from keras_prompt.presets import default_preset_path

        args.model = str(default_preset_path())
    rows = _read_rows(csv_path)
    if not args.plot_only:
        from keras_prompt.data import load_examples

        train = load_examples("sst2", "train", data_dir=args.data_dir)
        evaluation = load_examples("sst2", "validation", data_dir=args.data_dir)
        evaluation = evaluation[: args.eval_limit] if args.eval_limit else evaluation
        majority = max(
            sum(e.label for e in evaluation), sum(1 - e.label for e in evaluation)
        ) / len(evaluation)
        (out / "majority.json").write_text(json.dumps({"majority": majority}) + "\n")
        done = {(int(r["prompt_length"]), r["init"], int(r["seed"])) for r in rows}
        for seed in args.seeds:
            for length in args.lengths:
                for init in args.inits:
                    if (length, init, seed) in done:
                        continue
                    row = run_one(args, length, init, seed, train, evaluation)
                    _append_row(csv_path, row)
                    rows.append({k: str(v) for k, v in row.items()})
                    print(json.dumps(row), flush=True)
    if (out / "majority.json").is_file():
        majority = json.loads((out / "majority.json").read_text())["majority"]
        rows = [{**r, "majority": majority} for r in rows]
    if rows:
        first = rows[0]
        title = (
            f"SST-2 prompt tuning, {Path(first['model']).name}, "
            f"{first['steps']} steps x batch {first['batch_size']}, "
            f"seeds {', '.join(sorted({r['seed'] for r in rows}))}, "
            f"eval on {first['eval_examples']} held-out rows"
        )
        plot(rows, plot_path, title)
        print(f"wrote {csv_path} and {plot_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
