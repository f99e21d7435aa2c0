"""Prompt-tuning training throughput: keras-prompt vs Hugging Face PEFT.

One run measures, each configuration in a fresh subprocess, one after another:

1. the dense-matmul peak of this CPU (TensorFlow oneDNN and PyTorch, fp32 and
   bf16; `benchmarks/matmul_peak.py`);
2. the fixed shape: t5-small geometry with random weights, batch 32, 128
   input tokens + a 20-vector prompt on the encoder, 4 target tokens, one
   training step (forward, backward to the prompt, optimizer). keras-prompt
   in float32 and mixed_bfloat16 (`model.fit`, default compile: Adafactor,
   masked token cross-entropy); PEFT 0.21 (`PromptTuningConfig(
   num_virtual_tokens=20, num_transformer_submodules=1)`) in fp32, bf16
   autocast and bf16 weights (`benchmarks/peft_worker.py`, in its own venv);
   examples/s, ratios, and achieved GFLOP/s against the measured bf16 peak;
3. real SST-2 training batches through each system's recommended input
   pipeline: keras-prompt's `train_prompt` (in-graph tokenization,
   length-bucketed batches); PEFT's documented padding (every input padded to
   128 tokens) and dynamic padding (each batch to its longest input);
4. peak RSS of prompt tuning vs model tuning (every backbone weight trainable)
   at the fixed shape, each in its own process.

Both sides train with T5's dropout (0.1) on, as `fit` / `model.train()` do.
Each timing is the best of `--repeats` runs of `--steps` steps after a warm-up
(tracing, oneDNN primitive creation), with the 1-minute load average beside it:
on a shared machine, compare rows measured at similar load.

The PEFT venv is created on first use under
`~/.cache/keras-prompt/peft-venv` (`python -m venv`, then
`pip install torch==2.13.0 transformers peft==0.21.*`).

    python benchmarks/train_throughput.py --data-dir ../shared/assets \
        [--steps 5] [--repeats 3] [--rounds 1] [--sst2-steps 20] [--skip-peft] \
        [--skip-sst2] [--skip-rss] [--keras-jit] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BATCH, INPUT_TOKENS, PROMPT, TARGET_TOKENS = 32, 128, 20, 4
DEFAULT_VENV = Path.home() / ".cache" / "keras-prompt" / "peft-venv"
PEFT_REQUIREMENTS = ("torch==2.13.0", "transformers", "peft==0.21.*", "sentencepiece")


# --------------------------------------------------------------------------
# FLOPs of one step (analytic).
# --------------------------------------------------------------------------
def train_step_flops(
    *,
    batch: int = BATCH,
    input_tokens: int = INPUT_TOKENS,
    prompt_length: int = PROMPT,
    target_tokens: int = TARGET_TOKENS,
    num_layers: int = 6,
    hidden_dim: int = 512,
    intermediate_dim: int = 2048,
    num_heads: int = 8,
    key_value_dim: int = 64,
    vocabulary_size: int = 32128,
    gated_ffn: bool = False,
) -> dict[str, float]:
    """Matmul FLOPs of one prompt-tuning step (2 per multiply-add).

    Forward: encoder (q, k, v, o and FFN projections over batch x (input +
    prompt) positions, QK^T and AV), decoder (its own projections over the
    target positions, plus the cross-attention key/value projections of every
    encoder position in every decoder layer), and the vocabulary logits.
    Backward: gradients with respect to activations only (the frozen weights
    get none): the same FLOPs as the forward pass for every projection and
    twice the forward for the two attention matmuls. Elementwise work is not
    counted. Model tuning would add the weight gradients (about one more
    forward pass of projections).
    """
    enc = batch * (input_tokens + prompt_length)
    dec = batch * target_tokens
    inner = num_heads * key_value_dim
    ffn = (3 if gated_ffn else 2) * 2 * hidden_dim * intermediate_dim
    enc_proj = num_layers * enc * (4 * 2 * hidden_dim * inner + ffn)
    enc_attn = (
        num_layers
        * 2
        * 2
        * batch
        * num_heads
        * key_value_dim
        * ((input_tokens + prompt_length) ** 2)
    )
    dec_proj = num_layers * dec * (6 * 2 * hidden_dim * inner + ffn)
    cross_kv = num_layers * enc * 2 * 2 * hidden_dim * inner
    dec_attn = (
        num_layers
        * 2
        * 2
        * batch
        * num_heads
        * key_value_dim
        * (
            target_tokens * target_tokens
            + target_tokens * (input_tokens + prompt_length)
        )
    )
    logits = 2 * dec * hidden_dim * vocabulary_size
    projections = enc_proj + dec_proj + cross_kv + logits
    attention = enc_attn + dec_attn
    forward = projections + attention
    backward = projections + 2 * attention
    return {
        "forward": forward,
        "backward": backward,
        "total": forward + backward,
        "cross_attention_kv": 2 * cross_kv,
        "model_tuning_extra": projections,
    }


# --------------------------------------------------------------------------
# Workers (each runs in its own process).
# --------------------------------------------------------------------------
def _keras_env() -> None:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def fixed_batch(seed: int = 0):
    """The fixed-shape batch: random token ids, no padding (also train_step.py's)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = {
        "encoder_token_ids": rng.integers(3, 32000, (BATCH, INPUT_TOKENS)).astype(
            "int32"
        ),
        "encoder_padding_mask": np.ones((BATCH, INPUT_TOKENS), "int32"),
        "decoder_token_ids": rng.integers(3, 32000, (BATCH, TARGET_TOKENS)).astype(
            "int32"
        ),
        "decoder_padding_mask": np.ones((BATCH, TARGET_TOKENS), "int32"),
    }
    y = rng.integers(3, 32000, (BATCH, TARGET_TOKENS)).astype("int32")
    return x, y, np.ones((BATCH, TARGET_TOKENS), "float32")


