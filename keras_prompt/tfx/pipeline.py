"""Build the CsvExampleGen -> Trainer -> Evaluator -> Pusher pipeline for a task.

The Evaluator (TFMA) measures the trained model's accuracy on ExampleGen's
eval split through its `evaluate_tf_examples` signature and blesses it only
when it reaches `min_accuracy` and does not fall more than
`max_accuracy_drop` below the last blessed model (found by a
`LatestBlessedModelStrategy` resolver); the Pusher pushes blessed models only.

`create_pipeline` returns a plain `tfx.dsl.Pipeline`: run it locally with
`run_local` (TFX's `LocalDagRunner`: Beam's DirectRunner, SQLite metadata), or
hand the same object to `KubeflowV2DagRunner` (Vertex AI Pipelines) or
`KubeflowDagRunner`. TFX is imported inside the functions only, so importing
`keras_prompt.tfx` works without TFX installed.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from keras_prompt.tfx.trainer import MODULE_FILE, TrainerOptions

#: Training steps when neither the options nor the caller give any (as
#: `keras-prompt train`).
DEFAULT_STEPS = 1000

#: Beam options for local runs: one in-process worker. Multi-process Beam
#: would pay an interpreter and TF import per worker for a few thousand rows.
LOCAL_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")


def write_task_csv(
    task: Any,
    split: str,
    data_dir: str | os.PathLike,
    path: str | os.PathLike,
    *,
    limit: int | None = None,
) -> Path:
    """Writes a labelled split of a task's official files as a task CSV.

    The header is the task's canonical features then `label` (the class
    index), e.g. `sentence,label` for SST-2: the layout `run_fn` reads after
    `CsvExampleGen`. Splits are `keras_prompt.data.load_examples`' (the
    official dev file when present; otherwise SST-2, MRPC and RTE
    "validation" is the seeded held-out part of the train file).

    Args:
        task: a task name or `keras_prompt.data.Task`.
        split: "train" or "validation" (test sets are unlabelled).
        data_dir: folder laid out like `shared/assets` (glue/, superglue/).
        path: the CSV to write (parent folders are created).
        limit: keep the first `limit` rows.
    """
    from keras_prompt.data import get_task, split_source
    from keras_prompt.data.readers import load_local_rows

    task = get_task(task)
    rows = load_local_rows(task, split_source(task, split, data_dir))
    if limit is not None:
        rows = rows[:limit]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text_features = [feature for _, feature in task.input_fields]
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*text_features, "label"])
        for features, label in rows:
            # CsvExampleGen reads line by line: a newline inside a quoted
            # field would split the row, so fold any into spaces.
            cells = [" ".join(str(features[name]).split()) for name in text_features]
            writer.writerow([*cells, label])
    return path


def _is_local(path: str) -> bool:
    return "://" not in path


def _input_config(data_root: str):
    """Two named splits when `data_root` has `train/` and `eval/`, else None."""
    import tensorflow as tf
    from tfx import v1 as tfx

    if all(tf.io.gfile.isdir(os.path.join(data_root, s)) for s in ("train", "eval")):
        return tfx.proto.Input(
            splits=[
                tfx.proto.Input.Split(name="train", pattern="train/*"),
                tfx.proto.Input.Split(name="eval", pattern="eval/*"),
            ]
        )
    return None  # CsvExampleGen's default: every CSV, hashed 2:1 train:eval.


def create_pipeline(
    data_root: str | os.PathLike,
    task: str,
    trainer_options: Mapping[str, Any] | TrainerOptions,
    serving_dir: str | os.PathLike,
    *,
    pipeline_root: str | os.PathLike,
    pipeline_name: str | None = None,
    metadata_path: str | os.PathLike | None = "auto",
    module_file: str | None = None,
    beam_pipeline_args: Sequence[str] | None = None,
    enable_cache: bool = False,
    validate: bool = True,
    evaluate: bool = True,
    min_accuracy: float = 0.0,
    max_accuracy_drop: float | None = 0.0,
):
    """A CsvExampleGen -> Trainer -> Evaluator -> Pusher pipeline for `task`.

    Args:
        data_root: folder of task CSVs (see `write_task_csv`). With `train/`
            and `eval/` subfolders those are the splits; otherwise every CSV
            in it is hashed 2:1 into train and eval by CsvExampleGen.
        task: the task name (`sst2`, `rte`, ...); becomes `custom_config`'s.
        trainer_options: the rest of the Trainer's `custom_config` (see
            `TrainerOptions`): at least `checkpoint`; `steps` defaults to
            `DEFAULT_STEPS`.
        serving_dir: the Pusher's destination, TF Serving's model base path;
            each push is a new numbered version folder in it.
        pipeline_root: where TFX keeps artifacts (a local or `gs://` path).
        pipeline_name: default `keras-prompt-<task>`.
        metadata_path: SQLite ML Metadata file. `"auto"`: under
            `pipeline_root` when it is local, none otherwise; pass `None` for
            orchestrators that bring their own metadata (Kubeflow, Vertex).
        module_file: Trainer module file; default `MODULE_FILE`, which
            re-exports `keras_prompt.tfx.run_fn`.
        beam_pipeline_args: Beam options; default `LOCAL_BEAM_ARGS` for local
            pipeline roots, none otherwise.
        enable_cache: reuse component outputs of earlier identical runs.
        validate: check the options now (`TrainerInputError`), rather than
            only when the Trainer runs.
        evaluate: gate the Pusher with an Evaluator (default). False gives
            CsvExampleGen -> Trainer -> Pusher, which pushes every model.
        min_accuracy: the Evaluator blesses a model only if its accuracy on
            the eval split is at least this.
        max_accuracy_drop: ... and at most this much below the last blessed
            model's accuracy on the same examples (`None`: no comparison).
            The first run has no blessed model and is judged on
            `min_accuracy` alone.

    Returns:
        A `tfx.dsl.Pipeline`, for `run_local` or any TFX DAG runner.
    """
    from tfx import v1 as tfx

    config = _custom_config(task, trainer_options, validate)
    data_root = os.fspath(data_root)
    pipeline_root = os.fspath(pipeline_root)
    steps = config.get("steps")

    example_gen = tfx.components.CsvExampleGen(
        input_base=data_root, input_config=_input_config(data_root)
    )
    trainer = tfx.components.Trainer(
        module_file=module_file or MODULE_FILE,
        examples=example_gen.outputs["examples"],
        train_args=tfx.proto.TrainArgs(
            num_steps=steps if isinstance(steps, int) else None
        ),
        eval_args=tfx.proto.EvalArgs(),
        custom_config=config,
    )
    components = [example_gen, trainer]
    gate = {}
    if evaluate:
        resolver, evaluator = _evaluator(
            tfx, example_gen, trainer, task, min_accuracy, max_accuracy_drop
        )
        components += [resolver, evaluator]
        gate = {"model_blessing": evaluator.outputs["blessing"]}
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=os.fspath(serving_dir)
            )
        ),
        **gate,
    )
    components.append(pusher)
    metadata_config = _metadata_config(tfx, metadata_path, pipeline_root)
    if beam_pipeline_args is None:
        beam_pipeline_args = LOCAL_BEAM_ARGS if _is_local(pipeline_root) else ()
    name = pipeline_name or f"keras-prompt-{str(task).lower()}"
    return tfx.dsl.Pipeline(
        pipeline_name=name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=metadata_config,
        beam_pipeline_args=list(beam_pipeline_args),
    )


def _custom_config(task, trainer_options, validate: bool) -> dict[str, Any]:
    """The Trainer's `custom_config`: the options, the task, default steps."""
    if isinstance(trainer_options, TrainerOptions):
        trainer_options = trainer_options.to_custom_config()
    config = dict(trainer_options)
    given_task = config.get("task")
    if given_task is not None and str(given_task).lower() != str(task).lower():
        raise ValueError(
            f"task {task!r} and trainer_options['task'] {given_task!r} differ."
        )
    config["task"] = task
    config.setdefault("steps", DEFAULT_STEPS)
    if validate:
        config = TrainerOptions.from_custom_config(config).to_custom_config()
    return config


