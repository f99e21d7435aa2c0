#!/usr/bin/env python
"""Pretraining throughput (corpus tokens/s) of T5 geometries, fp32 vs mixed_bfloat16.

Times ``model.fit`` steps of :class:`keras_prompt.pretraining.T5Pretrainer`
on packed LM-adaptation rows (batch x sequence_length encoder tokens and as
many decoder tokens; ``2 * (sequence_length - 2)`` corpus tokens per row).
The rows are drawn from the real vocabulary at random: the cost of a step
does not depend on which tokens are in it, and this keeps the input
pipeline out of the measurement. Each (geometry, dtype) runs in its own
process because the dtype policy is process-global.

    python benchmarks/pretrain_throughput.py --geometry t5_1_1_mini \\
        --dtypes float32,mixed_bfloat16 --steps 10

Extra geometries: ``--geometry 'name:{"hidden_dim": 256, ...}'`` overrides
``t5_1_1_mini``'s arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _arguments(spec: str) -> tuple[str, dict]:
    from keras_prompt.models.geometries import geometry_config

    if ":" in spec:
        name, overrides = spec.split(":", 1)
        return name, geometry_config("t5_1_1_mini", **json.loads(overrides))
    return spec, geometry_config(spec)


def measure(
    spec: str, dtype: str, batch_size: int, sequence_length: int, steps: int
) -> dict:
    """Times `steps` fit steps after 3 warm-up steps, in this process."""
    import keras
    import keras_hub
    import numpy as np
    import tensorflow as tf

    from keras_prompt.models.geometries import initialize_embeddings
    from keras_prompt.pretraining import T5Pretrainer, pack_examples

    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy(dtype)
    name, arguments = _arguments(spec)
    backbone = initialize_embeddings(
        keras_hub.models.T5Backbone(**{**arguments, "dropout": 0.0})
    )
    model = T5Pretrainer(backbone)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4))
    # Full rows of random text: two examples per row split at complementary
    # points k and L - k, so both fill each side exactly (no padding).
    length = sequence_length - 2
    rng = np.random.default_rng(0)
    examples = []
    for _ in range(batch_size):
        split = int(rng.integers(1, length))
        for k in (split, length - split):
            text = rng.integers(3, 32000, size=length).astype("int32")
            examples.append((np.append(text[:k], 1), np.append(text[k:], 1)))
    pairs = tf.data.Dataset.from_generator(
        lambda: iter(examples),
        output_signature=(tf.TensorSpec([None], tf.int32),) * 2,
    )
    rows = pack_examples(pairs.repeat(), sequence_length, sequence_length)
    batch = next(iter(rows.batch(batch_size)))
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    model.fit(dataset, steps_per_epoch=3, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    corpus_tokens = steps * batch_size * 2 * length
    return {
        "geometry": name,
        "arguments": {
            # The tanh GELU is a function object; record its name.
            k: v
            if isinstance(v, (int, float, str, bool))
            else getattr(v, "__name__", str(v))
            for k, v in arguments.items()
            if k != "vocabulary_size"
        },
        "parameters": int(backbone.count_params()),
        "dtype": dtype,
        "backbone_dtype_policy": backbone.dtype_policy.name,
        "batch_size": batch_size,
        "sequence_length": sequence_length,
        "steps": steps,
        "seconds_per_step": round(seconds / steps, 3),
        "corpus_tokens_per_second": round(corpus_tokens / seconds, 1),
        "cpu_count": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--geometry", action="append", default=None)
    parser.add_argument("--dtypes", default="float32,mixed_bfloat16")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", help="append JSON lines here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    geometries = args.geometry or ["t5_1_1_mini"]
    dtypes = [d for d in args.dtypes.split(",") if d]
    if args.child:
        result = measure(
            geometries[0], dtypes[0], args.batch_size, args.sequence_length, args.steps
        )
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    for spec in geometries:
        for dtype in dtypes:
            command = [
                sys.executable,
                __file__,
                "--child",
                "--geometry",
                spec,
                "--dtypes",
                dtype,
                "--batch-size",
                str(args.batch_size),
                "--sequence-length",
                str(args.sequence_length),
                "--steps",
                str(args.steps),
            ]
            output = subprocess.run(
                command, capture_output=True, text=True, check=False
            )
            lines = [
                line
                for line in output.stdout.splitlines()
                if line.startswith("RESULT ")
            ]
            if not lines:
                print(output.stderr[-3000:], file=sys.stderr)
                return 1
            result = json.loads(lines[-1][len("RESULT ") :])
            print(json.dumps(result), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
