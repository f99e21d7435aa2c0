"""Where one prompt-tuning step on real SST-2 batches goes.

On a preset (default: the embedded checkpoint), bf16 backbone weights, P = 20,
batch 32 from `train_prompt`'s own pipeline (`make_dataset`: in-graph
tokenization, length buckets), it times, each after a warm-up:

- `model.fit` on the live pipeline, per step;
- the pipeline alone, per batch;
- `model.fit` over cached batches with `steps_per_execution=10` (Keras' loop
  overhead amortised);
- one batch: the compiled `train_step` alone, forward + loss alone, the
  prompted encoder alone, and the `train_step` under XLA (compile time
  separately); the train graph's op count.

    python benchmarks/train_step_breakdown.py [--model PRESET] \
        [--data-dir ../shared/assets] [--steps 200]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = HERE.parent / "keras_prompt" / "presets" / "t5_1_1_mini_lm"


def _per_call_ms(fn, calls: int = 40) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument(
        "--data-dir", default=str(HERE.parent.parent / "shared" / "assets")
    )
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from keras_prompt import PromptAdafactor, PromptTunedT5
    from keras_prompt.data import get_task, load_examples, make_dataset
    from keras_prompt.training import _target_length

    keras.utils.set_random_seed(0)
    task = get_task("sst2")
    examples = load_examples(task, "train", data_dir=args.data_dir)

    def build(steps_per_execution=1):
        model = PromptTunedT5.from_preset(
            args.model, dtype="bfloat16", prompt_length=20
        )
        model.compile(
            optimizer=PromptAdafactor(0.3), steps_per_execution=steps_per_execution
        )
        return model

    def fit_ms(model, dataset):
        model.fit(dataset, steps_per_epoch=50, epochs=1, verbose=0)  # tracing
        start = time.perf_counter()
        model.fit(dataset, steps_per_epoch=args.steps, epochs=1, verbose=0)
        return (time.perf_counter() - start) / args.steps * 1000

    model = build()
    dataset = make_dataset(
        examples,
        model.require_tokenizer(),
        batch_size=32,
        max_input_length=128,
        max_target_length=_target_length(model, task),
        shuffle=True,
        seed=0,
        repeat=True,
    )
    rows = {"fit, live pipeline (ms/step)": fit_ms(model, dataset)}
    start = time.perf_counter()
    for _ in dataset.take(args.steps):
        pass
    rows["pipeline alone (ms/batch)"] = (time.perf_counter() - start) / args.steps * 1e3
    cached = dataset.take(args.steps).cache()
    for _ in cached:
        pass
    rows["fit, cached batches, steps_per_execution=10 (ms/step)"] = fit_ms(
        build(10), cached.repeat()
    )
    x, y, weights = next(iter(cached))
    step = tf.function(lambda: model.train_step((x, y, weights)))
    rows["one batch: train_step (ms)"] = _per_call_ms(step)
    rows["one batch: train graph ops"] = len(
        step.get_concrete_function().graph.get_operations()
    )
    rows["one batch: forward + loss (ms)"] = _per_call_ms(
        tf.function(
            lambda: model.compute_loss(
                x=x, y=y, y_pred=model(x, training=False), sample_weight=weights
            )
        )
    )
    rows["one batch: prompted encoder (ms)"] = _per_call_ms(
        tf.function(
            lambda: model.encode(x["encoder_token_ids"], x["encoder_padding_mask"])
        )
    )
    xla = tf.function(lambda: model.train_step((x, y, weights)), jit_compile=True)
    start = time.perf_counter()
    xla()
    rows["one batch: XLA compile + first call (s)"] = time.perf_counter() - start
    rows["one batch: train_step under XLA (ms)"] = _per_call_ms(xla)
    rows["one batch: encoder tokens"] = int(x["encoder_token_ids"].shape[1])
    print(f"model {args.model}, bf16 weights, P=20, batch 32")
    for name, value in rows.items():
        shown = f"{value:.1f}" if isinstance(value, float) else value
        print(f"{name}: {shown}")
    print(f"load {[round(v, 2) for v in os.getloadavg()]}")
    print("reproduce: python " + shlex.join(sys.argv))


if __name__ == "__main__":
    main()
