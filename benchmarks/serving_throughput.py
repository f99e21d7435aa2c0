"""Serving throughput of the TF Serving export: mixed-task vs single-task batches.

What it measures, on the SavedModel written by
`keras_prompt.serving.export_saved_model` and loaded with
`tf.saved_model.load` (the graph TF Serving would run, minus the server):

* examples/s and p50/p95 latency of `serving_default` (greedy decoding) for
  - one batch of 32 examples drawn from 4 tasks (8 each), each with its own
    task prompt ("mixed");
  - the same 32 texts all carrying one prompt ("single-task");
  - the same 32 texts as 4 sequential per-task batches of 8 ("4 x 8");
  the three use identical texts, so they differ only in how prompts are
  batched (the goal is mixed >= 0.95x single-task);
* the export's size with 1 vs 50 prompts in the bank.

The backbone is a RANDOMLY INITIALISED T5 of the `t5_small` geometry
(`keras_prompt.models.geometries.build_backbone("t5_small")`; no pretrained
weights are available offline) with the real T5 SentencePiece vocabulary, so
the decoded text is meaningless; speed does not depend on the weights. A
random model rarely emits `</s>`, so every batch decodes `--max-decode-length`
steps: all configurations do the same decoding work.

Texts are the first 8 validation examples of SST-2, MRPC, RTE and BoolQ
(`keras_prompt.data.load_examples`, T5 input format), truncated to
`--max-input-length` tokens in the graph.

Run (about 3-4 minutes on 2 CPU cores):

    KERAS_BACKEND=tensorflow python benchmarks/serving_throughput.py
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ASSETS = REPO_ROOT.parent / "shared" / "assets"
TASKS = ("sst2", "mrpc", "rte", "boolq")


def _directory_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--geometry", default="t5_small")
    parser.add_argument("--assets", default=str(DEFAULT_ASSETS))
    parser.add_argument("--prompt-length", type=int, default=100)
    parser.add_argument("--max-input-length", type=int, default=128)
    parser.add_argument("--max-decode-length", type=int, default=16)
    parser.add_argument("--per-task", type=int, default=8,
                        help="examples per task (4 tasks)")
    parser.add_argument("--repeats", type=int, default=7,
                        help="timed runs per configuration, after one warm-up")
    parser.add_argument("--bank-size", type=int, default=50)
    parser.add_argument("--out-dir", default=None,
                        help="keep the exports here (default: a temp dir, removed)")
    parser.add_argument("--json", default=None, help="also write results here")
    args = parser.parse_args(argv)
    if args.bank_size < 1 or args.repeats < 1 or args.per_task < 1:
        parser.error("--bank-size, --repeats and --per-task must be >= 1")
    started = time.perf_counter()

    import keras_hub
    import tensorflow as tf

    from keras_prompt import PromptTunedT5
    from keras_prompt.data import load_examples
    from keras_prompt.models.geometries import build_backbone
    from keras_prompt.serving import PromptBank, export_saved_model

    assets = Path(args.assets)
    tokenizer = keras_hub.models.T5Tokenizer(proto=str(assets / "t5" / "spiece.model"))
    preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer,
        encoder_sequence_length=args.max_input_length,
        decoder_sequence_length=args.max_decode_length,
    )
    backbone = build_backbone(args.geometry)
    model = PromptTunedT5(backbone, preprocessor, prompt_length=args.prompt_length)
    hidden = backbone.hidden_dim

    rng = np.random.default_rng(0)
    names = list(TASKS) + [f"task_{i:02d}" for i in range(len(TASKS), args.bank_size)]
    prompts = {
        name: rng.uniform(-0.5, 0.5, (args.prompt_length, hidden)).astype("float32")
        for name in names
    }
    scratch = None
    if args.out_dir is None:  # exports are ~250 MiB each: removed at the end
        scratch = tempfile.TemporaryDirectory(prefix="serving_bench_")
    out_dir = Path(args.out_dir or scratch.name)
    sizes = {}
    exports = {}
    for count in (1, args.bank_size):
        bank = PromptBank.from_arrays({n: prompts[n] for n in names[:count]})
        t0 = time.perf_counter()
        path = export_saved_model(
            model, out_dir / f"bank_{count}", version=1, prompt_bank=bank,
            warmup=False, overwrite=True,
        )
        sizes[count] = _directory_size(path)
        exports[count] = path
        print(f"exported bank of {count:>2} prompts in "
              f"{time.perf_counter() - t0:.1f}s: {sizes[count] / 2**20:.2f} MiB",
              flush=True)
    del model, backbone

    texts, tasks = [], []
    for task in TASKS:
        examples = load_examples(task, "validation", data_dir=assets)
        texts += [e.inputs for e in examples[: args.per_task]]
        tasks += [task] * args.per_task
    prompt_of = {t: prompts[t] for t in TASKS}
    mixed_prompts = np.stack([prompt_of[t] for t in tasks])
    single_prompts = np.stack([prompt_of[TASKS[0]]] * len(texts))
    batch = len(texts)

    loaded = tf.saved_model.load(str(exports[args.bank_size]))
    serve = loaded.signatures["serving_default"]

    def run(text, prompt):
        outputs = serve(text=tf.constant(text), prompt=tf.constant(prompt))
        return outputs["output_text"].numpy()

    def mixed():
        run(texts, mixed_prompts)

    def single():
        run(texts, single_prompts)

    groups = [
        [i for i, t in enumerate(tasks) if t == task] for task in TASKS
    ]

    def sequential():
        for rows in groups:
            run([texts[i] for i in rows], mixed_prompts[rows])

    configs = {
        f"mixed: 1 batch of {batch} from {len(TASKS)} tasks": mixed,
        f"single-task: 1 batch of {batch}, one prompt": single,
        f"{len(TASKS)} sequential per-task batches of {args.per_task}": sequential,
    }
    for fn in configs.values():  # warm-up: first calls build the graphs
        fn()
    timings = {name: [] for name in configs}
    for _ in range(args.repeats):  # interleaved, so load drifts hit all alike
        for name, fn in configs.items():
            t0 = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - t0)

    results = {"configs": {}, "export_bytes": sizes}
    print()
    print(f"serving_default, {args.geometry} geometry (random init), prompt_length "
          f"{args.prompt_length}, max_input_length {args.max_input_length}, "
          f"max_decode_length {args.max_decode_length}, {args.repeats} timed runs")
    print(f"TF {tf.__version__}, {os.cpu_count()} CPU cores visible, "
          f"devices: {[d.device_type for d in tf.config.list_logical_devices()]}")
    print(f"{'configuration':<45} {'examples/s':>10} {'p50 s':>8} {'p95 s':>8}")
    for name, values in timings.items():
        p50, p95 = _percentile(values, 50), _percentile(values, 95)
        throughput = batch / p50
        results["configs"][name] = {
            "examples_per_s": throughput, "p50_s": p50, "p95_s": p95,
            "runs_s": values,
        }
        print(f"{name:<45} {throughput:>10.2f} {p50:>8.3f} {p95:>8.3f}")
    names_list = list(configs)
    ratio = (results["configs"][names_list[0]]["examples_per_s"]
             / results["configs"][names_list[1]]["examples_per_s"])
    results["mixed_over_single"] = ratio
    print(f"mixed / single-task throughput: {ratio:.3f} (goal >= 0.95)")
    print(f"export size: bank of 1 prompt {sizes[1] / 2**20:.2f} MiB, bank of "
          f"{args.bank_size} prompts {sizes[args.bank_size] / 2**20:.2f} MiB "
          f"(+{(sizes[args.bank_size] - sizes[1]) / 2**20:.2f} MiB; one prompt is "
          f"{args.prompt_length * hidden * 4 / 2**10:.0f} KiB)")
    total = time.perf_counter() - started
    print(f"total runtime {total:.0f}s")
    command = "KERAS_BACKEND=tensorflow python benchmarks/serving_throughput.py"
    if argv:
        command += " " + shlex.join(argv)
    elif len(sys.argv) > 1:
        command += " " + shlex.join(sys.argv[1:])
    print(f"reproduce: {command}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if scratch is not None:
        scratch.cleanup()
    return results


if __name__ == "__main__":
    main()
