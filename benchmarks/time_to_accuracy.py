"""Time to accuracy: SST-2 prompt tuning, keras-prompt vs Hugging Face PEFT.

Both systems prompt-tune the same backbone weights from the same initial
prompt with the same optimizer settings and batch size, and both score the
same held-out rows by rank classification every `--every` steps; the figure
is held-out accuracy against seconds of training (evaluation not counted),
and the ratio of seconds each needs to reach 95% of the lower of the two
final accuracies.

- **Same weights**: the preset exported with
  `keras_prompt.checkpoints.export_hf_checkpoint`, read by
  `T5ForConditionalGeneration.from_pretrained`.
- **Same initial prompt**: class-label initialisation
  (`keras_prompt.initializers.by_name("class_labels", ...)`, `--seed`), saved as
  a `.npy` (keras-prompt reads it with `--init`) and as a PEFT adapter
  (`keras_prompt.peft_prompts.save_peft_prompt`; `PeftModel.from_pretrained(...,
  is_trainable=True)`, encoder-only prompt).
- **Same optimizer**: Adafactor at `--learning-rate` (0.3), no parameter
  scaling, no relative step, second-moment decay exponent -0.8, update
  clipping 1.0, epsilons (1e-30, 1e-3), weight decay 1e-5:
  `keras_prompt.PromptAdafactor` and `transformers.optimization.Adafactor`
  (`peft_optimizer` below; tests/test_time_to_accuracy.py checks that a few
  steps of both move the prompt alike).
- **Same data**: keras-prompt's SST-2 train and held-out splits
  (`load_examples(get_task("sst2"), ...)`: "sst2 sentence: ..." ->
  negative/positive), inputs cut at `--max-input-length` tokens, batch 32,
  each system shuffling with `--seed` (keras-prompt's length buckets reorder
  within its shuffle buffer, so the orders are alike, not equal).
- **Each system's best documented pipeline**: keras-prompt `train_prompt`
  (in-graph tokenization, length-bucketed batches) with bf16 backbone
  weights (`from_preset(dtype="bfloat16")`, prompt and optimizer float32) via
  `benchmarks/learning_curve.py`; PEFT with the base model in bf16 and the
  prompt in float32 (its fastest measured precision), dynamic padding
  (each batch tokenized with `padding="longest"` when drawn; the tokenizer's
  time is counted, as keras-prompt's in-graph tokenization is),
  `model(**batch).loss`, `backward`, `step`.

Each system runs in its own fresh process, one after the other (`--rounds`
pairs, the order alternating); the report takes each system's curve with
the shortest time to the target. Held-out accuracy is the share of the
carve-out rows (no official dev file ships in the assets) whose higher-scored
verbalizer is the gold one, computed for both by
`keras_prompt.data.rank_classification_metrics`.

    python benchmarks/time_to_accuracy.py --model keras_prompt/presets/t5_1_1_mini_lm \
        --data-dir ../shared/assets --steps 1000 --every 25 \
        --work-dir runs/time_to_accuracy --plot docs/time_to_accuracy.png
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
DEFAULT_MODEL = REPO_ROOT / "keras_prompt" / "presets" / "t5_1_1_mini_lm"
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "assets"
TASK = "sst2"
TARGET_SHARE = 0.95
PREPARE_VERSION = 1


# ----------------------------------------------------------------------
# transformers + PEFT side (no TensorFlow imported).
# ----------------------------------------------------------------------
def peft_trainable_model(hf_dir, adapter, precision: str):
    """The exported checkpoint with the adapter's prompt, ready to train.

    `precision="bf16"`: frozen base weights in bfloat16, prompt float32.
    """
    import peft
    import torch
    import transformers

    base = transformers.T5ForConditionalGeneration.from_pretrained(hf_dir)
    if precision == "bf16":
        base = base.to(torch.bfloat16)
    # PEFT refuses `is_trainable=True` for prompt adapters: build a trainable
    # prompt from the adapter's config and load the adapter's values into it.
    config = peft.PeftConfig.from_pretrained(adapter)
    config.inference_mode = False
    model = peft.get_peft_model(base, config)
    peft.set_peft_model_state_dict(model, peft.load_peft_weights(str(adapter)))
    model.prompt_encoder.float()
    model.train()
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    return model, tokenizer


def peft_optimizer(parameters, learning_rate: float):
    """`keras_prompt.PromptAdafactor`'s defaults in transformers' Adafactor."""
    from transformers.optimization import Adafactor

    return Adafactor(
        parameters,
        lr=learning_rate,
        eps=(1e-30, 1e-3),
        clip_threshold=1.0,
        decay_rate=-0.8,
        beta1=None,
        weight_decay=1e-5,
        scale_parameter=False,
        relative_step=False,
        warmup_init=False,
    )


def peft_batch(tokenizer, inputs, targets, max_input_length: int) -> dict:
    """One dynamically padded training batch (label padding = -100)."""
    encoded = tokenizer(
        list(inputs),
        padding="longest",
        truncation=True,
        max_length=max_input_length,
        return_tensors="pt",
    )
    labels = tokenizer(list(targets), padding="longest", return_tensors="pt")
    ids = labels.input_ids.masked_fill(labels.attention_mask == 0, -100)
    return {
        "input_ids": encoded.input_ids,
        "attention_mask": encoded.attention_mask,
        "labels": ids,
    }


def peft_curve_worker(args, work: Path) -> None:
    """Trains the PEFT prompt, appending a record with raw scores per eval."""
    import torch
    from inference_vs_peft import peft_score
    from peft_worker import train_step

    torch.manual_seed(args.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    spec = json.loads((work / "prepared.json").read_text())
    model, tokenizer = peft_trainable_model(
        work / "hf", work / "adapter", args.peft_precision
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = peft_optimizer(trainable, args.learning_rate)
    rows = [json.loads(line) for line in (work / "train.jsonl").open()]
    held_out = spec["held_out_texts"]
    rng = random.Random(args.seed)
    order: list[int] = []
    out = Path(args.out)
    out.write_text(json.dumps({"header": _peft_header(args, model)}) + "\n")
    train_seconds, step = 0.0, 0
    while step < args.steps:
        start = time.perf_counter()
        if len(order) < args.batch_size:
            fresh = list(range(len(rows)))
            rng.shuffle(fresh)
            order += fresh
        picked, order = order[: args.batch_size], order[args.batch_size :]
        batch = peft_batch(
            tokenizer,
            [rows[i]["inputs"] for i in picked],
            [rows[i]["targets"] for i in picked],
            args.max_input_length,
        )
        loss = train_step(model, optimizer, batch, "none")
        train_seconds += time.perf_counter() - start
        step += 1
        if step % args.every and step != args.steps:
            continue
        model.eval()
        eval_start = time.perf_counter()
        scores = peft_score(
            model,
            tokenizer,
            held_out,
            spec["verbalizers"],
            args.eval_batch_size,
            args.max_input_length,
            "shared-encoder",
        )
        record = {
            "step": step,
            "train_seconds": round(train_seconds, 1),
            "loss": loss,
            "eval_seconds": round(time.perf_counter() - eval_start, 2),
            "scores": scores.round(5).tolist(),
        }
        with out.open("a") as f:
            f.write(json.dumps(record) + "\n")
        model.train()


def _peft_header(args, model) -> dict:
    import peft
    import torch
    import transformers

    prompt = model.prompt_encoder["default"].embedding.weight
    return {
        "system": "peft",
        "precision": args.peft_precision,
        "pipeline": "dynamic padding (padding='longest'), tokenized per batch",
        "prompt_dtype": str(prompt.dtype),
        "learning_rate": args.learning_rate,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "threads": torch.get_num_threads(),
        },
    }


# ----------------------------------------------------------------------
# Preparation (keras-prompt; TensorFlow).
# ----------------------------------------------------------------------
def prepare(args, work: Path) -> dict:
    """Initial prompt (.npy + PEFT adapter), HF checkpoint and the data."""
    import numpy as np

    from keras_prompt import PromptTunedT5
    from keras_prompt.checkpoints import export_hf_checkpoint
    from keras_prompt.data import get_task, load_examples
    from keras_prompt.initializers import by_name
    from keras_prompt.peft_prompts import save_peft_prompt

    task = get_task(TASK)
    model = PromptTunedT5.from_preset(
        args.model,
        prompt_length=args.prompt_length,
        prompt_initializer=by_name(args.init, task.verbalizers, args.seed),
    )
    prompt = model.get_prompt()
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / "initial_prompt.npy", prompt)
    save_peft_prompt(
        prompt,
        work / "adapter",
        model=model,
        metadata=model.prompt_metadata(task=TASK, verbalizers=list(task.verbalizers)),
    )
    export_hf_checkpoint(args.model, work / "hf")
    with (work / "train.jsonl").open("w", encoding="utf-8") as f:
        for e in load_examples(task, "train", data_dir=args.data_dir):
            f.write(json.dumps({"inputs": e.inputs, "targets": e.targets}) + "\n")
    held_out = load_examples(task, "validation", data_dir=args.data_dir)
    spec = {
        "key": _prepare_key(args),
        "held_out_texts": [e.inputs for e in held_out],
        "held_out_labels": [int(e.label) for e in held_out],
        "verbalizers": list(task.verbalizers),
        "majority_baseline": max(Counter(e.label for e in held_out).values())
        / len(held_out),
    }
    (work / "prepared.json").write_text(json.dumps(spec))
    return spec


def _prepare_key(args) -> dict:
    model = Path(args.model)
    weights = sorted(model.glob("*.weights.h5")) if model.is_dir() else []
    return {
        "version": PREPARE_VERSION,
        "model": str(model.resolve()) if model.exists() else args.model,
        "weights_mtime": [w.stat().st_mtime for w in weights],
        "data_dir": str(Path(args.data_dir).resolve()),
        "prompt_length": args.prompt_length,
        "init": args.init,
        "seed": args.seed,
    }


# ----------------------------------------------------------------------
# Report.
# ----------------------------------------------------------------------
def seconds_to(records: list[dict], target: float) -> float | None:
    """Training seconds at the first evaluation whose accuracy >= `target`."""
    for record in records:
        if record["accuracy"] >= target:
            return record["train_seconds"]
    return None


def _ratio(seconds: dict[str, float | None]) -> float | None:
    """The second system's seconds over the first's (keras-prompt's)."""
    mine, theirs = list(seconds.values())[:2]
    return theirs / mine if mine and theirs is not None else None


def compare_curves(curves: dict[str, list[dict]], share: float = TARGET_SHARE):
    """Target = `share` x the lower final accuracy; seconds and ratio to it.

    `curves` maps a system to its records (ascending steps, each with
    `accuracy` and `train_seconds`); the first is keras-prompt, the second
    the system it is compared with. Ratio = their seconds / keras-prompt's.
    """
    finals = {name: records[-1]["accuracy"] for name, records in curves.items()}
    target = share * min(finals.values())
    seconds = {name: seconds_to(records, target) for name, records in curves.items()}
    ratio = _ratio(seconds)
    return {
        "final_accuracy": finals,
        "target_accuracy": target,
        "seconds_to_target": seconds,
        "ratio": ratio,
    }


def plateau_comparison(curves: dict[str, list[dict]], window: int = 3, tail: int = 10):
    """A noise-robust companion to `compare_curves`.

    Target = the lower of the systems' plateaus (mean accuracy of the last
    `tail` evaluations); each system's time is the first evaluation where the
    mean of `window` consecutive evaluations reaches it (the seconds of that
    window's last one). One evaluation of 872 rows moves by ~1.6 points
    (binomial standard error) and the first evaluations decide the
    definition above when the curves start near their final level.
    """
    plateaus = {
        name: sum(r["accuracy"] for r in records[-tail:]) / len(records[-tail:])
        for name, records in curves.items()
    }
    target = min(plateaus.values())
    seconds: dict[str, float | None] = {}
    for name, records in curves.items():
        seconds[name] = None
        for end in range(window, len(records) + 1):
            chunk = records[end - window : end]
            if sum(r["accuracy"] for r in chunk) / window >= target - 1e-12:
                seconds[name] = chunk[-1]["train_seconds"]
                break
    ratio = _ratio(seconds)
    return {
        "plateau_accuracy": plateaus,
        "target_accuracy": target,
        "seconds_to_target": seconds,
        "ratio": ratio,
        "window": window,
        "tail": tail,
    }


def _read(path: Path, spec: dict) -> tuple[dict, list[dict]]:
    from keras_prompt.data import rank_classification_metrics

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    header = lines[0].get("header", {}) if lines else {}
    records = []
    for line in lines[1:]:
        if "scores" in line:
            scores = line.pop("scores")
            line.update(
                rank_classification_metrics(TASK, scores, spec["held_out_labels"])
            )
        records.append(line)
    return header, records


def plot(curves: dict[str, list[dict]], summary: dict, baseline: float, path: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.2))
    for name, records in curves.items():
        axis.plot(
            [r["train_seconds"] for r in records],
            [100 * r["accuracy"] for r in records],
            marker=".",
            label=name,
        )
    axis.axhline(100 * baseline, color="grey", ls="--", label="majority class")
    axis.axhline(
        100 * summary["target_accuracy"],
        color="black",
        ls=":",
        label=f"target ({TARGET_SHARE:.0%} of the lower final)",
    )
    axis.set_xlabel("seconds of training (evaluation not counted)")
    axis.set_ylabel("held-out accuracy (%)")
    axis.set_title("SST-2 prompt tuning, same weights and initial prompt")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"wrote {path}")