def _build_keras_model(policy: str, preprocessor=None):
    """PromptTunedT5 on a random t5-small backbone.

    `policy` is a Keras dtype policy for the whole model (`float32`,
    `mixed_bfloat16`), or `bfloat16`: the frozen backbone's weights stored in
    bfloat16 (as `from_preset(dtype="bfloat16")` gives), which is the same
    arithmetic as mixed_bfloat16 for prompt tuning (a frozen weight cast to
    bf16 every step equals one stored in bf16) minus the per-step casts, and
    the counterpart of PEFT's `bf16` row. The prompt, loss and optimizer state
    stay float32 in every case.
    """
    import keras

    import keras_prompt
    from keras_prompt.models.geometries import build_backbone

    if policy == "bfloat16":
        backbone = build_backbone("t5_small", dtype="bfloat16")
        return keras_prompt.PromptTunedT5(backbone, preprocessor, prompt_length=PROMPT)
    keras.config.set_dtype_policy(policy)
    try:
        return keras_prompt.PromptTunedT5(
            build_backbone("t5_small"), preprocessor, prompt_length=PROMPT
        )
    finally:
        keras.config.set_dtype_policy("float32")


def _cpu_seconds() -> float:
    """User + system CPU time of this process (all threads).

    Reported beside wall time because it is far less sensitive to other
    processes on a shared machine: it measures the work, wall time the wait.
    """
    times = os.times()
    return times.user + times.system


