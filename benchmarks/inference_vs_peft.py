"""Inference speed and agreement: keras-prompt vs Hugging Face PEFT, same weights.

Three sections (issue 16, items 2-4), each configuration in its own fresh
process, rounds interleaved (every configuration once per round), each
figure the best of `--repeats` timed passes after one warm-up pass, the
1-minute load average recorded per row:

1. **Rank classification**: the 872 held-out SST-2 rows
   (`load_examples(get_task("sst2"), "validation")`), 2 candidates
   (`negative`, `positive`), batches of `--batch-size`:
   - keras-prompt `PromptTunedT5.score`;
   - the export's `classify` (shared candidates) and `by_task` (the bank's
     `sst2` prompt and verbalizers; it also decodes, see the report),
     loaded with `tf.saved_model.load` in a process that refuses keras,
     keras-hub and keras-prompt imports (what TF Serving has);
   - transformers + PEFT 0.21 (`PeftModel.from_pretrained` on the
     `export-hf` checkpoint, encoder-only prompt) computing the same summed
     log-likelihoods (`<pad> candidate </s>` teacher-forced, log-softmax over
     the vocabulary): `per-candidate` (each candidate a row of
     `peft_model(...)`, the encoder run per candidate) and `shared-encoder`
     (the prompted encoder once per example via `get_prompt` /
     `word_embeddings`, as PEFT's own forward builds it, its output reused by
     both candidates, as keras-prompt does).
   Scores must agree within `--atol` (1e-3) with keras-prompt float32.
2. **Greedy generation**, `--new-tokens` (16) new tokens, batches of 32
   (`--generate-rows` texts): keras-prompt `generate` (keras-hub's cached
   loop, greedy sampler), the export's `serving_default`, and
   `PeftModel.generate(max_new_tokens=16, do_sample=False, num_beams=1)`;
   agreement = share of texts equal to keras-prompt float32's.
3. **Mixed-task serving** through the export (float32): one batch with the
   prompts of 4 tasks (SST-2, MRPC, RTE, BoolQ validation inputs, a quarter
   each) vs the same texts all with the SST-2 prompt, at batch 32 and 128,
   through `serving_default` (per-row prompts) and `by_task` (per-row task
   names); goal mixed >= 0.95x single-task.

Every system runs in float32 and in bfloat16 weights (keras-prompt
`from_preset(dtype="bfloat16")` and an export of that model; PEFT: the base
model cast to bfloat16, prompt cast by PEFT); the report compares each
system's best (`by_task`, which also decodes, runs in float32 only). Each
PEFT process times every PyTorch thread count of `--peft-threads` (default 1
and all cores, interleaved) and keeps the best: on a busy machine PyTorch's
OpenMP pool can be several times slower with 2 threads than with 1.

The prompt is not trained (speed and agreement do not need it): class-label
initialisation (`keras_prompt.initializers.by_name("class_labels", ...)`,
seed `--seed`; `--prompt-init` picks another of the paper's initialisations:
generated texts depend on it), written as a PEFT adapter with
`keras_prompt.peft_prompts.save_peft_prompt`; the backbone is exported with
`keras_prompt.checkpoints.export_hf_checkpoint`. Both systems read those
files. The work directory is reused while the preset file and settings are
unchanged.

    KERAS_BACKEND=tensorflow python benchmarks/inference_vs_peft.py \
        [--model PRESET] [--data-dir ../shared/assets] [--rounds 2] [--repeats 3]

Two full rounds take ~22 minutes on 2 cores. `--max-minutes` starts no round
that would end past the limit; a later run can add rounds of a subset
(`--precisions bfloat16 --skip-by-task ...`) with `--merge earlier.json`,
and the report then takes each configuration's best over all rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "assets"
MIXED_TASKS = ("sst2", "mrpc", "rte", "boolq")
PRECISIONS = ("float32", "bfloat16")
PEFT_VARIANTS = ("shared-encoder", "per-candidate")
SECTIONS = ("score", "generate", "mixed")
PREPARE_VERSION = 1


# ----------------------------------------------------------------------
# Timing and agreement (used by the orchestrator and the tests).
# ----------------------------------------------------------------------
def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def best_of(fn, repeats: int):
    """`fn()` once to warm up, then `repeats` timed calls.

    Returns `(last output, wall seconds per call, CPU seconds per call)`.
    """
    output = fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        output = fn()
        wall.append(time.perf_counter() - start)
        cpu.append(_cpu_seconds() - cpu_start)
    return output, wall, cpu


def best_over_settings(fn, settings, apply, repeats: int):
    """`best_of` for each setting (e.g. a thread count), interleaved.

    Every setting is warmed up, then each repeat times every setting once, so
    load swings hit all alike. Returns `(output, setting, wall, cpu, best
    wall per setting)` for the setting with the fastest call.
    """
    for setting in settings:
        apply(setting)
        output = fn()
    wall = {setting: [] for setting in settings}
    cpu = {setting: [] for setting in settings}
    for _ in range(repeats):
        for setting in settings:
            apply(setting)
            start, cpu_start = time.perf_counter(), _cpu_seconds()
            output = fn()
            wall[setting].append(time.perf_counter() - start)
            cpu[setting].append(_cpu_seconds() - cpu_start)
    best = min(settings, key=lambda setting: min(wall[setting]))
    per_setting = {str(k): round(min(v), 4) for k, v in wall.items()}
    return output, best, wall[best], cpu[best], per_setting


def compare_scores(reference, scores, atol: float = 1e-3) -> dict[str, Any]:
    """Max abs difference and argmax agreement of two `(B, C)` score arrays."""
    reference = np.asarray(reference, "float64")
    scores = np.asarray(scores, "float64")
    if reference.shape != scores.shape:
        raise ValueError(f"score shapes differ: {reference.shape} vs {scores.shape}")
    difference = float(np.abs(reference - scores).max())
    return {
        "max_abs_diff": difference,
        "within_atol": bool(difference <= atol),
        "label_agreement": float(
            np.mean(reference.argmax(-1) == scores.argmax(-1))
        ),
    }


def text_agreement(reference, texts) -> float:
    """Share of generated texts equal to the reference's.

    Whitespace is normalised, and the unknown token's renderings are dropped:
    SentencePiece detokenizes `<unk>` as `⁇` (keras-prompt, the export),
    transformers' `skip_special_tokens=True` drops it.
    """
    if len(reference) != len(texts):
        raise ValueError(f"{len(reference)} reference texts vs {len(texts)}")

    def norm(text):
        return " ".join(str(text).replace("\u2047", " ").split())

    same = [norm(a) == norm(b) for a, b in zip(reference, texts)]
    return float(np.mean(same)) if same else 1.0


def _batches(items, size):
    return [items[i : i + size] for i in range(0, len(items), size)]


# ----------------------------------------------------------------------
# keras-prompt (in-process helpers; the worker wraps them).
# ----------------------------------------------------------------------
def keras_model(preset, adapter, precision, max_input_length, new_tokens):
    """`PromptTunedT5.from_preset` with the adapter's prompt, greedy sampler."""
    from keras_prompt import PromptTunedT5
    from keras_prompt.peft_prompts import load_peft_prompt

    prompt, _ = load_peft_prompt(adapter)
    model = PromptTunedT5.from_preset(
        preset,
        dtype=None if precision == "float32" else precision,
        prompt_length=prompt.shape[0],
        encoder_sequence_length=max_input_length,
        # keras-hub counts the decoder's start token: N new tokens need N + 1.
        decoder_sequence_length=new_tokens + 1,
    )
    model.set_prompt(prompt)
    model.compile(sampler="greedy")
    return model


