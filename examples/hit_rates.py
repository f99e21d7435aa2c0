"""Verbalizer hit-rate of many prompt files (Lester et al. 2021, Section 7).

For each prompt, the fraction of positions whose `-k` nearest vocabulary
tokens (cosine, over the model's input embedding table) include a token of
the task's verbalizers; `keras-prompt inspect FILE --model M --task T` prints
the same number for one file. Files named like the ablation's
(`p{length}_{init}_s{seed}.npy`) get those columns in the CSV, and with
`--with-init` also the hit-rate of the *initial* prompt (rebuilt with the
same initializer and seed as `keras-prompt train --init`), the mean position
norms before and after training, and the mean cosine between each trained
position and its initial value.

    python examples/hit_rates.py --task sst2 --out hitrate.csv runs/ablate/prompts/*.npy
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
from pathlib import Path
from typing import Sequence

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_NAME = re.compile(r"^p(?P<prompt_length>\d+)_(?P<init>.+)_s(?P<seed>\d+)$")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("prompts", nargs="+", help=".npy prompt files")
    parser.add_argument("--model", help="preset (default: the embedded checkpoint)")
    parser.add_argument("--task", help="use this task's verbalizers")
    parser.add_argument("--verbalizers", nargs="+", help="or give label strings")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument(
        "--with-init",
        action="store_true",
        help="also rebuild each ablation-named prompt's initial value",
    )
    parser.add_argument("--out", help="CSV path")
    args = parser.parse_args(argv)

    import keras_hub
    import numpy as np

    from keras_prompt.inspection import verbalizer_hit_rate
    from keras_prompt.prompts import read_prompt_array

    if args.model is None:
        from keras_prompt.presets import default_preset_path

        args.model = str(default_preset_path())
    verbalizers = args.verbalizers
    if args.task:
        from keras_prompt.data import get_task

        verbalizers = list(get_task(args.task).verbalizers)
    if not verbalizers:
        raise SystemExit("error: give --task or --verbalizers.")
    backbone = keras_hub.models.T5Backbone.from_preset(args.model)
    table = np.asarray(backbone.token_embedding.embeddings.numpy(), "float32")
    tokenizer = keras_hub.models.T5Tokenizer.from_preset(args.model)
    ids = sorted(
        {
            int(i)
            for v in verbalizers
            for i in np.asarray(tokenizer.tokenize(v)).reshape(-1)
        }
    )
    if args.with_init and not args.task:
        raise SystemExit("error: --with-init needs --task (class-label init).")
    rows = []
    for path in args.prompts:
        match = _NAME.match(Path(path).stem)
        prompt = read_prompt_array(path)
        rate = verbalizer_hit_rate(prompt, table, ids, k=args.k)
        row = {"file": str(path), "hit_rate": round(rate, 4)}
        if match:
            row.update(match.groupdict())
        if args.with_init and match:
            from keras_prompt.data import get_task
            from keras_prompt.initializers import by_name

            initializer = by_name(
                row["init"], get_task(args.task).verbalizers, int(row["seed"])
            )
            initializer = initializer.bind(embeddings=table, tokenizer=tokenizer)
            initial = np.asarray(initializer(prompt.shape), "float32")
            norms = np.linalg.norm(prompt, axis=1)
            initial_norms = np.linalg.norm(initial, axis=1)
            cosine = np.sum(prompt * initial, axis=1) / (norms * initial_norms)
            row.update(
                init_hit_rate=round(
                    verbalizer_hit_rate(initial, table, ids, k=args.k), 4
                ),
                init_norm=round(float(initial_norms.mean()), 3),
                norm=round(float(norms.mean()), 3),
                cosine_to_init=round(float(cosine.mean()), 4),
            )
        rows.append(row)
        print(row, flush=True)
    if args.out:
        fields = ["file", "prompt_length", "init", "seed", "hit_rate"]
        if args.with_init:
            fields += ["init_hit_rate", "init_norm", "norm", "cosine_to_init"]
        with open(args.out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
