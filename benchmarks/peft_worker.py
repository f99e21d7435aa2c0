"""The Hugging Face PEFT side of `benchmarks/train_throughput.py`.

Runs in its own virtual environment (PyTorch CPU, transformers, peft 0.21;
`train_throughput.py` creates it), so nothing here imports TensorFlow or
keras-prompt. It prompt-tunes a randomly initialised t5-small-geometry
`T5ForConditionalGeneration` the way PEFT documents it
(`examples/conditional_generation/peft_prompt_tuning_seq2seq.ipynb`):
`get_peft_model` with a `PromptTuningConfig`, `model(**batch).loss`,
`loss.backward()`, `optimizer.step()`, with `num_transformer_submodules=1` so
the prompt goes on the encoder only, as keras-prompt's does. The model is in
`train()` mode, so T5's dropout (0.1) runs, as it does in keras-prompt's
`fit`.

Precisions: `fp32`; `bf16-autocast` (`torch.autocast("cpu", torch.bfloat16)`
around the forward pass, PyTorch's recommended CPU mixed precision, fp32
weights); `bf16` (the frozen base model's weights cast to bfloat16 and the
prompt kept in float32; no autocast).

Prints one line `RESULT {json}`.

    python peft_worker.py --config config_t5-small.json --mode fixed \
        --precision bf16-autocast --steps 5 --repeats 3
    python peft_worker.py --matmul-peak
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import time

import torch

BATCH, INPUT_TOKENS, PROMPT, TARGET_TOKENS = 32, 128, 20, 4


def build_model(config_path: str, precision: str, prompt_length: int):
    """PEFT prompt tuning on a random-weight T5 built from an HF config.json."""
    from peft import PromptTuningConfig, TaskType, get_peft_model
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    base = T5ForConditionalGeneration(T5Config.from_json_file(config_path))
    if precision == "bf16":
        base = base.to(torch.bfloat16)
    peft_config = PromptTuningConfig(
        task_type=TaskType.SEQ_2_SEQ_LM,
        num_virtual_tokens=prompt_length,
        num_transformer_submodules=1,
    )
    model = get_peft_model(base, peft_config)
    if precision == "bf16":
        # The prompt (the only trained weight) and its optimizer state stay fp32.
        model.prompt_encoder.float()
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    # PEFT's example uses AdamW; the optimizer touches only the 20 x 512 prompt.
    optimizer = torch.optim.AdamW(trainable, lr=0.3)
    return model, optimizer, trainable


def autocast(precision: str):
    if precision == "bf16-autocast":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(model, optimizer, batch: dict, precision: str) -> float:
    with autocast(precision):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def fixed_batches():
    """One random batch at the benchmark's fixed shape, repeated forever."""
    generator = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(
            3, 32000, (BATCH, INPUT_TOKENS), generator=generator
        ),
        "attention_mask": torch.ones(BATCH, INPUT_TOKENS, dtype=torch.long),
        "labels": torch.randint(3, 32000, (BATCH, TARGET_TOKENS), generator=generator),
    }
    while True:
        yield batch