def keras_score(model, texts, candidates, batch_size):
    return model.score(texts, list(candidates), batch_size=batch_size)


def keras_generate(model, texts, batch_size, new_tokens):
    out = []
    for batch in _batches(list(texts), batch_size):
        out += [str(t) for t in model.generate(batch, max_length=new_tokens + 1)]
    return out


# ----------------------------------------------------------------------
# transformers + PEFT (no TensorFlow needed).
# ----------------------------------------------------------------------
def peft_model(hf_dir, adapter, precision):
    """`PeftModel.from_pretrained` on the exported checkpoint, eval mode."""
    import peft
    import torch
    import transformers

    base = transformers.T5ForConditionalGeneration.from_pretrained(hf_dir)
    if precision == "bfloat16":
        base = base.to(torch.bfloat16)
    model = peft.PeftModel.from_pretrained(base, adapter).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    return model, tokenizer


def _encode_texts(tokenizer, batch, max_input_length):
    """PEFT-side encoder inputs: dynamic padding, cut at `max_input_length`."""
    return tokenizer(
        batch,
        padding="longest",
        truncation=True,
        max_length=max_input_length,
        return_tensors="pt",
    )


def peft_score(
    model, tokenizer, texts, candidates, batch_size, max_input_length, variant
):
    """Summed log-probabilities `(B, C)` of `candidates </s>` given each text."""
    import torch

    num = len(candidates)
    labels = tokenizer(list(candidates), padding="longest", return_tensors="pt")
    target, target_mask = labels.input_ids, labels.attention_mask
    start = torch.full((num, 1), model.config.decoder_start_token_id)
    decoder_ids = torch.cat([start, target[:, :-1]], dim=1)
    decoder_mask = torch.cat([torch.ones_like(start), target_mask[:, :-1]], dim=1)
    base = model.get_base_model()
    prompt_length = model.active_peft_config.num_virtual_tokens
    out = []
    with torch.inference_mode():
        for batch in _batches(list(texts), batch_size):
            enc = _encode_texts(tokenizer, batch, max_input_length)
            rows = len(batch)
            repeat = {
                "decoder_input_ids": decoder_ids.repeat(rows, 1),
                "decoder_attention_mask": decoder_mask.repeat(rows, 1),
            }
            if variant == "per-candidate":
                logits = model(
                    input_ids=enc.input_ids.repeat_interleave(num, 0),
                    attention_mask=enc.attention_mask.repeat_interleave(num, 0),
                    **repeat,
                ).logits
            else:
                # PEFT's forward, with the prompted encoder run once per text.
                embeds = model.word_embeddings(enc.input_ids)
                prompts = model.get_prompt(batch_size=rows).to(embeds.dtype)
                mask = torch.cat(
                    [
                        torch.ones(rows, prompt_length, dtype=enc.attention_mask.dtype),
                        enc.attention_mask,
                    ],
                    dim=1,
                )
                hidden = base.get_encoder()(
                    inputs_embeds=torch.cat([prompts, embeds], dim=1),
                    attention_mask=mask,
                ).last_hidden_state
                logits = base(
                    encoder_outputs=(hidden.repeat_interleave(num, 0),),
                    attention_mask=mask.repeat_interleave(num, 0),
                    **repeat,
                ).logits
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            picked = log_probs.gather(-1, target.repeat(rows, 1)[..., None])[..., 0]
            summed = (picked * target_mask.repeat(rows, 1)).sum(-1)
            out.append(summed.view(rows, num).numpy())
    return np.concatenate(out).astype("float32")


