"""Prompt ensembling (Lester et al. 2021, Table 3) from saved prompt files.

Loads K prompts trained for one task on the same frozen model, classifies the
task's validation split with all K in one batch per step
(`keras_prompt.ensemble_predict`, per-example prompts) and prints each
prompt's score, their average, the best one and the majority-vote ensemble.

    python examples/ensemble.py --task sst2 --data-dir ../shared/assets \
        --prompts runs/ens/s*/sst2.npy --out runs/ens/ensemble.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--model", help="preset (default: the embedded checkpoint)")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--prompts", nargs="+", required=True, help="K .npy files")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--limit", type=int, help="first N examples only")
    parser.add_argument("--batch-size", type=int, default=16, help="texts per pass")
    parser.add_argument("--max-input-length", type=int, default=256)
    parser.add_argument("--out", help="write the report here as JSON")
    args = parser.parse_args(argv)

    import numpy as np

    from keras_prompt import PromptTunedT5, ensemble_predict, ensemble_report
    from keras_prompt.data import get_task, load_examples, roc_auc
    from keras_prompt.prompts import read_prompt_array

    if args.model is None:
        from keras_prompt.presets import default_preset_path

        args.model = str(default_preset_path())
    task = get_task(args.task)
    examples = load_examples(task, args.split, data_dir=args.data_dir)
    examples = examples[: args.limit] if args.limit else examples
    prompts = [read_prompt_array(p) for p in args.prompts]
    model = PromptTunedT5.from_preset(
        args.model,
        prompt_length=prompts[0].shape[0],
        encoder_sequence_length=args.max_input_length,
    )
    start = time.perf_counter()
    prediction = ensemble_predict(
        model,
        prompts,
        [e.inputs for e in examples],
        task.verbalizers,
        batch_size=args.batch_size,
    )
    seconds = time.perf_counter() - start
    gold = np.array([e.label for e in examples])
    report = ensemble_report(prediction, gold, task)
    if task.num_classes == 2:
        margins = prediction.scores[:, :, 1] - prediction.scores[:, :, 0]
        for k, metrics in enumerate(report["per_prompt"]):
            metrics["auc"] = roc_auc(margins[:, k], gold)
        # The ensemble's margin: the mean margin over prompts.
        report["ensemble"]["auc_mean_margin"] = roc_auc(margins.mean(axis=1), gold)
    report.update(
        {
            "task": task.name,
            "model": args.model,
            "prompts": list(args.prompts),
            "split": args.split,
            "num_examples": len(examples),
            "predicted_counts_ensemble": np.bincount(
                prediction.labels, minlength=task.num_classes
            ).tolist(),
            "unanimous_fraction": float(
                np.mean(prediction.votes.max(axis=1) == len(prompts))
            ),
            "seconds": round(seconds, 1),
        }
    )
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
