"""Measured dense-matmul peak of this CPU, the ceiling for training throughput.

A prompt-tuning step is almost all matmuls, so "achieved GFLOP/s / matmul
peak" says how much of the step is overhead. The peak is measured, not taken
from a spec sheet: TensorFlow's oneDNN matmul (what keras-prompt runs) on a
large square problem and on the GEMM shapes of the benchmark step (t5-small,
batch 32, 148 encoder positions), best of several timed repetitions each.
`benchmarks/peft_worker.py --matmul-peak` measures PyTorch's the same way.

    python benchmarks/matmul_peak.py [--dtypes float32 bfloat16] [--json]

Absolute numbers swing 2-3x with other load on a shared 2-core machine; run it
on a quiet machine (or beside the throughput runs, as train_throughput.py does).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

#: (m, k, n): a large square problem, then the step's own GEMMs (encoder
#: tokens x hidden x {hidden, ffn}, and the FFN's down-projection).
SHAPES: tuple[tuple[int, int, int], ...] = (
    (4096, 4096, 4096),
    (4736, 512, 2048),
    (4736, 2048, 512),
    (4736, 512, 512),
)


def matmul_gflops(
    m: int, k: int, n: int, dtype: str, repeats: int = 5, inner: int = 3
) -> float:
    """Best-of-`repeats` GFLOP/s of an `(m, k) @ (k, n)` matmul in `dtype`."""
    a = tf.cast(tf.random.normal((m, k)), dtype)
    b = tf.cast(tf.random.normal((k, n)), dtype)
    matmul = tf.function(lambda a, b: tf.matmul(a, b))
    matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            out = matmul(a, b)
        out.numpy()
        best = min(best, (time.perf_counter() - start) / inner)
    return 2.0 * m * k * n / best / 1e9


def measure(dtypes: tuple[str, ...] = ("float32", "bfloat16")) -> dict:
    """Per-dtype GFLOP/s for every shape in `SHAPES`, and the best of them."""
    results: dict = {"framework": f"tensorflow {tf.__version__} (oneDNN)"}
    for dtype in dtypes:
        per_shape = {
            "x".join(map(str, shape)): round(matmul_gflops(*shape, dtype), 1)
            for shape in SHAPES
        }
        results[dtype] = {"peak": max(per_shape.values()), "shapes": per_shape}
    results["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--json", action="store_true", help="one `RESULT {json}` line")
    args = parser.parse_args()
    results = measure(tuple(args.dtypes))
    if args.json:
        print("RESULT " + json.dumps(results))
        return
    print(f"{results['framework']}, load avg {results['loadavg']}")
    for dtype in args.dtypes:
        shapes = ", ".join(f"{s}: {g}" for s, g in results[dtype]["shapes"].items())
        print(f"{dtype}: peak {results[dtype]['peak']} GFLOP/s ({shapes})")


if __name__ == "__main__":
    main()