def peft_generate(model, tokenizer, texts, batch_size, max_input_length, new_tokens):
    import torch

    out = []
    with torch.inference_mode():
        for batch in _batches(list(texts), batch_size):
            enc = _encode_texts(tokenizer, batch, max_input_length)
            ids = model.generate(
                input_ids=enc.input_ids,
                attention_mask=enc.attention_mask,
                max_new_tokens=new_tokens,
                do_sample=False,
                num_beams=1,
            )
            out += tokenizer.batch_decode(ids, skip_special_tokens=True)
    return out


# ----------------------------------------------------------------------
# Workers (each in its own process).
# ----------------------------------------------------------------------
def _spec(work: Path) -> dict:
    return json.loads((work / "prepared.json").read_text())


def prepare(args, work: Path) -> dict:
    """The prompt (PEFT adapter), HF checkpoint, exports and texts."""
    from keras_prompt import PromptTunedT5
    from keras_prompt.checkpoints import export_hf_checkpoint
    from keras_prompt.data import get_task, load_examples
    from keras_prompt.initializers import bind_to_model, by_name
    from keras_prompt.peft_prompts import save_peft_prompt
    from keras_prompt.serving import PromptBank, export_saved_model

    def load(precision):
        return PromptTunedT5.from_preset(
            args.model,
            dtype=None if precision == "float32" else precision,
            prompt_length=args.prompt_length,
            encoder_sequence_length=args.max_input_length,
            decoder_sequence_length=args.new_tokens,
        )

    model = load("float32")
    shape = model.prompt_shape
    prompts = {}
    for index, name in enumerate(MIXED_TASKS):
        initializer = bind_to_model(
            by_name(
                args.prompt_init, get_task(name).verbalizers, seed=args.seed + index
            ),
            model.backbone.token_embedding.embeddings,
            model.preprocessor.tokenizer,
        )
        prompts[name] = np.asarray(initializer(shape), "float32")
        (work / "prompts").mkdir(parents=True, exist_ok=True)
        np.save(work / "prompts" / f"{name}.npy", prompts[name])
    sst2 = get_task("sst2")
    model.set_prompt(prompts["sst2"])
    save_peft_prompt(
        prompts["sst2"],
        work / "adapter",
        model=model,
        metadata=model.prompt_metadata(task="sst2", verbalizers=list(sst2.verbalizers)),
    )
    export_hf_checkpoint(args.model, work / "hf")
    bank = PromptBank.from_arrays(prompts)
    for precision in PRECISIONS:
        if precision != "float32":
            model = load(precision)
            model.set_prompt(prompts["sst2"])
        export_saved_model(
            model,
            work / f"export_{precision}",
            version=1,
            prompt_bank=bank,
            max_input_length=args.max_input_length,
            max_decode_length=args.new_tokens,
            warmup=False,
            overwrite=True,
        )
    examples = load_examples(sst2, "validation", data_dir=args.data_dir)
    per_task = max(args.mixed_batches) // len(MIXED_TASKS)
    mixed = {
        name: [
            e.inputs
            for e in load_examples(name, "validation", data_dir=args.data_dir)[
                :per_task
            ]
        ]
        for name in MIXED_TASKS
    }
    return {
        "sst2_texts": [e.inputs for e in examples],
        "sst2_labels": [int(e.label) for e in examples],
        "verbalizers": list(sst2.verbalizers),
        "mixed_texts": mixed,
        "prompt_shape": list(shape),
    }


