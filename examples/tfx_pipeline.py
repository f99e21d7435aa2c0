"""Prompt-tune a frozen T5 inside a TFX pipeline: CSV -> Trainer -> Pusher.

Runs CsvExampleGen -> Trainer (keras-prompt's `run_fn`) -> Pusher on one task
with TFX's LocalDagRunner, then prints the per-component wall times, the
Trainer's report and what the Pusher wrote. With `--vertex-json` it instead
compiles the same pipeline object for Vertex AI Pipelines (Kubeflow V2).

Needs the TFX environment (Python 3.10, TF 2.16): `scripts/tfx_env.sh` builds
it; see docs/tfx.md.

    VENV=$(bash scripts/tfx_env.sh | tail -n 1)
    $VENV/bin/pip install --no-deps .
    $VENV/bin/keras-prompt make-preset --geometry t5_1_1_tiny \\
        --vocab ../shared/assets/t5/spiece.model --out runs/tiny_t5
    $VENV/bin/python examples/tfx_pipeline.py --task sst2 \\
        --checkpoint runs/tiny_t5 --out runs/tfx_sst2 --steps 50
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="sst2")
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="keras-hub preset dir/name or Hugging Face T5 checkpoint dir",
    )
    parser.add_argument("--out", default="runs/tfx_pipeline")
    parser.add_argument(
        "--data-root",
        help="folder of task CSVs (train/ and eval/ subfolders, or CSVs to hash "
        "2:1); default: cut from --assets",
    )
    parser.add_argument("--assets", default="../shared/assets")
    parser.add_argument("--train-rows", type=int, default=1000)
    parser.add_argument("--eval-rows", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--prompt-length", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-input-length", type=int, default=128)
    parser.add_argument("--init", default="class_labels")
    parser.add_argument(
        "--vertex-json",
        help="compile for Vertex AI Pipelines into this JSON instead of running",
    )
    parser.add_argument(
        "--image",
        default="gcr.io/YOUR_PROJECT/keras-prompt-tfx:latest",
        help="container image with TFX 1.16 and keras-prompt (Vertex only)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    from keras_prompt import tfx as kp_tfx

    out = Path(args.out)
    data_root = Path(args.data_root) if args.data_root else out / "data"
    if not args.data_root:
        # The official files as task CSVs: the layout CsvExampleGen reads.
        kp_tfx.write_task_csv(
            args.task,
            "train",
            args.assets,
            data_root / "train" / f"{args.task}.csv",
            limit=args.train_rows,
        )
        kp_tfx.write_task_csv(
            args.task,
            "validation",
            args.assets,
            data_root / "eval" / f"{args.task}.csv",
            limit=args.eval_rows,
        )
    options = {
        "checkpoint": args.checkpoint,
        "steps": args.steps,
        "prompt_length": args.prompt_length,
        "batch_size": args.batch_size,
        "max_input_length": args.max_input_length,
        "init": args.init,
    }
    serving_dir = out / "serving"

    if args.vertex_json:
        from tfx import v1 as tfx

        # The same pipeline object; only the runner differs. On Vertex the
        # pipeline root, data and checkpoint would be gs:// paths readable
        # from the image, and metadata is Vertex's own.
        pipeline = kp_tfx.create_pipeline(
            data_root,
            args.task,
            options,
            serving_dir,
            pipeline_root=out / "vertex_root",
            metadata_path=None,
        )
        runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
            config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
                default_image=args.image
            ),
            output_filename=args.vertex_json,
        )
        runner.run(pipeline)
        print(f"wrote {args.vertex_json}: submit it with google-cloud-aiplatform")
        return

    pipeline = kp_tfx.create_pipeline(
        data_root, args.task, options, serving_dir, pipeline_root=out / "tfx_root"
    )
    start = time.perf_counter()
    kp_tfx.run_local(pipeline)
    seconds = time.perf_counter() - start
    times = kp_tfx.component_wall_times(out / "tfx_root" / "metadata.sqlite")
    version = max(serving_dir.iterdir(), key=lambda p: int(p.name))
    size = sum(p.stat().st_size for p in version.rglob("*") if p.is_file())
    report = json.loads((version / kp_tfx.REPORT_FILE).read_text())
    print(
        json.dumps(
            {
                "pipeline_seconds": round(seconds, 1),
                "component_seconds": times,
                "pushed": str(version),
                "pushed_megabytes": round(size / 2**20, 2),
                "eval": report["eval"],
                "final_loss": report["final_loss"],
            },
            indent=2,
        )
    )
    print(
        "Serve it: tensorflow_model_server --rest_api_port=8501 "
        f"--model_name={args.task} --model_base_path={serving_dir.resolve()}"
    )


if __name__ == "__main__":
    main()
