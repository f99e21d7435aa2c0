"""A real TFX pipeline: CsvExampleGen -> Trainer(module_file) -> Pusher.

Runs under TFX's LocalDagRunner (Beam DirectRunner, SQLite ML Metadata) on a
small real SST-2 CSV cut from the shared assets and a tiny random T5 preset,
then loads what the Pusher wrote in a TF-only process and queries it. Bad
inputs must fail the Trainer with run_fn's message and push nothing.

Set KERAS_PROMPT_TFX_REPORT=path.json to get the figures (per-component wall
times, Pusher output size); KERAS_PROMPT_MAIN_PYTHON=python to also load the
pushed model with that interpreter (the main stack's TF).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from keras_prompt import tfx as kp_tfx
from keras_prompt.tfx import TrainerInputError

CLIENT = Path(__file__).with_name("tf_only_client.py")
OPTIONS = dict(
    steps=20,
    prompt_length=8,
    batch_size=16,
    max_input_length=64,
    max_decode_length=4,
    eval_batch_size=64,
)


def versions(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.isdigit())


def folder_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def run(assets, tiny_preset, tmp_path_factory):
    """Runs the pipeline once for the module; returns its paths and figures."""
    root = tmp_path_factory.mktemp("pipeline")
    data = root / "data"
    kp_tfx.write_task_csv(
        "sst2", "train", assets, data / "train" / "sst2.csv", limit=256
    )
    kp_tfx.write_task_csv(
        "sst2", "validation", assets, data / "eval" / "sst2.csv", limit=128
    )
    serving = root / "serving"
    pipeline = kp_tfx.create_pipeline(
        data,
        "sst2",
        {"checkpoint": str(tiny_preset), **OPTIONS},
        serving,
        pipeline_root=root / "tfx_root",
    )
    start = time.perf_counter()
    kp_tfx.run_local(pipeline)
    seconds = time.perf_counter() - start
    (version,) = versions(serving)
    figures = {
        "tfx": importlib.metadata.version("tfx"),
        "pipeline_seconds": round(seconds, 1),
        "component_seconds": kp_tfx.component_wall_times(
            root / "tfx_root" / "metadata.sqlite"
        ),
        "pushed_bytes": folder_bytes(version),
        "pushed_files": {
            str(p.relative_to(version)): p.stat().st_size
            for p in sorted(version.rglob("*"))
            if p.is_file()
        },
        "train_rows": 256,
        "eval_rows": 128,
        "options": OPTIONS,
    }
    report = os.environ.get("KERAS_PROMPT_TFX_REPORT")
    if report:
        Path(report).write_text(json.dumps(figures, indent=2) + "\n")
    return {"root": root, "serving": serving, "version": version, "figures": figures}


def test_pipeline_pushes_one_servable_version(run):
    version = run["version"]
    assert (version / "saved_model.pb").is_file()
    assert (version / "assets.extra" / "tf_serving_warmup_requests").is_file()
    trainer_report = json.loads((version / kp_tfx.REPORT_FILE).read_text())
    assert trainer_report["task"] == "sst2"
    assert trainer_report["num_train_examples"] == 256
    assert trainer_report["eval"]["num_examples"] == 128
    assert trainer_report["options"]["steps"] == OPTIONS["steps"]
    seconds = run["figures"]["component_seconds"]
    assert {"CsvExampleGen", "Trainer", "Evaluator", "Pusher"} <= set(seconds)
    # The Evaluator blessed it (accuracy >= 0, no earlier blessed model).
    assert blessings(run["root"]) == ["BLESSED"]


def blessings(root: Path) -> list[str]:
    """The Evaluator's verdicts (BLESSED / NOT_BLESSED), oldest first."""
    folders = sorted(
        (root / "tfx_root" / "Evaluator" / "blessing").iterdir(),
        key=lambda p: int(p.name),
    )
    return [
        next(f.name for f in folder.iterdir() if f.name.endswith("BLESSED"))
        for folder in folders
    ]