def keras_worker(args, work: Path) -> dict:
    args.variant = f"{args.section}()"
    spec = _spec(work)
    model = keras_model(
        args.model, work / "adapter", args.precision, args.max_input_length,
        args.new_tokens,
    )
    if args.section == "score":
        texts = _rows(spec["sst2_texts"], args.score_rows)
        output, wall, cpu = best_of(
            lambda: keras_score(model, texts, spec["verbalizers"], args.batch_size),
            args.repeats,
        )
    else:
        texts = spec["sst2_texts"][: args.generate_rows]
        output, wall, cpu = best_of(
            lambda: keras_generate(model, texts, args.batch_size, args.new_tokens),
            args.repeats,
        )
    return _result(args, work, "keras-prompt", texts, output, wall, cpu)


def export_worker(args, work: Path) -> dict:
    sys.path.insert(0, str(HERE))
    from serving_load import tf_serving_runtime

    tf = tf_serving_runtime()
    spec = _spec(work)
    loaded = tf.saved_model.load(str(work / f"export_{args.precision}" / "1"))
    prompt = np.load(work / "prompts" / "sst2.npy")

    def strings(values):
        return tf.constant([v.encode("utf-8") for v in values])

    def prompts_for(rows):
        return tf.constant(np.broadcast_to(prompt, (rows, *prompt.shape)))

    if args.section == "mixed":
        return _mixed(args, work, tf, loaded, spec)
    if args.section == "score":
        texts = _rows(spec["sst2_texts"], args.score_rows)
        batches = _batches(texts, args.batch_size)
        if args.signature == "classify":
            classify = loaded.signatures["classify"]
            candidates = strings(spec["verbalizers"])

            def run():
                return np.concatenate(
                    [
                        classify(
                            text=strings(b),
                            prompt=prompts_for(len(b)),
                            candidates=candidates,
                        )["scores"].numpy()
                        for b in batches
                    ]
                )
        else:
            by_task = loaded.signatures["by_task"]

            def run():
                return np.concatenate(
                    [
                        by_task(text=strings(b), task=strings(["sst2"] * len(b)))[
                            "label"
                        ].numpy()
                        for b in batches
                    ]
                )
    else:
        texts = spec["sst2_texts"][: args.generate_rows]
        batches = _batches(texts, args.batch_size)
        serve = loaded.signatures["serving_default"]

        def run():
            out = []
            for b in batches:
                result = serve(text=strings(b), prompt=prompts_for(len(b)))
                out += [t.decode("utf-8") for t in result["output_text"].numpy()]
            return out

    output, wall, cpu = best_of(run, args.repeats)
    result = _result(args, work, "export", texts, output, wall, cpu)
    result["keras_modules_loaded"] = _keras_modules()
    return result


def _keras_modules() -> list[str]:
    """keras / keras-hub / keras-prompt modules in this process (must be none)."""
    from serving_load import _BLOCKED

    return sorted(m for m in sys.modules if m.split(".")[0] in _BLOCKED)


