"""SST-2 held-out accuracy and wall time of prompt tuning a frozen T5.

Runs `keras-prompt train` (class-label init, rank-classification eval on the
872-row validation split held out of GLUE SST-2 train.tsv with seed 0). With
no --model it first makes a *randomly initialised* t5-small-geometry preset,
so the accuracy is that of a random frozen network: the point is the pipeline
and its wall time, not the score.

    python benchmarks/sst2_prompt_tuning.py --data-dir ../shared/assets \
        [--model PRESET] [--steps 300] [--prompt-length 20] [--dtype mixed_bfloat16]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from keras_prompt import cli


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--model")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--prompt-length", type=int, default=20)
    parser.add_argument("--dtype", default="mixed_bfloat16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="sst2_bench_"))
    model = args.model
    if model is None:
        model = str(out / "random_t5_small")
        cli.main(
            [
                "make-preset", "--geometry", "t5_small", "--seed", str(args.seed),
                "--vocab", str(Path(args.data_dir) / "t5" / "spiece.model"),
                "--out", model,
            ]
        )
    start = time.perf_counter()
    code = cli.main(
        [
            "train", "--task", "sst2", "--model", model, "--data-dir", args.data_dir,
            "--prompt-length", str(args.prompt_length), "--init", "class_labels",
            "--steps", str(args.steps), "--batch-size", str(args.batch_size),
            "--max-input-length", "128", "--dtype", args.dtype, "--seed",
            str(args.seed), "--out", str(out / "run"), "--verbose", "2",
        ]
    )
    if code:
        sys.exit(code)
    wall = time.perf_counter() - start
    result = json.loads((out / "run" / "metrics.json").read_text())
    print(
        f"\nSST-2 validation accuracy {100 * result['eval']['accuracy']:.2f}% on "
        f"{result['eval']['num_examples']} held-out examples after {args.steps} "
        f"steps (batch {args.batch_size}, P={args.prompt_length}, {args.dtype}); "
        f"train {result['train_seconds']} s, train+eval wall {wall:.0f} s; "
        f"checkpoint: {model}"
    )
    print(
        "reproduce: python benchmarks/sst2_prompt_tuning.py --data-dir "
        f"{args.data_dir} --steps {args.steps} --prompt-length {args.prompt_length} "
        f"--dtype {args.dtype}" + (f" --model {args.model}" if args.model else "")
    )


if __name__ == "__main__":
    main()
