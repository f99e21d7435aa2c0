"""Trainable vs total parameters of prompt tuning on real T5 geometries.

python benchmarks/param_counts.py
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras_prompt  # noqa: E402
from keras_prompt.models.geometries import build_backbone  # noqa: E402

COMMAND = "python benchmarks/param_counts.py"


def main() -> None:
    print("| geometry | prompt length | trainable | total | trainable share |")
    print("|---|---|---|---|---|")
    for geometry in ("t5_small", "t5_base", "t5_1_1_small", "t5_1_1_base"):
        backbone = build_backbone(geometry)
        for length in (20, 100):
            model = keras_prompt.PromptTunedT5(backbone, prompt_length=length)
            trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
            total = model.count_params()
            print(
                f"| {geometry} | {length} | {trainable:,} | {total:,} | "
                f"{100 * trainable / total:.4f}% |"
            )
    print(f"\nreproduce: {COMMAND}")


if __name__ == "__main__":
    main()