def _epoch_timer():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Wall time of each epoch (epoch 0 is the warm-up)."""

        def __init__(self):
            super().__init__()
            self.times: list[float] = []
            self.cpu_times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()
            self.cpu_start = _cpu_seconds()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)
            self.cpu_times.append(_cpu_seconds() - self.cpu_start)

    return EpochTimer()


def keras_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Times keras-prompt `fit` steps at the fixed shape or on SST-2."""
    _keras_env()
    import tensorflow as tf

    from keras_prompt.layers.speed_kernels import active_speed_kernels

    timer = _epoch_timer()
    epochs = args.repeats + 1
    if args.mode == "fixed":
        model = _build_keras_model(args.policy)
        model.compile(jit_compile=args.jit)
        dataset = tf.data.Dataset.from_tensors(fixed_batch()).repeat()
        model.fit(
            dataset,
            epochs=epochs,
            steps_per_epoch=args.steps,
            callbacks=[timer],
            verbose=0,
        )
    else:
        import keras_hub

        from keras_prompt.data import load_examples
        from keras_prompt.training import train_prompt

        tokenizer = keras_hub.models.T5Tokenizer(
            proto=str(Path(args.data_dir) / "t5" / "spiece.model")
        )
        preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
            tokenizer, encoder_sequence_length=INPUT_TOKENS
        )
        model = _build_keras_model(args.policy, preprocessor)
        model.compile(jit_compile=args.jit)
        examples = load_examples("sst2", "train", data_dir=args.data_dir)
        train_prompt(
            model,
            "sst2",
            examples,
            steps=args.steps * epochs,
            steps_per_epoch=args.steps,
            batch_size=BATCH,
            max_input_length=INPUT_TOKENS,
            callbacks=[timer],
            verbose=0,
        )
    per_step = [t / args.steps for t in timer.times[1:]]
    cpu_per_step = [t / args.steps for t in timer.cpu_times[1:]]
    return {
        "cpu_seconds_per_step": round(min(cpu_per_step), 4),
        "system": "keras-prompt",
        "mode": args.mode,
        "precision": (
            "bf16 backbone weights" if args.policy == "bfloat16" else args.policy
        )
        + (" + XLA" if args.jit else ""),
        "seconds_per_step": [round(s, 4) for s in per_step],
        "examples_per_second": round(BATCH / min(per_step), 2),
        "trainable_parameters": int(
            sum(w.numpy().size for w in model.trainable_weights)
        ),
        # PromptTunedT5's default (speed_kernels="auto"): what is measured.
        "speed_kernels": list(active_speed_kernels(model.backbone)),
        "versions": {"tensorflow": tf.__version__},
    }


def rss_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS of a few training steps: prompt tuning or model tuning."""
    _keras_env()
    import keras
    import tensorflow as tf

    model = _build_keras_model(args.policy)
    if args.tuning == "model":
        model.backbone.trainable = True
    optimizer = "auto" if args.optimizer == "adafactor" else keras.optimizers.AdamW()
    model.compile(optimizer=optimizer)
    dataset = tf.data.Dataset.from_tensors(fixed_batch()).repeat()
    model.fit(dataset, epochs=1, steps_per_epoch=args.steps, verbose=0)
    state = model.optimizer.variables
    return {
        "tuning": args.tuning,
        "optimizer": args.optimizer,
        "precision": args.policy,
        "trainable_parameters": int(
            sum(w.numpy().size for w in model.trainable_weights)
        ),
        "optimizer_state_numbers": int(sum(v.numpy().size for v in state)),
    }


# --------------------------------------------------------------------------
# Orchestration.
# --------------------------------------------------------------------------
def ensure_peft_venv(venv: Path) -> Path:
    """The venv's python, creating the venv and installing PEFT if needed."""
    python = venv / "bin" / "python"
    check = "import torch, transformers, peft, sentencepiece"
    if python.exists() and subprocess.run([python, "-c", check]).returncode == 0:
        return python
    print(f"creating PEFT venv at {venv} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [python, "-m", "pip", "install", "-q", *PEFT_REQUIREMENTS], check=True
    )
    return python


