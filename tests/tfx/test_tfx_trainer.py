"""`keras_prompt.tfx.run_fn` on fake `fn_args` (no TFX needed).

The inputs are gzipped TFRecords of `tf.Example`s shaped like CsvExampleGen's
(one feature per CSV column: text as bytes, integer columns as int64), made
from real SST-2 / RTE rows of the shared assets. Runs on both stacks: in the
TFX venv, and on the main stack with KERAS_PROMPT_TFX_TESTS=main-stack.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import tensorflow as tf

from keras_prompt import tfx as kp_tfx
from keras_prompt.tfx import TrainerInputError, TrainerOptions


def write_examples(path: Path, rows: list[dict]) -> str:
    """Gzipped tf.Example TFRecords as CsvExampleGen writes; returns a glob."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(str(path), options) as writer:
        for row in rows:
            feature = {}
            for key, value in row.items():
                if isinstance(value, int):
                    feature[key] = tf.train.Feature(
                        int64_list=tf.train.Int64List(value=[value])
                    )
                else:
                    feature[key] = tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[value.encode("utf-8")])
                    )
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())
    return str(path.parent / "*")


def csv_rows(path: Path) -> list[dict]:
    """A task CSV's rows, typed as CsvExampleGen infers them (label: int)."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [{**row, "label": int(row["label"])} for row in rows]


@pytest.fixture(scope="module")
def sst2_files(assets, tmp_path_factory):
    root = tmp_path_factory.mktemp("sst2_examples")
    train_csv = kp_tfx.write_task_csv(
        "sst2", "train", assets, root / "csv" / "train.csv", limit=96
    )
    eval_csv = kp_tfx.write_task_csv(
        "sst2", "validation", assets, root / "csv" / "eval.csv", limit=32
    )
    return SimpleNamespace(
        train=write_examples(root / "Split-train" / "data.gz", csv_rows(train_csv)),
        eval=write_examples(root / "Split-eval" / "data.gz", csv_rows(eval_csv)),
    )


def fn_args(tmp_path, train_files, eval_files, **config):
    return SimpleNamespace(
        train_files=[train_files],
        eval_files=[eval_files],
        train_steps=None,
        eval_steps=None,
        custom_config=config,
        serving_model_dir=str(tmp_path / "model" / "Format-Serving"),
        model_run_dir=str(tmp_path / "model_run"),
    )


SMALL = dict(
    steps=3,
    prompt_length=4,
    batch_size=16,
    max_input_length=48,
    max_decode_length=4,
    eval_batch_size=32,
)


def test_run_fn_trains_evaluates_and_exports(tmp_path, sst2_files, tiny_preset):
    args = fn_args(
        tmp_path,
        sst2_files.train,
        sst2_files.eval,
        checkpoint=str(tiny_preset),
        task="sst2",
        **SMALL,
    )
    report = kp_tfx.run_fn(args)

    serving = Path(args.serving_model_dir)
    assert (serving / "saved_model.pb").is_file()
    stored = json.loads((serving / kp_tfx.REPORT_FILE).read_text())
    assert stored["eval"] == report["eval"]
    assert report["num_train_examples"] == 96
    assert report["eval"]["num_examples"] == 32
    assert 0.0 <= report["eval"]["accuracy"] <= 1.0
    assert report["options"]["steps"] == 3
    run_dir = Path(args.model_run_dir)
    assert {"sst2.npy", "sst2.json", "metrics.json"} <= {
        p.name for p in run_dir.iterdir()
    }
    assert json.loads((run_dir / "sst2.json").read_text())["task"] == "sst2"

    # The export banks the prompt under the task, so tf.Examples with only a
    # `text` feature are rank-classified over SST-2's verbalizers.
    import tensorflow_text  # noqa: F401  (SentencePiece kernels)

    from keras_prompt.serving.client import serialize_examples

    loaded = tf.saved_model.load(str(serving))
    assert set(loaded.signatures) == {
        "serving_default",
        "classify",
        "by_task",
        "ensemble",
        "serve_tf_examples",
        "evaluate_tf_examples",
    }
    # The Evaluator's signature: raw task columns in, class probabilities out,
    # agreeing with rank classification of the formatted text.
    raw = [
        tf.train.Example(
            features=tf.train.Features(
                feature={
                    "sentence": tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[text.encode()])
                    ),
                    "label": tf.train.Feature(
                        int64_list=tf.train.Int64List(value=[1])
                    ),
                }
            )
        ).SerializeToString()
        for text in ("a gem ", "dull")
    ]
    evaluated = loaded.signatures["evaluate_tf_examples"](examples=tf.constant(raw))
    probabilities = evaluated["probabilities"].numpy()
    assert probabilities.shape == (2, 2)
    assert abs(probabilities.sum(axis=1) - 1.0).max() < 1e-5
    formatted_texts = ["sst2 sentence: a gem", "sst2 sentence: dull"]
    formatted = loaded.signatures["serve_tf_examples"](
        examples=tf.constant(serialize_examples(formatted_texts))
    )
    assert evaluated["label"].numpy().tolist() == formatted["label"].numpy().tolist()
    outputs = loaded.signatures["serve_tf_examples"](
        examples=tf.constant(serialize_examples(["sst2 sentence: a gem", "dull"]))
    )
    labels = [t.decode() for t in outputs["label_text"].numpy()]
    assert set(labels) <= {"negative", "positive"}
    assert outputs["label"].shape == (2,)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"task": "sst2"}, "lacks ['checkpoint']"),
        ({"checkpoint": "x"}, "lacks ['task']"),
        ({"checkpoint": "x", "task": "imdb"}, "unknown task 'imdb'"),
        ({"checkpoint": "x", "task": "sst2", "stepz": 3}, "unknown key(s) ['stepz']"),
        ({"checkpoint": "x", "task": "sst2"}, "No training length"),
        ({"checkpoint": "x", "task": "sst2", "steps": 0}, "'steps'] must be"),
        ({"checkpoint": "x", "task": "sst2", "steps": 1, "init": "zeros"}, "init"),
        (
            {"checkpoint": "x", "task": "sst2", "steps": 1, "learning_rate": -1},
            "learning_rate",
        ),
    ],
)
def test_bad_custom_config_is_refused_with_a_clear_message(config, message):
    with pytest.raises(TrainerInputError) as error:
        TrainerOptions.from_custom_config(config)
    assert message in str(error.value)


def test_train_steps_fill_in_and_options_round_trip():
    options = TrainerOptions.from_custom_config(
        {"checkpoint": "p", "task": "SST2"}, train_steps=7
    )
    assert (options.task, options.steps) == ("sst2", 7)
    assert TrainerOptions.from_custom_config(options.to_custom_config()) == options
    as_json = json.dumps({"checkpoint": "p", "task": "rte", "steps": 2})
    assert TrainerOptions.from_custom_config(as_json).task == "rte"


def test_missing_column_fails_before_training_and_writes_nothing(tmp_path, tiny_preset):
    files = write_examples(
        tmp_path / "bad" / "data.gz",
        [{"text": "a fine film", "label": 1}, {"text": "dull", "label": 0}],
    )
    args = fn_args(
        tmp_path, files, files, checkpoint=str(tiny_preset), task="sst2", steps=1
    )
    with pytest.raises(TrainerInputError) as error:
        kp_tfx.run_fn(args)
    message = str(error.value)
    assert "needs column(s) ['sentence']" in message
    assert "['label', 'text']" in message
    assert not os.path.exists(args.serving_model_dir)


def test_missing_checkpoint_fails_and_writes_nothing(tmp_path, sst2_files):
    args = fn_args(
        tmp_path,
        sst2_files.train,
        sst2_files.eval,
        checkpoint=str(tmp_path / "no_such_preset"),
        task="sst2",
        steps=1,
    )
    with pytest.raises(TrainerInputError, match="is not a directory"):
        kp_tfx.run_fn(args)
    assert not os.path.exists(args.serving_model_dir)


def test_no_matching_files_is_an_error(tmp_path):
    with pytest.raises(TrainerInputError, match="No example files match"):
        kp_tfx.read_examples([str(tmp_path / "none" / "*")], "sst2")


def test_read_examples_accepts_label_forms_and_official_column_names(tmp_path):
    rte = write_examples(
        tmp_path / "rte" / "data.gz",
        [
            {"premise": "A cat sat.", "hypothesis": "A cat sits.", "label": 0},
            {"premise": "A cat sat.", "hypothesis": "No cat.", "label": "1"},
            {"premise": "P.", "hypothesis": "H.", "label": "not_entailment"},
            {"premise": "P.", "hypothesis": "H.", "label": "Entailment"},
        ],
    )
    examples = kp_tfx.read_examples([rte], "rte")
    assert [e.label for e in examples] == [0, 1, 1, 0]
    assert examples[0].inputs == "rte sentence1: A cat sat. sentence2: A cat sits."
    assert examples[2].targets == "not_entailment"

    # MRPC's official TSV columns (#1 String, #2 String, Quality) work too.
    mrpc = write_examples(
        tmp_path / "mrpc" / "data.gz",
        [{"#1 String": "He ran.", "#2 String": "He sprinted.", "Quality": 1}],
    )
    (example,) = kp_tfx.read_examples([mrpc], "mrpc")
    assert example.inputs == "mrpc sentence1: He ran. sentence2: He sprinted."
    assert example.label == 1


@pytest.mark.parametrize(
    "row, message",
    [
        ({"sentence": "fine", "label": 5}, "is not a label of task 'sst2'"),
        ({"sentence": "fine", "label": "great"}, "is not a label of task 'sst2'"),
        ({"sentence": " ", "label": 1}, "has no value in column 'sentence'"),
    ],
)
def test_bad_rows_are_refused(tmp_path, row, message):
    files = write_examples(tmp_path / "x" / "data.gz", [row])
    with pytest.raises(TrainerInputError, match=message):
        kp_tfx.read_examples([files], "sst2")


def test_write_task_csv_writes_canonical_columns(assets, tmp_path):
    path = kp_tfx.write_task_csv("rte", "train", assets, tmp_path / "rte.csv", limit=5)
    rows = csv_rows(path)
    assert list(rows[0]) == ["premise", "hypothesis", "label"]
    assert len(rows) == 5 and {r["label"] for r in rows} <= {0, 1}


def test_module_file_only_reexports_run_fn():
    folder = Path(kp_tfx.MODULE_FILE).parent
    # TFX ships every .py file of this folder but __init__.py to the workers.
    assert sorted(p.name for p in folder.glob("*.py")) == [
        "__init__.py",
        "keras_prompt_trainer.py",
    ]
    text = Path(kp_tfx.MODULE_FILE).read_text()
    assert "from keras_prompt.tfx.trainer import run_fn" in text


def test_importing_keras_prompt_never_imports_tfx(tmp_path):
    code = (
        "import sys, keras_prompt, keras_prompt.tfx\n"
        "assert 'tfx' not in sys.modules, 'keras_prompt imported tfx'\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_remote_checkpoints_are_fetched_to_local_disk(tiny_preset, tmp_path):
    """gs:// checkpoints are copied with tf.io.gfile; file:// stands in here."""
    from keras_prompt.tfx.trainer import _local_copy

    assert _local_copy(str(tiny_preset), tmp_path) == str(tiny_preset)
    local = Path(_local_copy(f"file://{tiny_preset}", tmp_path))
    assert local.parent == tmp_path
    files = sorted(p.relative_to(tiny_preset) for p in tiny_preset.rglob("*"))
    assert sorted(p.relative_to(local) for p in local.rglob("*")) == files
    assert (local / "model.weights.h5").read_bytes() == (
        tiny_preset / "model.weights.h5"
    ).read_bytes()
