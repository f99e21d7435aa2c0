"""Inference throughput: exported `serving_default` vs the model's own `generate()`.

The same PromptTunedT5 (t5-small geometry, RANDOM weights,
the real T5 vocabulary, prompt length 100) answers the same 32 texts (the first
8 validation examples of SST-2, MRPC, RTE and BoolQ in T5's input format) two
ways, greedy decoding of up to `--max-decode-length` tokens each:

* `model.generate(texts)` in Python: keras-hub's `Seq2SeqLM.generate`, with the
  model's preprocessor (inputs packed to `--max-input-length`) and its own
  prompt;
* the SavedModel written by `keras_prompt.serving.export_saved_model`, loaded
  with `tf.saved_model.load`, signature `serving_default` (in-graph
  SentencePiece, inputs padded to the batch's longest), every row given the
  same prompt.

A random model rarely emits `</s>`, so both decode the full length: the same
decoding work. Mixed-task vs single-task batches of the export are measured by
`benchmarks/serving_throughput.py` (the serving issue's benchmark); run it
beside this one.

    python benchmarks/inference_throughput.py --assets ../shared/assets
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
TASKS = ("sst2", "mrpc", "rte", "boolq")


def _best_of(fn, repeats: int) -> tuple[float, list[float]]:
    fn()  # warm-up: traces / builds the graphs
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return min(runs), runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default=str(REPO_ROOT.parent / "shared" / "assets"))
    parser.add_argument("--prompt-length", type=int, default=100)
    parser.add_argument("--max-input-length", type=int, default=128)
    parser.add_argument("--max-decode-length", type=int, default=16)
    parser.add_argument("--per-task", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--policy", default="float32")
    args = parser.parse_args()

    import keras
    import keras_hub
    import tensorflow as tf

    from keras_prompt import PromptTunedT5
    from keras_prompt.data import load_examples
    from keras_prompt.models.geometries import build_backbone
    from keras_prompt.serving import export_saved_model

    assets = Path(args.assets)
    tokenizer = keras_hub.models.T5Tokenizer(proto=str(assets / "t5" / "spiece.model"))
    preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer,
        encoder_sequence_length=args.max_input_length,
        decoder_sequence_length=args.max_decode_length,
    )
    keras.config.set_dtype_policy(args.policy)
    try:
        model = PromptTunedT5(
            build_backbone("t5_small"), preprocessor, prompt_length=args.prompt_length
        )
    finally:
        keras.config.set_dtype_policy("float32")
    model.compile()
    texts = []
    for task in TASKS:
        examples = load_examples(task, "validation", data_dir=assets)
        texts += [e.inputs for e in examples[: args.per_task]]
    batch = len(texts)

    generate_s, generate_runs = _best_of(
        lambda: model.generate(texts, max_length=args.max_decode_length), args.repeats
    )

    with tempfile.TemporaryDirectory(prefix="inference_bench_") as tmp:
        path = export_saved_model(model, Path(tmp) / "model", warmup=False)
        loaded = tf.saved_model.load(str(path))
        serve = loaded.signatures["serving_default"]
        prompts = tf.constant(np.stack([model.get_prompt()] * batch))
        text = tf.constant(texts)
        serving_s, serving_runs = _best_of(
            lambda: serve(text=text, prompt=prompts)["output_text"].numpy(),
            args.repeats,
        )

    print(
        f"t5_small geometry (random init), {args.policy}, prompt length "
        f"{args.prompt_length}, batch {batch} ({args.per_task} texts x "
        f"{len(TASKS)} tasks), max input {args.max_input_length}, decode "
        f"{args.max_decode_length} tokens, best of {args.repeats}; load avg "
        f"{[round(x, 2) for x in os.getloadavg()]}"
    )
    print("| path | examples/s | s/batch (best) | runs |")
    print("|---|---|---|---|")
    for name, best, runs in (
        ("model.generate() (Python)", generate_s, generate_runs),
        ("SavedModel serving_default", serving_s, serving_runs),
    ):
        print(
            f"| {name} | {batch / best:.1f} | {best:.3f} | "
            f"{', '.join(f'{r:.2f}' for r in runs)} |"
        )
    print(f"serving_default / generate(): {generate_s / serving_s:.2f}x")
    print(
        "reproduce: python benchmarks/inference_throughput.py --assets "
        f"{args.assets} --policy {args.policy} --repeats {args.repeats}"
    )


if __name__ == "__main__":
    main()
