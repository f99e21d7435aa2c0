"""Bounded load test of the TF Serving export: many threads, mixed signatures.

What it does:

1. Exports a `PromptTunedT5` (default: the package's embedded
   `t5_1_1_mini_lm` preset) with a bank of three tasks: `sst2` and `rte`
   (rte with 3 prompts, so `ensemble` has something to vote over) and `gen`
   (no verbalizers, generation only).
2. In a fresh process that loads the export with `tf.saved_model.load` and
   never imports keras, keras-hub or keras-prompt (as TF Serving would see
   it), builds `--distinct` different valid requests over all five
   signatures (`serving_default`, `classify` with shared and per-example
   candidates, `by_task`, `ensemble`, `serve_tf_examples`; 1 to 4 texts of
   SST-2/RTE validation inputs each), answers each once on one thread (the
   reference), then sends `--requests` requests (request i is distinct
   request i mod `--distinct`) from `--threads` threads.
3. Prints the errors (must be 0), how many answers differ from the
   single-threaded reference (must be 0: texts, labels and votes equal,
   scores within `--tolerance`), the latency percentiles of one request
   (p50, p99, max) and the throughput, as JSON, and the command.

It is a check under load, not a speed figure to compare across machines:
the latency depends on the cores free at the time (record the load).

Run:

    KERAS_BACKEND=tensorflow python benchmarks/serving_load.py
    KERAS_BACKEND=tensorflow python benchmarks/serving_load.py --requests 200
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ASSETS = REPO_ROOT.parent / "shared" / "assets"
DEFAULT_MODEL = REPO_ROOT / "keras_prompt" / "presets" / "t5_1_1_mini_lm"
TASK_PROMPTS = {"sst2": 1, "rte": 3, "gen": 1}


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--assets", default=str(DEFAULT_ASSETS))
    parser.add_argument("--prompt-length", type=int, default=20)
    parser.add_argument("--max-input-length", type=int, default=64)
    parser.add_argument("--max-decode-length", type=int, default=8)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--distinct", type=int, default=200)
    parser.add_argument("--tolerance", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    # Internal: the serving process.
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.requests, args.threads, args.distinct) < 1:
        parser.error("--requests, --threads and --distinct must be >= 1")
    return args


# ----------------------------------------------------------------------
# 1. The export (this process: keras).
# ----------------------------------------------------------------------
def _export(args, folder: Path) -> tuple[Path, list[str]]:
    import numpy as np

    from keras_prompt import PromptTunedT5
    from keras_prompt.data import load_examples
    from keras_prompt.serving import PromptBank, export_saved_model

    model = PromptTunedT5.from_preset(
        args.model,
        prompt_length=args.prompt_length,
        encoder_sequence_length=args.max_input_length,
    )
    rng = np.random.default_rng(args.seed)
    shape = model.prompt_shape
    bank = PromptBank.from_arrays(
        {
            task: [rng.normal(0, 0.5, shape).astype("float32") for _ in range(k)]
            for task, k in TASK_PROMPTS.items()
        }
    )
    path = export_saved_model(
        model,
        folder / "export",
        prompt_bank=bank,
        max_input_length=args.max_input_length,
        max_decode_length=args.max_decode_length,
    )
    texts = [
        e.inputs
        for task in ("sst2", "rte")
        for e in load_examples(task, "validation", data_dir=args.assets)[:40]
    ]
    return path, texts


# ----------------------------------------------------------------------
# 2. The serving process (TF and TF Text's kernels only).
# ----------------------------------------------------------------------
_BLOCKED = ("keras", "keras_hub", "keras_nlp", "keras_prompt", "tf_keras")


def _block_keras() -> None:
    import importlib.abc

    class Blocked(ModuleNotFoundError, ValueError):
        """Refused import (ValueError too: TF probes `keras` with find_spec)."""

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in _BLOCKED:
                raise Blocked(f"{name} may not be imported here", name=name)
            return None

    sys.meta_path.insert(0, Block())


def _requests(texts, prompts, rng, count):
    """`count` valid requests `(signature, inputs)` over every signature."""
    import numpy as np
    import tensorflow as tf

    def example(text, task=None):
        feature = {
            "text": tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[text.encode("utf-8")])
            )
        }
        if task:
            feature["task"] = tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[task.encode("utf-8")])
            )
        return tf.train.Example(
            features=tf.train.Features(feature=feature)
        ).SerializeToString()

    def strings(values):
        return np.array([v.encode("utf-8") for v in values], dtype=object)

    signatures = (
        "serving_default",
        "classify",
        "classify_per_example",
        "by_task",
        "ensemble",
        "serve_tf_examples",
    )
    labels = [
        ["negative", "positive"],
        ["entailment", "not_entailment"],
        ["yes", "no", "maybe"],
    ]
    out = []
    for i in range(count):
        kind = signatures[i % len(signatures)]
        batch = int(rng.integers(1, 5))
        chosen = [texts[j] for j in rng.integers(0, len(texts), batch)]
        tasks = [["sst2", "rte", "gen"][j] for j in rng.integers(0, 3, batch)]
        prompt = np.stack([prompts[j] for j in rng.integers(0, len(prompts), batch)])
        if kind == "serving_default":
            out.append((kind, {"text": strings(chosen), "prompt": prompt}))
        elif kind == "classify":
            words = labels[int(rng.integers(0, 3))]
            out.append(
                (
                    "classify",
                    {
                        "text": strings(chosen),
                        "prompt": prompt,
                        "candidates": strings(words),
                    },
                )
            )
        elif kind == "classify_per_example":
            table = np.stack([strings(labels[0]) for _ in range(batch)])
            out.append(
                (
                    "classify",
                    {"text": strings(chosen), "prompt": prompt, "candidates": table},
                )
            )
        elif kind == "by_task":
            out.append((kind, {"text": strings(chosen), "task": strings(tasks)}))
        elif kind == "ensemble":
            voted = [["sst2", "rte"][j] for j in rng.integers(0, 2, batch)]
            out.append((kind, {"text": strings(chosen), "task": strings(voted)}))
        else:
            serialized = [example(t, task) for t, task in zip(chosen, tasks)]
            out.append((kind, {"examples": np.array(serialized, dtype=object)}))
    return out  # fmt: skip


def _same(answer, reference, tolerance) -> bool:
    import numpy as np

    for name, value in reference.items():
        got = answer[name]
        if value.dtype.kind == "f":
            if got.shape != value.shape or not np.allclose(
                got, value, rtol=0, atol=tolerance, equal_nan=True
            ):
                return False
        elif not np.array_equal(got, value):
            return False
    return True


def tf_serving_runtime():
    """TensorFlow as a TF Serving user has it: keras, keras-hub and
    keras-prompt refused on import, TF Text's SentencePiece kernels loaded
    without its Python package (which imports keras). Returns `tensorflow`.
    Also used by `benchmarks/inference_vs_peft.py`."""
    _block_keras()
    import importlib.util

    import tensorflow as tf

    ops_dir = os.path.join(
        importlib.util.find_spec("tensorflow_text").submodule_search_locations[0],
        "python",
        "ops",
    )
    tf.load_op_library(os.path.join(ops_dir, "_sentencepiece_tokenizer.so"))
    return tf


def _serve(args) -> dict:
    import threading

    import numpy as np

    tf = tf_serving_runtime()
    spec = json.loads(Path(args.serve, "spec.json").read_text())
    loaded = tf.saved_model.load(spec["export"])
    functions = {name: loaded.signatures[name] for name in loaded.signatures}
    shape = spec["prompt_shape"]
    rng = np.random.default_rng(args.seed)
    prompts = rng.normal(0, 0.5, (8, *shape)).astype("float32")
    requests = _requests(spec["texts"], prompts, rng, args.distinct)

    def call(index):
        signature, inputs = requests[index]
        outputs = functions[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in outputs.items()}

    for index in range(len(requests)):  # warm every signature and shape
        call(index)
    start = time.perf_counter()
    reference = [call(i) for i in range(len(requests))]
    single_seconds = time.perf_counter() - start

    latencies = [0.0] * args.requests
    errors: list[str] = []
    mismatches: list[int] = []
    lock = threading.Lock()
    counter = iter(range(args.requests))

    def worker():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            try:
                answer = call(i % len(requests))
            except Exception as e:  # noqa: BLE001  (counted, reported)
                with lock:
                    errors.append(f"{type(e).__name__}: {str(e)[:200]}")
                continue
            latencies[i] = time.perf_counter() - t0
            if not _same(answer, reference[i % len(requests)], args.tolerance):
                with lock:
                    mismatches.append(i)

    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    counts: dict[str, int] = {}
    for i in range(args.requests):
        name = requests[i % len(requests)][0]
        counts[name] = counts.get(name, 0) + 1
    return {
        "requests": args.requests,
        "threads": args.threads,
        "distinct_requests": len(requests),
        "requests_per_signature": counts,
        "examples": int(
            sum(len(next(iter(requests[i % len(requests)][1].values())))
                for i in range(args.requests))
        ),
        "errors": len(errors),
        "first_errors": errors[:3],
        "answers_differing_from_single_thread": len(mismatches),
        "latency_ms": {
            "p50": round(float(np.percentile(ms, 50)), 2),
            "p99": round(float(np.percentile(ms, 99)), 2),
            "max": round(float(ms.max()), 2),
        },
        "seconds": round(seconds, 2),
        "requests_per_second": round(args.requests / seconds, 1),
        "single_thread_requests_per_second": round(len(requests) / single_seconds, 1),
        "loaded_modules": sorted(m for m in sys.modules if m.split(".")[0] in _BLOCKED),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    args = _parse(argv)
    if args.serve:
        print("RESULT " + json.dumps(_serve(args)), flush=True)
        return {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="serving_load_") as scratch:
        folder = Path(scratch)
        path, texts = _export(args, folder)
        spec = {
            "export": str(path),
            "texts": texts,
            "prompt_shape": [args.prompt_length, _hidden_dim(path)],
        }
        (folder / "spec.json").write_text(json.dumps(spec))
        forwarded = [a for a in (argv if argv is not None else sys.argv[1:])]
        child = subprocess.run(
            [sys.executable, __file__, *forwarded, "--serve", str(folder)],
            capture_output=True,
            text=True,
        )
    line = next((x for x in child.stdout.splitlines() if x.startswith("RESULT ")), None)
    if child.returncode != 0 or line is None:
        sys.stderr.write(child.stderr[-4000:])
        raise SystemExit("the serving process failed")
    result = json.loads(line[len("RESULT ") :])
    result.update(
        model=args.model,
        prompt_length=args.prompt_length,
        max_input_length=args.max_input_length,
        max_decode_length=args.max_decode_length,
        load_average=[round(x, 2) for x in os.getloadavg()],
        cpu_count=os.cpu_count(),
        total_seconds=round(time.perf_counter() - started, 1),
        command="KERAS_BACKEND=tensorflow python benchmarks/serving_load.py "
        + shlex.join(sys.argv[1:] if argv is None else argv),
    )
    print(json.dumps(result, indent=2))
    print(f"command: {result['command']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _hidden_dim(export: Path) -> int:
    metadata = json.loads((export / "assets.extra" / "prompt_bank.json").read_text())
    return int(metadata["prompt_shape"][1])


if __name__ == "__main__":
    outcome = main()
    if outcome and (
        outcome["errors"] or outcome["answers_differing_from_single_thread"]
    ):
        sys.exit(1)