def _mixed(args, work, tf, loaded, spec) -> dict:
    """Mixed-task or single-task batches through `serving_default` and `by_task`."""
    per_task = args.batch // len(MIXED_TASKS)
    texts, tasks = [], []
    for name in MIXED_TASKS:
        texts += spec["mixed_texts"][name][:per_task]
        tasks += [name] * per_task
    if args.mix == "single":
        tasks = [MIXED_TASKS[0]] * len(texts)
    bank = {name: np.load(work / "prompts" / f"{name}.npy") for name in MIXED_TASKS}
    text = tf.constant([t.encode("utf-8") for t in texts])
    task = tf.constant([t.encode("utf-8") for t in tasks])
    prompt = tf.constant(np.stack([bank[t] for t in tasks]))
    serve = loaded.signatures["serving_default"]
    by_task = loaded.signatures["by_task"]
    calls = {
        "serving_default": lambda: serve(text=text, prompt=prompt)["output_text"],
        "by_task": lambda: by_task(text=text, task=task)["output_text"],
    }
    for call in calls.values():
        call()  # warm-up
    wall = {name: [] for name in calls}
    outputs = {}
    for _ in range(args.repeats):  # the two signatures alternate
        for name, call in calls.items():
            start = time.perf_counter()
            outputs[name] = call().numpy()
            wall[name].append(time.perf_counter() - start)
    return {
        "keras_modules_loaded": _keras_modules(),
        "system": "export",
        "section": "mixed",
        "precision": args.precision,
        "mix": args.mix,
        "batch": len(texts),
        "signatures": {
            name: {
                "seconds": [round(s, 4) for s in wall[name]],
                "examples_per_second": round(len(texts) / min(wall[name]), 2),
                "max_output_chars": int(max(len(t) for t in outputs[name])),
            }
            for name in calls
        },
    }


def peft_worker(args, work: Path) -> dict:
    import torch

    spec = _spec(work)
    model, tokenizer = peft_model(work / "hf", work / "adapter", args.precision)
    if args.section == "score":
        texts = _rows(spec["sst2_texts"], args.score_rows)

        def run():
            return peft_score(
                model, tokenizer, texts, spec["verbalizers"], args.batch_size,
                args.max_input_length, args.variant,
            )
    else:
        texts = spec["sst2_texts"][: args.generate_rows]

        def run():
            return peft_generate(
                model, tokenizer, texts, args.batch_size, args.max_input_length,
                args.new_tokens,
            )

    # PyTorch's OpenMP pool: 1 thread can beat 2 on a busy machine (spinning
    # waits on a preempted thread); each count is timed, the best kept.
    output, threads, wall, cpu, per_threads = best_over_settings(
        run, args.peft_threads, torch.set_num_threads, args.repeats
    )
    result = _result(args, work, "peft", texts, output, wall, cpu)
    result["threads"] = threads
    result["seconds_per_thread_count"] = per_threads
    return result


def _rows(texts, limit):
    return texts[:limit] if limit else texts


def _result(args, work, system, texts, output, wall, cpu) -> dict:
    """The worker's row; its output (scores, labels or texts) goes to a file."""
    name = _slug(args)
    outputs = work / "outputs"
    outputs.mkdir(exist_ok=True)
    if args.section == "generate":
        path = outputs / f"{name}.json"
        path.write_text(json.dumps(list(output)))
    else:
        path = outputs / f"{name}.npy"
        np.save(path, np.asarray(output))
    return {
        "system": system,
        "section": args.section,
        "precision": args.precision,
        "variant": args.variant or args.signature,
        "examples": len(texts),
        "seconds": [round(s, 4) for s in wall],
        "cpu_seconds": round(min(cpu), 4),
        "examples_per_second": round(len(texts) / min(wall), 2),
        "output": str(path),
    }


def _slug(args) -> str:
    parts = [args.worker, args.section, args.precision, args.variant or args.signature]
    return "_".join(p for p in parts if p)


