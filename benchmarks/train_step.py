"""Prompt-tuning train-step throughput at a fixed shape, fp32 vs mixed_bfloat16.

Shape: t5-small geometry (random weights), batch 32, 128 input
tokens + 20 prompt vectors, 4 target tokens. Times `model.fit` steps after a
warm-up epoch, so tracing/compilation is excluded.

    python benchmarks/train_step.py [--steps 10] [--policies float32 mixed_bfloat16]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from train_throughput import (  # noqa: E402
    BATCH,
    INPUT_TOKENS,
    PROMPT,
    TARGET_TOKENS,
    fixed_batch,
)

import keras_prompt  # noqa: E402
from keras_prompt.models.geometries import build_backbone  # noqa: E402


class _EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)


def measure(policy: str, steps: int, jit_compile: bool, repeats: int = 3) -> float:
    keras.config.set_dtype_policy(policy)
    try:
        model = keras_prompt.PromptTunedT5(
            build_backbone("t5_small"), prompt_length=PROMPT
        )
        model.compile(jit_compile=jit_compile)
    finally:
        keras.config.set_dtype_policy("float32")
    dataset = tf.data.Dataset.from_tensors(fixed_batch()).repeat()
    timer = _EpochTimer()
    timer.times = []
    model.fit(
        dataset, epochs=repeats + 1, steps_per_epoch=steps, callbacks=[timer], verbose=0
    )
    seconds_per_step = min(timer.times[1:]) / steps
    return BATCH / seconds_per_step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--policies", nargs="+", default=["float32", "mixed_bfloat16"])
    parser.add_argument("--jit", nargs="+", default=["false", "true"])
    args = parser.parse_args()
    print(
        f"fixed shape: t5_small geometry, batch {BATCH}, {INPUT_TOKENS} input tokens "
        f"+ {PROMPT} prompt, {TARGET_TOKENS} target tokens; load avg "
        f"{os.getloadavg()[0]:.2f}"
    )
    print("| policy | XLA (jit_compile) | examples/s | s/step |")
    print("|---|---|---|---|")
    for policy in args.policies:
        for jit in args.jit:
            rate = measure(policy, args.steps, jit == "true")
            print(f"| {policy} | {jit} | {rate:.1f} | {BATCH / rate:.3f} |", flush=True)
    print(
        "\nreproduce: python benchmarks/train_step.py --steps "
        f"{args.steps} --policies {' '.join(args.policies)} --jit {' '.join(args.jit)}"
    )


if __name__ == "__main__":
    main()