def _metadata_config(tfx, metadata_path, pipeline_root: str):
    """SQLite ML Metadata (`"auto"`: under a local `pipeline_root`), or None."""
    if metadata_path == "auto":
        metadata_path = (
            os.path.join(pipeline_root, "metadata.sqlite")
            if _is_local(pipeline_root)
            else None
        )
    if metadata_path is None:
        return None
    return tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.fspath(metadata_path)
    )


def eval_config(task: str, min_accuracy: float, max_accuracy_drop: float | None):
    """The TFMA `EvalConfig` of the Evaluator: accuracy over the whole eval
    split, through the model's `evaluate_tf_examples` signature."""
    import tensorflow_model_analysis as tfma

    from keras_prompt.serving.export import EVAL_SIGNATURE

    if not 0.0 <= min_accuracy <= 1.0:
        raise ValueError(f"`min_accuracy` must be in [0, 1]; got {min_accuracy}.")
    if max_accuracy_drop is not None and max_accuracy_drop < 0:
        raise ValueError(
            f"`max_accuracy_drop` must be >= 0 or None; got {max_accuracy_drop}."
        )
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(
            lower_bound={"value": float(min_accuracy)}
        )
    )
    if max_accuracy_drop is not None:
        # TFMA compares candidate - baseline with the bound; the epsilon
        # keeps an equally good model (drop 0) blessed despite float noise.
        threshold.change_threshold.CopyFrom(
            tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": -float(max_accuracy_drop) - 1e-10},
            )
        )
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name=EVAL_SIGNATURE,
                label_key="label",
                prediction_key="probabilities",
                preprocessing_function_names=[],
            )
        ],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(
                        class_name="SparseCategoricalAccuracy", threshold=threshold
                    ),
                ]
            )
        ],
    )