# ----------------------------------------------------------------------
# Orchestration.
# ----------------------------------------------------------------------
def default_preset() -> str:
    """The package's default preset (`keras_prompt.presets.default_preset_path`),
    read without importing keras_prompt (whose import loads keras): the
    workers that stand for TF Serving and PEFT users never import it."""
    import importlib.util

    path = REPO_ROOT / "keras_prompt" / "presets" / "__init__.py"
    spec = importlib.util.spec_from_file_location("_keras_prompt_presets", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.default_preset_path())


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        help="backbone preset (default: the package's default preset)",
    )
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument(
        "--work-dir", default="/tmp/inference_vs_peft",
        help="adapter, HF checkpoint, exports and outputs (reused when unchanged)",
    )
    parser.add_argument("--prompt-length", type=int, default=100)
    parser.add_argument(
        "--prompt-init", default="class_labels",
        choices=("class_labels", "sampled_vocab", "random_uniform"),
        help="how the (untrained) prompts start; generated texts depend on it",
    )
    parser.add_argument("--max-input-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument(
        "--score-rows", type=int, default=0, help="SST-2 rows scored (0: all 872)"
    )
    parser.add_argument("--generate-rows", type=int, default=128)
    parser.add_argument("--mixed-batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--mixed-precision", default="float32", choices=PRECISIONS)
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS),
                        choices=SECTIONS)
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS),
                        choices=PRECISIONS)
    parser.add_argument("--peft-variants", nargs="+", default=list(PEFT_VARIANTS),
                        choices=PEFT_VARIANTS)
    parser.add_argument(
        "--peft-threads", type=int, nargs="+", default=[1, os.cpu_count() or 1],
        help="PyTorch thread counts tried in each PEFT process (best kept)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="best of N per process")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--max-minutes", type=float, default=None,
        help="start no round that would end past this many minutes",
    )
    parser.add_argument("--atol", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peft-python", default=sys.executable,
                        help="a python with torch, transformers and peft")
    parser.add_argument("--json", help="also write all rows here")
    parser.add_argument(
        "--merge", nargs="+", default=[],
        help="--json files of earlier runs (same work dir): their rows join this "
        "run's in the report, as further rounds",
    )
    parser.add_argument(
        "--skip-by-task", action="store_true",
        help="no by_task rank-classification row (it also decodes: the slowest)",
    )
    # Worker mode (internal).
    parser.add_argument("--worker", choices=("prepare", "keras", "export", "peft"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--signature", help=argparse.SUPPRESS)
    parser.add_argument("--mix", choices=("mixed", "single"), help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.model is None:
        args.model = default_preset()
    if any(b % len(MIXED_TASKS) for b in args.mixed_batches):
        parser.error("--mixed-batches must be multiples of 4 (4 tasks)")
    return args


def _prepare_key(args) -> dict:
    weights = Path(args.model) / "model.weights.h5"
    stat = weights.stat() if weights.is_file() else None
    return {
        "version": PREPARE_VERSION,
        "model": str(Path(args.model).resolve()),
        "weights": [stat.st_size, stat.st_mtime] if stat else None,
        "data_dir": str(Path(args.data_dir).resolve()),
        "prompt_length": args.prompt_length,
        "prompt_init": args.prompt_init,
        "max_input_length": args.max_input_length,
        "new_tokens": args.new_tokens,
        "mixed_batches": max(args.mixed_batches),
        "seed": args.seed,
    }


def _rate_and_load(result: dict) -> str:
    rate = result.get("examples_per_second")
    if "signatures" in result:
        rate = {k: v["examples_per_second"] for k, v in result["signatures"].items()}
    return f"{rate} ex/s, load {result['loadavg']}"


def _run(command: list[str], label: str) -> dict | None:
    sys.path.insert(0, str(HERE))
    from train_throughput import run_worker

    return run_worker(command, label, summary=_rate_and_load)


def _configs(args) -> list[tuple[list[str], str]]:
    script = str(Path(__file__).resolve())
    common = [
        "--model", args.model, "--work-dir", args.work_dir,
        "--data-dir", args.data_dir,
        "--max-input-length", str(args.max_input_length),
        "--batch-size", str(args.batch_size), "--new-tokens", str(args.new_tokens),
        "--score-rows", str(args.score_rows),
        "--generate-rows", str(args.generate_rows), "--repeats", str(args.repeats),
        "--peft-threads", *map(str, args.peft_threads),
    ]
    tf_python = [sys.executable, script, *common]
    torch_python = [args.peft_python, script, *common]
    configs = []
    for section in ("score", "generate"):
        if section not in args.sections:
            continue
        for precision in args.precisions:
            what = ["--section", section, "--precision", precision]
            configs.append(
                (tf_python + ["--worker", "keras", *what],
                 f"{section} keras-prompt {precision}")
            )
            signatures = ("classify", "by_task") if section == "score" else (
                "serving_default",
            )
            for signature in signatures:
                if signature == "by_task" and (
                    precision != "float32" or args.skip_by_task
                ):
                    continue  # also decodes: slow, and not a score path
                configs.append(
                    (tf_python + ["--worker", "export", *what,
                                  "--signature", signature],
                     f"{section} export {signature} {precision}")
                )
            variants = args.peft_variants if section == "score" else ("generate",)
            for variant in variants:
                configs.append(
                    (torch_python + ["--worker", "peft", *what, "--variant", variant],
                     f"{section} PEFT {variant} {precision}")
                )
    if "mixed" in args.sections:
        for batch in args.mixed_batches:
            for mix in ("mixed", "single"):
                configs.append(
                    (tf_python + ["--worker", "export", "--section", "mixed",
                                  "--precision", args.mixed_precision,
                                  "--batch", str(batch), "--mix", mix],
                     f"mixed export batch {batch} {mix}")
                )
    return configs


def _best_rows(rows: list[dict]) -> dict[str, dict]:
    best: dict[str, dict] = {}
    for row in rows:
        key = row["label"]
        if row["section"] == "mixed":
            rate = sum(v["examples_per_second"] for v in row["signatures"].values())
        else:
            rate = row["examples_per_second"]
        kept = best.get(key)
        kept_rate = None
        if kept is not None:
            kept_rate = (
                sum(v["examples_per_second"] for v in kept["signatures"].values())
                if kept["section"] == "mixed"
                else kept["examples_per_second"]
            )
        if kept is None or rate > kept_rate:
            best[key] = row
    return best


def _mixed_best(rows: list[dict]) -> dict:
    """Per (batch, mix, signature): the best examples/s over rounds, its load."""
    best: dict = {}
    for row in rows:
        if row["section"] != "mixed":
            continue
        for name, value in row["signatures"].items():
            key = (row["batch"], row["mix"], name)
            if key not in best or value["examples_per_second"] > best[key][0]:
                best[key] = (value["examples_per_second"], row["loadavg"][0],
                             value["max_output_chars"])
    return best


def _load(path: str):
    return json.loads(Path(path).read_text()) if path.endswith(".json") else np.load(
        path, allow_pickle=False
    )


def report(rows: list[dict], args, spec: dict) -> dict:
    best = _best_rows(rows)
    summary: dict[str, Any] = {"rows": rows}
    n = args.repeats
    print(f"\nbest of {n} timed passes per process x {args.rounds} rounds "
          "(fresh process per configuration); load = 1-min load average at "
          "the end of the best row's process")
    for section in ("score", "generate"):
        picked = [r for r in best.values() if r["section"] == section]
        if not picked:
            continue
        reference_row = next(
            (r for r in picked if r["system"] == "keras-prompt"
             and r["precision"] == "float32"), None)
        reference = _load(reference_row["output"]) if reference_row else None
        title = (
            f"Rank classification, SST-2 validation ({picked[0]['examples']} rows, "
            f"2 candidates, batch {args.batch_size})"
            if section == "score"
            else f"Greedy generation, {args.new_tokens} new tokens, batch "
            f"{args.batch_size} ({picked[0]['examples']} texts)"
        )
        print(f"\n## {title}")
        agreement_head = (
            "max abs diff vs keras-prompt fp32 | label agreement"
            if section == "score" else "texts equal to keras-prompt fp32's"
        )
        print(f"| system | path | precision | examples/s | CPU s | load | "
              f"{agreement_head} |")
        print("|---|---|---|---:|---:|---:|---|")
        for row in sorted(picked, key=lambda r: -r["examples_per_second"]):
            output = _load(row["output"])
            if reference is None:
                agree = "-"
            elif section == "generate":
                row["agreement"] = text_agreement(reference, output)
                agree = f"{100 * row['agreement']:.1f}%"
            elif row["variant"] == "by_task":
                labels = np.asarray(output)
                row["agreement"] = {
                    "label_agreement": float(np.mean(labels == reference.argmax(-1)))
                }
                agree = (f"labels only | "
                         f"{100 * row['agreement']['label_agreement']:.1f}%")
            else:
                row["agreement"] = compare_scores(reference, output, args.atol)
                agree = (f"{row['agreement']['max_abs_diff']:.2e} | "
                         f"{100 * row['agreement']['label_agreement']:.1f}%")
            print(f"| {row['system']} | {row['variant']} | {row['precision']} | "
                  f"{row['examples_per_second']:.1f} | {row['cpu_seconds']:.2f} | "
                  f"{row['loadavg'][0]} | {agree} |")
        keras_best = _max(picked, system="keras-prompt")
        peft_best = _max(picked, system="peft")
        lines = {}
        for name, row in (("keras-prompt", keras_best),
                          *((f"export {s}", _max(picked, system="export", variant=s))
                            for s in ("classify", "by_task", "serving_default"))):
            if row and peft_best:
                ratio = row["examples_per_second"] / peft_best["examples_per_second"]
                lines[name] = ratio
                print(f"{name} ({row['precision']}) / PEFT best "
                      f"({peft_best['variant']}, {peft_best['precision']}): "
                      f"{ratio:.2f}x (goal >= 2x)")
        summary[section] = {"ratios_vs_peft_best": lines}
        if section == "score":
            fp32 = [r for r in picked if r["precision"] == "float32"
                    and isinstance(r.get("agreement"), dict)
                    and "max_abs_diff" in r["agreement"]]
            worst = max((r["agreement"]["max_abs_diff"] for r in fp32), default=0.0)
            verdict = "PASS" if worst <= args.atol else "FAIL"
            summary["score"]["fp32_worst_abs_diff"] = worst
            print(f"float32 scores agree within {args.atol:g}: {verdict} "
                  f"(worst {worst:.2e})")
            if reference is not None:
                accuracy = float(np.mean(reference.argmax(-1) == np.asarray(
                    spec["sst2_labels"][: len(reference)])))
                print(f"(accuracy of the untrained {args.prompt_init} prompt: "
                      f"{100 * accuracy:.1f}%)")
    mixed = _mixed_best(rows)
    if mixed:
        print(f"\n## Mixed-task vs single-task batches through the export "
              f"({args.mixed_precision}, {args.new_tokens} decode steps at most)")
        print("| batch | signature | mixed ex/s | single ex/s | mixed / single | "
              "load (mixed, single) |")
        print("|---:|---|---:|---:|---:|---|")
        ratios = {}
        for batch in args.mixed_batches:
            for name in ("serving_default", "by_task"):
                m, s = mixed.get((batch, "mixed", name)), mixed.get(
                    (batch, "single", name))
                if not (m and s):
                    continue
                ratios[f"{batch} {name}"] = m[0] / s[0]
                print(f"| {batch} | {name} | {m[0]:.1f} | {s[0]:.1f} | "
                      f"{m[0] / s[0]:.3f} | {m[1]}, {s[1]} |")
        summary["mixed"] = ratios
        print("goal: mixed / single >= 0.95")
    return summary


def _max(rows, **match):
    rows = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    return max(rows, key=lambda r: r["examples_per_second"], default=None)


def _command(argv) -> str:
    return "KERAS_BACKEND=tensorflow python benchmarks/inference_vs_peft.py " + (
        shlex.join(argv)
    )


def main(argv: list[str] | None = None) -> dict:
    args = _parse(argv)
    work = Path(args.work_dir)
    if args.worker:
        worker = {
            "prepare": prepare, "keras": keras_worker, "export": export_worker,
            "peft": peft_worker,
        }[args.worker]
        result = worker(args, work)
        result["loadavg"] = [round(x, 2) for x in os.getloadavg()]
        print("RESULT " + json.dumps(result), flush=True)
        return result

    started = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    key = _prepare_key(args)
    stamp = work / "prepared.json"
    if not stamp.is_file() or json.loads(stamp.read_text()).get("key") != key:
        for stale in ("adapter", "hf", "export_float32", "export_bfloat16"):
            target = work / stale
            if target.exists():
                import shutil

                shutil.rmtree(target)
        stamp.unlink(missing_ok=True)
        command = [sys.executable, str(Path(__file__).resolve()), "--worker",
                   "prepare", *(argv if argv is not None else sys.argv[1:])]
        spec = _run(command, "prepare: adapter, export-hf, SavedModel exports")
        if spec is None:
            raise SystemExit("prepare failed")
        spec["key"] = key
        stamp.write_text(json.dumps(spec))
    spec = json.loads(stamp.read_text())
    configs = _configs(args)
    rows = []
    for round_index in range(args.rounds):
        elapsed = time.perf_counter() - started
        if round_index and args.max_minutes and elapsed * (
            round_index + 1
        ) / round_index > 60 * args.max_minutes:
            print(f"--- stopping after {round_index} round(s): another would "
                  f"pass --max-minutes {args.max_minutes}", flush=True)
            args.rounds = round_index
            break
        print(f"--- round {round_index + 1} of {args.rounds}", flush=True)
        for command, label in configs:
            row = _run(command, label)
            if row:
                row["round"] = round_index + 1
                rows.append(row)
    earlier = []
    for path in args.merge:
        earlier += json.loads(Path(path).read_text())["rows"]
    if earlier:
        first = max(row.get("round", 1) for row in earlier)
        for row in rows:
            row["round"] += first
        args.rounds += first
    summary = report(earlier + rows, args, spec)
    summary.update(
        model=args.model,
        cpu_count=os.cpu_count(),
        total_seconds=round(time.perf_counter() - started, 1),
        command=_command(argv if argv is not None else sys.argv[1:]),
    )
    print(f"\nmodel {args.model}, prompt length {args.prompt_length}, max input "
          f"{args.max_input_length} tokens, {os.cpu_count()} CPUs, "
          f"total {summary['total_seconds']} s")
    print(f"reproduce: {summary['command']}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1, default=str) + "\n")
    return summary


if __name__ == "__main__":
    main()