def run_worker(
    command: list[str], label: str, summary=None
) -> dict[str, Any] | None:
    """Runs one measurement process and returns its `RESULT` JSON.

    `summary(result)` gives the line printed for it (default: training rows).
    """
    print(f"[{time.strftime('%H:%M:%S')}] {label} ...", flush=True)
    proc = subprocess.run(command, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            result["label"] = label
            print(f"    {(summary or _summary)(result)}", flush=True)
            return result
    print(f"    FAILED ({proc.returncode}):\n{proc.stderr[-3000:]}", flush=True)
    return None


def _summary(result: dict[str, Any]) -> str:
    parts = []
    if "examples_per_second" in result:
        parts.append(f"{result['examples_per_second']} ex/s")
        parts.append(f"s/step {result['seconds_per_step']}")
        parts.append(f"CPU s/step {result.get('cpu_seconds_per_step')}")
    if "max_rss_mb" in result:
        parts.append(f"max RSS {result['max_rss_mb']} MB")
    parts.append(f"load {result.get('loadavg')}")
    return ", ".join(parts)


def _self(*extra: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *extra]


def _write_sst2_examples(data_dir: str, path: Path) -> int:
    """keras-prompt's SST-2 train split, as text, for the PEFT worker."""
    _keras_env()
    from keras_prompt.data import load_examples

    examples = load_examples("sst2", "train", data_dir=data_dir)
    with path.open("w", encoding="utf-8") as f:
        for e in examples:
            f.write(json.dumps({"inputs": e.inputs, "targets": e.targets}) + "\n")
    return len(examples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", default=str(HERE.parent.parent / "shared" / "assets")
    )
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sst2-steps", type=int, default=20)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="fixed-shape rounds (each runs every configuration; best is kept)",
    )
    parser.add_argument("--peft-venv", default=str(DEFAULT_VENV))
    parser.add_argument("--skip-peft", action="store_true")
    parser.add_argument("--skip-sst2", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--keras-jit", action="store_true", help="add XLA rows")
    parser.add_argument("--json", help="also write all results here")
    # Worker mode (internal).
    parser.add_argument("--worker", choices=("keras", "rss"))
    parser.add_argument("--mode", choices=("fixed", "sst2"), default="fixed")
    parser.add_argument("--policy", default="mixed_bfloat16")
    parser.add_argument("--jit", action="store_true")
    parser.add_argument("--tuning", choices=("prompt", "model"), default="prompt")
    parser.add_argument(
        "--optimizer", choices=("adafactor", "adamw"), default="adafactor"
    )
    args = parser.parse_args()

    if args.worker:
        result = (keras_worker if args.worker == "keras" else rss_worker)(args)
        result["loadavg"] = [round(x, 2) for x in os.getloadavg()]
        result["max_rss_mb"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        )
        print("RESULT " + json.dumps(result), flush=True)
        return

    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S")}
    config_json = Path(args.data_dir) / "t5" / "config_t5-small.json"
    spiece = Path(args.data_dir) / "t5" / "spiece.model"
    timing = ["--steps", str(args.steps), "--repeats", str(args.repeats)]
    peft_python = None if args.skip_peft else ensure_peft_venv(Path(args.peft_venv))

    # 1. Matmul peaks.
    peaks = [run_worker(_self_matmul(), "matmul peak, TensorFlow oneDNN")]
    if peft_python:
        peaks.append(
            run_worker(
                [str(peft_python), str(HERE / "peft_worker.py"), "--matmul-peak"],
                "matmul peak, PyTorch",
            )
        )
    results["matmul_peak"] = [p for p in peaks if p]
    peak_bf16 = max(
        (p["bfloat16"]["peak"] for p in results["matmul_peak"]), default=None
    )
    peak_fp32 = max(
        (p["float32"]["peak"] for p in results["matmul_peak"]), default=None
    )

    # 2. Fixed shape: every configuration once per round, rounds interleaved
    # so that load swings on a shared machine hit all configurations alike.
    commands = []
    for policy in ("float32", "mixed_bfloat16", "bfloat16"):
        for jit in (False, True) if args.keras_jit else (False,):
            command = _self("--worker", "keras", "--policy", policy, *timing)
            label = f"keras-prompt fixed {policy}{' XLA' if jit else ''}"
            commands.append((command + (["--jit"] if jit else []), label))
    if peft_python:
        for precision in ("fp32", "bf16-autocast", "bf16"):
            command = [str(peft_python), str(HERE / "peft_worker.py")]
            command += ["--config", str(config_json), "--precision", precision]
            commands.append((command + timing, f"PEFT fixed {precision}"))
    runs = []
    for _ in range(args.rounds):
        runs += [run_worker(command, label) for command, label in commands]
    results["fixed_runs"] = [r for r in runs if r]
    results["fixed"] = _best_per_label(results["fixed_runs"])

    # 3. SST-2 batches.
    sst2 = []
    if not args.skip_sst2:
        sst2_timing = ["--steps", str(args.sst2_steps), "--repeats", str(args.repeats)]
        for policy in ("mixed_bfloat16", "bfloat16", "float32"):
            command = _self("--worker", "keras", "--mode", "sst2", "--policy", policy)
            command += ["--data-dir", args.data_dir, *sst2_timing]
            sst2.append(run_worker(command, f"keras-prompt SST-2 {policy} (bucketed)"))
        if peft_python:
            # PEFT in its fastest precision at the fixed shape (its best config).
            peft_fixed = _best(results["fixed"], "peft")
            precision = peft_fixed["precision"] if peft_fixed else "bf16-autocast"
            with tempfile.TemporaryDirectory(prefix="sst2_peft_") as tmp:
                examples = Path(tmp) / "sst2_train.jsonl"
                _write_sst2_examples(args.data_dir, examples)
                for padding in ("max_length", "longest"):
                    command = [str(peft_python), str(HERE / "peft_worker.py")]
                    command += ["--config", str(config_json), "--mode", "sst2"]
                    command += ["--precision", precision, "--padding", padding]
                    command += ["--examples", str(examples), "--spiece", str(spiece)]
                    label = f"PEFT SST-2 {precision} padding={padding}"
                    sst2.append(run_worker(command + sst2_timing, label))
    results["sst2"] = [r for r in sst2 if r]

    # 4. Peak RSS.
    rss = []
    if not args.skip_rss:
        for tuning, optimizer in (
            ("prompt", "adafactor"),
            ("model", "adafactor"),
            ("model", "adamw"),
        ):
            rss.append(
                run_worker(
                    _self(
                        "--worker",
                        "rss",
                        "--tuning",
                        tuning,
                        "--optimizer",
                        optimizer,
                        "--steps",
                        "3",
                    ),
                    f"peak RSS, {tuning} tuning, {optimizer}, mixed_bfloat16",
                )
            )
    results["rss"] = [r for r in rss if r]

    flops = train_step_flops()
    results["flops_per_step"] = flops
    results["peak_gflops"] = {"bfloat16": peak_bf16, "float32": peak_fp32}
    _report(results, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def _self_matmul() -> list[str]:
    return [sys.executable, str(HERE / "matmul_peak.py"), "--json"]


def _best_per_label(rows: list[dict]) -> list[dict]:
    """The fastest run of each configuration, in first-seen order."""
    best: dict[str, dict] = {}
    for row in rows:
        kept = best.get(row["label"])
        if kept is None or row["examples_per_second"] > kept["examples_per_second"]:
            best[row["label"]] = row
    return list(best.values())


def _best(rows: list[dict], system: str, mode: str = "fixed", **match) -> dict | None:
    rows = [
        r
        for r in rows
        if r["system"] == system
        and r["mode"] == mode
        and all(r.get(k) == v for k, v in match.items())
    ]
    return max(rows, key=lambda r: r["examples_per_second"], default=None)


def _report(results: dict[str, Any], args: argparse.Namespace) -> None:
    flops = results["flops_per_step"]["total"]
    peak = results["peak_gflops"]["bfloat16"]
    print("\n## Matmul peak (GFLOP/s, best shape)")
    for p in results["matmul_peak"]:
        print(
            f"- {p['framework']}: fp32 {p['float32']['peak']}, bf16 "
            f"{p['bfloat16']['peak']} (load {p['loadavg']})"
        )
    print(
        f"\n## Fixed shape (t5-small, batch {BATCH}, {INPUT_TOKENS}+{PROMPT} "
        f"encoder, {TARGET_TOKENS} target tokens; {flops / 1e9:.0f} GFLOP/step)"
    )
    print(
        "| system | precision | examples/s | s/step (best) | CPU s/step | GFLOP/s | "
        "% of bf16 peak | load |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results["fixed"]:
        step = BATCH / r["examples_per_second"]
        gflops = flops / step / 1e9
        share = f"{100 * gflops / peak:.0f}%" if peak else "-"
        print(
            f"| {r['system']} | {r['precision']} | {r['examples_per_second']:.1f} | "
            f"{step:.3f} | {r.get('cpu_seconds_per_step')} | {gflops:.0f} | {share} | "
            f"{r['loadavg'][0]} |"
        )
    keras_best = _best(results["fixed"], "keras-prompt")
    peft_best = _best(results["fixed"], "peft")
    if keras_best and peft_best:
        ratio = keras_best["examples_per_second"] / peft_best["examples_per_second"]
        cpu_ratio = (
            peft_best["cpu_seconds_per_step"] / keras_best["cpu_seconds_per_step"]
        )
        print(
            f"\nbest vs best: keras-prompt {keras_best['precision']} / PEFT "
            f"{peft_best['precision']} = {ratio:.2f}x examples/s (goal >= 2x); "
            f"CPU seconds per step, PEFT / keras-prompt: {cpu_ratio:.2f}x"
        )
        for index, (mine, theirs, loads) in enumerate(_round_bests(results), 1):
            print(
                f"round {index}: {mine:.1f} / {theirs:.1f} = {mine / theirs:.2f}x "
                f"(loads {min(loads)}-{max(loads)})"
            )
    if results["sst2"]:
        print("\n## Real SST-2 training batches (batch 32, max 128 input tokens)")
        print(
            "| system | precision | input pipeline | examples/s | CPU s/step | load |"
        )
        print("|---|---|---|---|---|---|")
        for r in results["sst2"]:
            pipeline = (
                "train_prompt: length buckets"
                if r["system"] == "keras-prompt"
                else f"padding={r['padding']}"
            )
            print(
                f"| {r['system']} | {r['precision']} | {pipeline} | "
                f"{r['examples_per_second']:.1f} | {r.get('cpu_seconds_per_step')} | "
                f"{r['loadavg'][0]} |"
            )
        keras_sst2 = _best(results["sst2"], "keras-prompt", "sst2")
        for padding in ("max_length", "longest"):
            peft_sst2 = _best(results["sst2"], "peft", "sst2", padding=padding)
            if keras_sst2 and peft_sst2:
                ratio = (
                    keras_sst2["examples_per_second"] / peft_sst2["examples_per_second"]
                )
                print(
                    f"SST-2: keras-prompt best / PEFT best with padding={padding}: "
                    f"{ratio:.2f}x"
                )
    if results["rss"]:
        print("\n## Peak RSS at the fixed shape (mixed_bfloat16, 3 steps)")
        print(
            "| tuning | optimizer | trainable params | optimizer state numbers | "
            "peak RSS MB |"
        )
        print("|---|---|---|---|---|")
        for r in results["rss"]:
            print(
                f"| {r['tuning']} | {r['optimizer']} | {r['trainable_parameters']:,} | "
                f"{r['optimizer_state_numbers']:,} | {r['max_rss_mb']:.0f} |"
            )
    print("\nreproduce: python " + shlex.join(sys.argv))


def _round_bests(results: dict[str, Any]) -> list[tuple[float, float, list]]:
    """Per round: keras-prompt's and PEFT's best fixed-shape examples/s and
    the 1-minute loads of that round's rows (rounds run every configuration
    once, in order)."""
    rounds: list[list[dict]] = []
    for row in results["fixed_runs"]:
        if not rounds or row["label"] in {r["label"] for r in rounds[-1]}:
            rounds.append([])
        rounds[-1].append(row)
    out = []
    for rows in rounds:
        rates = {
            system: [r["examples_per_second"] for r in rows if r["system"] == system]
            for system in ("keras-prompt", "peft")
        }
        if all(rates.values()):
            loads = [r["loadavg"][0] for r in rows]
            out.append((max(rates["keras-prompt"]), max(rates["peft"]), loads))
    return out


if __name__ == "__main__":
    main()