# ----------------------------------------------------------------------
# Orchestration.
# ----------------------------------------------------------------------
def _keras_command(args, work: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        str(HERE / "learning_curve.py"),
        "--model", str(args.model),
        "--data-dir", str(args.data_dir),
        "--task", TASK,
        "--tune", "prompt",
        "--prompt-length", str(args.prompt_length),
        "--init", str(work / "initial_prompt.npy"),
        "--steps", str(args.steps),
        "--every", str(args.every),
        "--batch-size", str(args.batch_size),
        "--learning-rate", str(args.learning_rate),
        "--weights-dtype", "bfloat16",
        "--max-input-length", str(args.max_input_length),
        "--seed", str(args.seed),
        "--out", str(out),
    ]  # fmt: skip


def _peft_command(args, work: Path, out: Path) -> list[str]:
    return [
        args.peft_python or sys.executable,
        str(Path(__file__).resolve()),
        "--worker", "peft",
        "--work-dir", str(work),
        "--steps", str(args.steps),
        "--every", str(args.every),
        "--batch-size", str(args.batch_size),
        "--learning-rate", str(args.learning_rate),
        "--max-input-length", str(args.max_input_length),
        "--seed", str(args.seed),
        "--peft-precision", args.peft_precision,
        "--out", str(out),
    ]  # fmt: skip