def sst2_batches(examples_path: str, spiece: str, padding: str, batch_size: int):
    """SST-2 batches as PEFT's seq2seq prompt-tuning example builds them.

    The examples (already in T5's `sst2 sentence: ...` / `negative|positive`
    form, written by train_throughput.py from keras-prompt's task definition)
    are tokenized up front, as the example's `dataset.map` does, then served
    shuffled. `padding="max_length"` is the example's (inputs to 128 tokens,
    labels to the longest verbalizer, pad labels = -100, `default_data_collator`);
    `padding="longest"` pads each batch to its longest input instead (dynamic
    padding, PEFT's fastest option short of writing a bucketing sampler).
    """
    from transformers import T5Tokenizer

    tokenizer = T5Tokenizer(vocab_file=spiece, legacy=False)
    with open(examples_path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    inputs = [r["inputs"] for r in rows]
    targets = [r["targets"] for r in rows]
    target_max = max(len(tokenizer(t)["input_ids"]) for t in set(targets))
    encoded = tokenizer(inputs, max_length=INPUT_TOKENS, truncation=True)["input_ids"]
    labels = tokenizer(targets, max_length=target_max, truncation=True)["input_ids"]
    order = list(range(len(rows)))
    rng = random.Random(0)
    pad = tokenizer.pad_token_id
    while True:
        rng.shuffle(order)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            picked = order[start : start + batch_size]
            width = (
                INPUT_TOKENS
                if padding == "max_length"
                else max(len(encoded[i]) for i in picked)
            )
            ids = torch.full((batch_size, width), pad, dtype=torch.long)
            mask = torch.zeros((batch_size, width), dtype=torch.long)
            lab = torch.full((batch_size, target_max), -100, dtype=torch.long)
            for row, i in enumerate(picked):
                ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
                mask[row, : len(encoded[i])] = 1
                lab[row, : len(labels[i])] = torch.tensor(labels[i])
            yield {"input_ids": ids, "attention_mask": mask, "labels": lab}


def time_steps(model, optimizer, batches, precision, steps, repeats, warmup):
    """Best-of-`repeats` seconds per step over `steps` consecutive batches."""
    for _ in range(warmup):
        train_step(model, optimizer, next(batches), precision)
    per_step, cpu_per_step, examples = [], [], []
    for _ in range(repeats):
        chunk = [next(batches) for _ in range(steps)]
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        for batch in chunk:
            train_step(model, optimizer, batch, precision)
        per_step.append((time.perf_counter() - start) / steps)
        cpu_per_step.append((_cpu_seconds() - cpu_start) / steps)
        examples.append(sum(int(b["input_ids"].shape[0]) for b in chunk) / steps)
    best = min(range(repeats), key=per_step.__getitem__)
    return per_step, examples[best] / per_step[best], min(cpu_per_step)


def _cpu_seconds() -> float:
    """User + system CPU time of this process (all threads): the work done,
    much less sensitive than wall time to other processes on a shared machine."""
    times = os.times()
    return times.user + times.system


def matmul_peak() -> dict:
    """PyTorch's best dense-matmul GFLOP/s (same shapes as matmul_peak.py)."""
    shapes = (
        (4096, 4096, 4096),
        (4736, 512, 2048),
        (4736, 2048, 512),
        (4736, 512, 512),
    )
    out: dict = {"framework": f"torch {torch.__version__}"}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        per_shape = {}
        for m, k, n in shapes:
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            torch.matmul(a, b)
            best = float("inf")
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(3):
                    torch.matmul(a, b)
                best = min(best, (time.perf_counter() - start) / 3)
            per_shape[f"{m}x{k}x{n}"] = round(2 * m * k * n / best / 1e9, 1)
        out[name] = {"peak": max(per_shape.values()), "shapes": per_shape}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="HF T5 config.json (random weights)")
    parser.add_argument("--mode", choices=("fixed", "sst2"), default="fixed")
    parser.add_argument(
        "--precision", choices=("fp32", "bf16-autocast", "bf16"), default="fp32"
    )
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--examples", help="SST-2 examples as JSON lines")
    parser.add_argument("--spiece", help="T5 SentencePiece model")
    parser.add_argument("--padding", choices=("max_length", "longest"))
    parser.add_argument("--matmul-peak", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    if args.matmul_peak:
        result = matmul_peak()
    else:
        model, optimizer, trainable = build_model(args.config, args.precision, PROMPT)
        if args.mode == "fixed":
            batches = fixed_batches()
        else:
            batches = sst2_batches(args.examples, args.spiece, args.padding, BATCH)
        per_step, rate, cpu = time_steps(
            model,
            optimizer,
            batches,
            args.precision,
            args.steps,
            args.repeats,
            args.warmup,
        )
        result = {
            "system": "peft",
            "mode": args.mode,
            "precision": args.precision,
            "padding": args.padding,
            "seconds_per_step": [round(s, 4) for s in per_step],
            "examples_per_second": round(rate, 2),
            "cpu_seconds_per_step": round(cpu, 4),
            "trainable_parameters": sum(p.numel() for p in trainable),
            "optimizer_state_tensors": sum(len(s) for s in optimizer.state.values()),
            "versions": _versions(),
        }
    result["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    result["max_rss_mb"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    print("RESULT " + json.dumps(result), flush=True)


def _versions() -> dict:
    import peft
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    main()