def _evaluator(tfx, example_gen, trainer, task, min_accuracy, max_accuracy_drop):
    resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.ModelBlessing
        ),
    ).with_id("latest_blessed_model_resolver")
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=resolver.outputs["model"],
        eval_config=eval_config(task, min_accuracy, max_accuracy_drop),
    )
    return resolver, evaluator


def run_local(pipeline) -> None:
    """Runs a pipeline in this process with TFX's `LocalDagRunner`.

    A failing component raises here (TFX re-raises the component's error,
    e.g. `run_fn`'s `TrainerInputError`); later components do not run.
    """
    # The Evaluator loads the SavedModel in this process; its SentencePiece
    # ops are TF Text's, registered by importing it.
    import tensorflow_text  # noqa: F401
    from tfx import v1 as tfx

    tfx.orchestration.LocalDagRunner().run(pipeline)


def component_wall_times(metadata_path: str | os.PathLike) -> dict[str, float]:
    """Seconds each component's latest execution took, from ML Metadata.

    Keys are component ids (`CsvExampleGen`, `Trainer`, `Pusher`); the time
    is from the execution's creation to its last update in the metadata
    store, i.e. what the orchestrator measured for the component's run.
    """
    from ml_metadata.metadata_store import metadata_store
    from tfx import v1 as tfx

    config = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.fspath(metadata_path)
    )
    store = metadata_store.MetadataStore(config)
    times: dict[str, tuple[int, float]] = {}
    for execution in store.get_executions():
        component = _component_id(store, execution)
        seconds = (
            execution.last_update_time_since_epoch - execution.create_time_since_epoch
        ) / 1000.0
        if component not in times or execution.id > times[component][0]:
            times[component] = (execution.id, seconds)
    return {name: seconds for name, (_, seconds) in sorted(times.items())}


def _component_id(store, execution) -> str:
    """The component id of an execution, from its "node" context.

    TFX attaches every execution to a "pipeline" context named after the
    pipeline and a "node" context named "<pipeline>.<component id>".
    """
    contexts = store.get_contexts_by_execution(execution.id)
    pipeline = next((c.name for c in contexts if c.type == "pipeline"), "")
    for context in contexts:
        if context.type == "node":
            return context.name.removeprefix(f"{pipeline}.")
    return execution.type