def test_evaluator_blocks_a_worse_model(run, tiny_preset):
    """The same pipeline again with a prompt trained for 1 step from a random
    init against a 0.99 accuracy threshold: the Evaluator does not bless it
    (and the last blessed model, the first run's, is its baseline), so the
    Pusher pushes nothing new."""
    data = run["root"] / "data"
    pipeline = kp_tfx.create_pipeline(
        data,
        "sst2",
        {"checkpoint": str(tiny_preset), **OPTIONS, "steps": 1,
         "init": "random_uniform"},
        run["serving"],
        pipeline_root=run["root"] / "tfx_root",
        min_accuracy=0.99,
    )
    kp_tfx.run_local(pipeline)
    assert blessings(run["root"]) == ["BLESSED", "NOT_BLESSED"]
    assert versions(run["serving"]) == [run["version"]]
    import tensorflow_model_analysis as tfma

    first, second = sorted(
        (run["root"] / "tfx_root" / "Evaluator" / "evaluation").iterdir(),
        key=lambda p: int(p.name),
    )
    assert tfma.load_validation_result(str(first)).validation_ok
    result = tfma.load_validation_result(str(second))
    assert not result.validation_ok
    failed = {
        (failure.metric_key.name, failure.metric_key.is_diff)
        for per_slice in result.metric_validations_per_slice
        for failure in per_slice.failures
    }
    assert failed == {("sparse_categorical_accuracy", False)}  # below 0.99
    # The first run's model was evaluated beside it as the baseline.
    models = {
        key.key.model_name
        for metrics in tfma.load_metrics(str(second))
        for key in metrics.metric_keys_and_values
    }
    assert models == {"candidate", "baseline"}


def query(python: str, saved_model: Path) -> dict:
    result = subprocess.run(
        [python, str(CLIENT), str(saved_model)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=saved_model.parent,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_answers(answers: dict) -> None:
    assert answers["signatures"] == [
        "by_task",
        "classify",
        "ensemble",
        "evaluate_tf_examples",
        "serve_tf_examples",
        "serving_default",
    ]
    plain = answers["serve_tf_examples"]
    # No `task` feature: the export's default task (the trained one) is used.
    assert plain == answers["serve_tf_examples_with_task"]
    assert set(plain["label_text"]) <= {"negative", "positive"}
    assert all(label in (0, 1) for label in plain["label"])
    assert len(plain["output_text"]) == 2
    generated = answers["serving_default"]
    assert len(generated["output_text"]) == 1
    assert generated["output_score"][0] <= 0.0
    assert answers["prompt_shape"] == [1, OPTIONS["prompt_length"], 16]


def test_pushed_model_answers_in_a_tf_only_process(run):
    check_answers(query(sys.executable, run["version"]))


@pytest.mark.skipif(
    not os.environ.get("KERAS_PROMPT_MAIN_PYTHON"),
    reason="KERAS_PROMPT_MAIN_PYTHON (the main stack's python) not set",
)
def test_pushed_model_answers_on_the_main_stack_tf(run):
    answers = query(os.environ["KERAS_PROMPT_MAIN_PYTHON"], run["version"])
    check_answers(answers)
    # Same model, same answers, whichever TF release serves it.
    mine = query(sys.executable, run["version"])
    assert answers["serve_tf_examples"]["label"] == mine["serve_tf_examples"]["label"]


def run_failing(pipeline, serving: Path, message: str) -> None:
    with pytest.raises(TrainerInputError) as error:
        kp_tfx.run_local(pipeline)
    assert message in str(error.value)
    assert versions(serving) == []


def test_csv_missing_a_column_fails_the_trainer_and_pushes_nothing(
    tmp_path, tiny_preset
):
    data = tmp_path / "data"
    data.mkdir()
    rows = "".join(f"a fine film number {i},{i % 2}\n" for i in range(24))
    (data / "reviews.csv").write_text("review,label\n" + rows)
    serving = tmp_path / "serving"
    pipeline = kp_tfx.create_pipeline(
        data,
        "sst2",
        {"checkpoint": str(tiny_preset), "steps": 2},
        serving,
        pipeline_root=tmp_path / "root",
    )
    run_failing(pipeline, serving, "needs column(s) ['sentence']")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"steps": 2}, "custom_config lacks ['checkpoint']"),
        ({"steps": 2, "checkpoint": "/no/such/preset"}, "is not a directory"),
    ],
)
def test_bad_custom_config_fails_the_trainer_and_pushes_nothing(
    tmp_path, assets, options, message
):
    data = tmp_path / "data"
    kp_tfx.write_task_csv("sst2", "train", assets, data / "sst2.csv", limit=30)
    serving = tmp_path / "serving"
    pipeline = kp_tfx.create_pipeline(
        data,
        "sst2",
        options,
        serving,
        pipeline_root=tmp_path / "root",
        validate=False,  # let the bad config reach run_fn inside TFX
    )
    run_failing(pipeline, serving, message)