def _run(command: list[str], label: str) -> None:
    import subprocess

    print(f"[{time.strftime('%H:%M:%S')}] {label} ...", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    load = [round(x, 2) for x in os.getloadavg()]
    print(
        f"    rc {proc.returncode}, {time.perf_counter() - start:.0f} s, load {load}",
        flush=True,
    )
    if proc.returncode:
        print(proc.stderr[-3000:], flush=True)


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--work-dir", default="runs/time_to_accuracy")
    parser.add_argument("--prompt-length", type=int, default=20)
    parser.add_argument("--init", default="class_labels")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.3)
    parser.add_argument("--max-input-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--peft-python",
        help="python with torch, transformers and peft (default: this one)",
    )
    parser.add_argument("--peft-precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--plot", help="write the PNG here")
    parser.add_argument("--json", help="write the summary here")
    parser.add_argument(
        "--report-only", action="store_true", help="report the work dir's curves"
    )
    parser.add_argument("--worker", choices=("peft",), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict | None:
    args = _parse(argv)
    work = Path(args.work_dir)
    if args.worker == "peft":
        peft_curve_worker(args, work)
        return None
    spec_path = work / "prepared.json"
    spec = json.loads(spec_path.read_text()) if spec_path.exists() else None
    if not args.report_only and (not spec or spec["key"] != _prepare_key(args)):
        print(f"[{time.strftime('%H:%M:%S')}] preparing {work} ...", flush=True)
        spec = prepare(args, work)
    if spec is None:
        raise SystemExit(
            f"time_to_accuracy: error: --report-only needs {spec_path} from an "
            "earlier run; it does not exist"
        )
    if not args.report_only:
        for round_index in range(args.rounds):
            runs = [
                ("keras-prompt", _keras_command),
                ("PEFT", _peft_command),
            ][:: -1 if round_index % 2 else 1]
            for name, command in runs:
                out = work / f"{name}_round{round_index + 1}.jsonl"
                _run(command(args, work, out), f"{name} round {round_index + 1}")
    curves: dict[str, list[dict]] = {}
    headers: dict[str, dict] = {}
    for name in ("keras-prompt", "PEFT"):
        best = None
        for path in sorted(work.glob(f"{name}_round*.jsonl")):
            header, records = _read(path, spec)
            if not records or records[-1]["step"] < args.steps:
                print(f"    {path.name}: incomplete, not reported")
                continue
            # The least disturbed round: the fewest seconds for all steps.
            if (
                best is None
                or records[-1]["train_seconds"] < best[1][-1]["train_seconds"]
            ):
                best = (header, records)
        if best:
            headers[name], curves[name] = best
    if len(curves) < 2:
        raise SystemExit("time_to_accuracy: error: need a complete curve per system")
    summary = compare_curves(curves)
    summary.update(
        {
            "plateau": plateau_comparison(curves),
            "majority_baseline": spec["majority_baseline"],
            "held_out": f"{TASK} validation carve-out "
            f"({len(spec['held_out_labels'])} rows)",
            "checkpoint": str(args.model),
            "steps": args.steps,
            "every": args.every,
            "headers": headers,
            "seconds_per_step": {
                name: records[-1]["train_seconds"] / records[-1]["step"]
                for name, records in curves.items()
            },
            "curves": {
                name: [
                    {k: r.get(k) for k in ("step", "train_seconds", "accuracy", "auc")}
                    for r in records
                ]
                for name, records in curves.items()
            },
            "command": "python " + shlex.join([sys.argv[0], *(argv or sys.argv[1:])]),
        }
    )
    _print_summary(summary)
    if args.plot:
        plot(curves, summary, spec["majority_baseline"], args.plot)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return summary


def _print_summary(summary: dict) -> None:
    print(
        f"checkpoint {summary['checkpoint']}; held-out {summary['held_out']}; "
        f"majority class {summary['majority_baseline']:.2%}"
    )
    for name, final in summary["final_accuracy"].items():
        seconds = summary["seconds_to_target"][name]
        print(
            f"{name}: final accuracy {final:.2%} at step {summary['steps']}, "
            f"{summary['seconds_per_step'][name]:.3f} s/step, "
            f"{'never' if seconds is None else f'{seconds} s'} to "
            f"{summary['target_accuracy']:.2%}"
        )
    ratio = summary["ratio"]
    print(
        "time-to-accuracy ratio (PEFT / keras-prompt): "
        + ("n/a" if ratio is None else f"{ratio:.2f}x")
    )
    steps = summary["seconds_per_step"]
    print(
        "seconds per step over the run, PEFT / keras-prompt: "
        f"{steps['PEFT'] / steps['keras-prompt']:.2f}x"
    )
    plateau = summary["plateau"]
    print(
        f"plateau target {plateau['target_accuracy']:.2%} (lower mean of the last "
        f"{plateau['tail']} evaluations), reached by a {plateau['window']}-evaluation "
        f"mean at {plateau['seconds_to_target']}: ratio "
        + ("n/a" if plateau["ratio"] is None else f"{plateau['ratio']:.2f}x")
    )
    print(f"reproduce: {summary['command']}")


if __name__ == "__main__":
    main()