def test_unknown_task_fails_the_trainer_and_pushes_nothing(
    tmp_path, assets, tiny_preset
):
    data = tmp_path / "data"
    kp_tfx.write_task_csv("sst2", "train", assets, data / "sst2.csv", limit=30)
    serving = tmp_path / "serving"
    pipeline = kp_tfx.create_pipeline(
        data,
        "imdb",
        {"checkpoint": str(tiny_preset), "steps": 2},
        serving,
        pipeline_root=tmp_path / "root",
        validate=False,
    )
    run_failing(pipeline, serving, "unknown task 'imdb'")


def test_create_pipeline_validates_options_up_front(tmp_path):
    with pytest.raises(TrainerInputError, match="unknown task 'imdb'"):
        kp_tfx.create_pipeline(
            tmp_path,
            "imdb",
            {"checkpoint": "x"},
            tmp_path / "serving",
            pipeline_root=tmp_path / "root",
        )


def test_same_pipeline_compiles_for_vertex(tmp_path, assets):
    """The pipeline object also goes to Kubeflow V2 (Vertex AI Pipelines)."""
    from tfx import v1 as tfx

    data = tmp_path / "data"
    kp_tfx.write_task_csv("sst2", "train", assets, data / "sst2.csv", limit=30)
    pipeline = kp_tfx.create_pipeline(
        data,
        "sst2",
        {"checkpoint": "gs://bucket/presets/t5_base", "steps": 100},
        "gs://bucket/serving/sst2",
        pipeline_root=tmp_path / "root",
        metadata_path=None,
    )
    output = tmp_path / "pipeline.json"
    tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image="example.org/keras-prompt-tfx:1"
        ),
        output_filename=str(output),
    ).run(pipeline)
    spec = json.loads(output.read_text())
    executors = spec["pipelineSpec"]["deploymentSpec"]["executors"]
    assert {
        "CsvExampleGen_executor",
        "Trainer_executor",
        "Evaluator_executor",
        "Pusher_executor",
    } <= set(executors)
    text = json.dumps(spec)
    assert "gs://bucket/presets/t5_base" in text and "keras_prompt_trainer" in text


def test_declared_requirements_admit_this_stack():
    """keras-prompt's install_requires must accept the TFX lock's versions.

    The stage installs keras-prompt with --no-deps (the lock pins every
    dependency), so this is where a range that excludes the TFX stack shows.
    """
    failures = []
    for text in importlib.metadata.requires("keras-prompt") or []:
        requirement = Requirement(text)
        if requirement.marker is not None and "extra" in str(requirement.marker):
            continue
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            failures.append(f"{requirement.name} is not installed")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            failures.append(f"{requirement} does not admit {installed}")
    assert not failures, (
        "setup.cfg's install_requires exclude the TFX stack: " + "; ".join(failures)
    )
