"""Tests for keras_prompt.data on the real GLUE / SuperGLUE files in assets."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_prompt.data import (
    HELDOUT_SEED,
    HELDOUT_VALIDATION_SIZES,
    INVALID_LABEL,
    TASKS,
    DataFormatError,
    Example,
    UnlabelledSplitError,
    compute_metrics,
    default_bucket_boundaries,
    f1_score,
    get_task,
    heldout_split_indices,
    label_from_text,
    load_examples,
    make_dataset,
)

# --------------------------------------------------------------------------
# Registry.
# --------------------------------------------------------------------------


def test_registry_names_and_lookup():
    assert set(TASKS) == {"sst2", "mrpc", "qqp", "rte", "boolq", "cb", "copa", "wic"}
    assert get_task("SST2") is TASKS["sst2"]
    assert get_task(TASKS["rte"]) is TASKS["rte"]
    assert get_task("mrpc").metric == "f1_accuracy"
    assert get_task("qqp").metric == "f1_accuracy"
    assert get_task("cb").verbalizers == ("entailment", "contradiction", "neutral")
    assert get_task("boolq").tfds_name == "super_glue/boolq"
    assert get_task("rte").tfds_features == ("premise", "hypothesis", "label")


def test_unknown_task_lists_known_names():
    with pytest.raises(ValueError, match="Unknown task 'mnli'") as info:
        get_task("mnli")
    for name in TASKS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="known tasks"):
        load_examples("nope", "train", data_dir=".")


def test_format_input_accepts_bytes_and_strips():
    task = get_task("rte")
    text = task.format_input({"premise": b" A cat. ", "hypothesis": "An animal."})
    assert text == "rte sentence1: A cat. sentence2: An animal."
    with pytest.raises(KeyError, match="hypothesis"):
        task.format_input({"premise": "x"})


# --------------------------------------------------------------------------
# Real files: known rows and label distributions.
# --------------------------------------------------------------------------

KNOWN_ROWS = [
    # (task, split, index, inputs, targets, label) -- first rows of the files.
    ("sst2", "train", 0, "sst2 sentence: when are bears bears and", "positive", 1),
    (
        "mrpc",
        "train",
        0,
        (
            'mrpc sentence1: Amrozi accused his brother, whom he called "the witness", '
            "of deliberately distorting his evidence. sentence2: Referring to him as "
            'only "the witness", Amrozi accused his brother of deliberately distorting '
            "his evidence."
        ),
        "equivalent",
        1,
    ),
    (
        "qqp",
        "train",
        0,
        (
            "qqp question1: How do I get inside University College London being "
            "an Indian? question2: Which is better, masters in computer science at "
            "Arizona State University or University College London for a foreigner "
            "(Indian National)?"
        ),
        "not_duplicate",
        0,
    ),
    (
        "qqp",
        "validation",
        0,
        (
            "qqp question1: Who is the stupidest character in Game of Thrones? "
            "question2: Who is the most misunderstood character in Game of Thrones?"
        ),
        "not_duplicate",
        0,
    ),
    (
        "rte",
        "train",
        0,
        (
            "rte sentence1: No Weapons of Mass Destruction Found in Iraq Yet. "
            "sentence2: Weapons of Mass Destruction Found in Iraq."
        ),
        "not_entailment",
        1,
    ),
    (
        "cb",
        "validation",
        0,
        (
            "cb hypothesis: Valence was helping premise: Valence the void-brain, "
            "Valence the virtuous valet. Why couldn't the figger choose his own "
            "portion of titanic anatomy to shaft? Did he think he was helping?"
        ),
        "contradiction",
        1,
    ),
    (
        "copa",
        "validation",
        0,
        (
            "copa choice1: The toilet filled with water. choice2: Water flowed from "
            "the spout. premise: The man turned on the faucet. question: effect"
        ),
        "choice2",
        1,
    ),
    (
        "copa",
        "train",
        0,
        (
            "copa choice1: The chandelier dropped from the ceiling. choice2: The "
            "chandelier's lights flickered on and off. premise: The chandelier "
            "shattered on the floor. question: cause"
        ),
        "choice1",
        0,
    ),
    (
        "wic",
        "validation",
        0,
        (
            "wic sentence1: An emerging professional class. sentence2: Apologizing for "
            "losing your temper, even though you were badly provoked, showed real "
            "class. word: class"
        ),
        "False",
        0,
    ),
    (
        "wic",
        "train",
        0,
        (
            "wic sentence1: You make me feel naked. sentence2: She felt small and "
            "insignificant. word: feel"
        ),
        "True",
        1,
    ),
]


@pytest.mark.parametrize(
    "name,split,index,inputs,targets,label",
    KNOWN_ROWS,
    ids=[f"{r[0]}-{r[1]}" for r in KNOWN_ROWS],
)
def test_known_rows(assets_dir, name, split, index, inputs, targets, label):
    example = load_examples(name, split, data_dir=assets_dir)[index]
    assert example == Example(inputs=inputs, targets=targets, label=label)


def test_boolq_rows(assets_dir):
    train = load_examples("boolq", "train", data_dir=assets_dir)
    assert len(train) == 32  # FewGLUE train32.jsonl.
    first = train[0]
    assert first.inputs.startswith("boolq passage: Ghost in the Shell -- Animation ")
    assert first.inputs.endswith(
        "released on March 31, 2017. question: is ghost in the shell based on the anime"
    )
    assert (first.targets, first.label) == ("False", 0)


@pytest.mark.parametrize(
    "name,split,size,label_counts",
    [
        # Counts over the whole file: JSON booleans and strings map correctly.
        ("boolq", "validation", 3270, {0: 1237, 1: 2033}),
        ("cb", "validation", 56, {0: 23, 1: 28, 2: 5}),
        ("copa", "validation", 100, {0: 55, 1: 45}),
        ("wic", "validation", 638, {0: 319, 1: 319}),
        ("qqp", "train", 8999, {0: 5747, 1: 3252}),
        ("qqp", "validation", 1000, {0: 623, 1: 377}),
        ("cb", "train", 32, {0: 19, 1: 10, 2: 3}),
    ],
)
def test_split_sizes_and_labels(assets_dir, name, split, size, label_counts):
    examples = load_examples(name, split, data_dir=assets_dir)
    assert len(examples) == size
    assert dict(collections.Counter(e.label for e in examples)) == label_counts
    task = get_task(name)
    assert all(e.targets == task.verbalizers[e.label] for e in examples)
    assert all(e.inputs.startswith(f"{name} ") for e in examples)


# --------------------------------------------------------------------------
# Held-out validation split.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,file_rows,positives",
    # Label 1 counts of the whole training file (1 = positive / equivalent /
    # not_entailment).
    [("sst2", 67349, 37569), ("mrpc", 3668, 2474), ("rte", 2490, 1241)],
)
def test_heldout_split(assets_dir, name, file_rows, positives):
    size = HELDOUT_VALIDATION_SIZES[name]
    train = load_examples(name, "train", data_dir=assets_dir)
    validation = load_examples(name, "validation", data_dir=assets_dir)
    assert len(validation) == size
    assert len(train) == file_rows - size
    assert sum(e.label for e in train) + sum(e.label for e in validation) == positives

    # Disjoint and exhaustive by row index; SST-2 repeats some sentences, so
    # compare the examples as multisets against the whole file too.
    train_idx, held_idx = heldout_split_indices(file_rows, size, seed=HELDOUT_SEED)
    assert not set(train_idx) & set(held_idx)
    assert sorted(train_idx + held_idx) == list(range(file_rows))
    assert train_idx == sorted(train_idx) and held_idx == sorted(held_idx)
    whole = collections.Counter(train) + collections.Counter(validation)
    assert sum(whole.values()) == file_rows

    # Deterministic: a second load gives the same rows.
    assert load_examples(name, "validation", data_dir=assets_dir) == validation


def test_heldout_indices_are_pinned():
    # Pinned so a change of the split algorithm cannot go unnoticed: reported
    # validation scores refer to these rows.
    _, held = heldout_split_indices(67349, 872)
    assert held[:5] == [62, 396, 405, 423, 765]
    _, held_rte = heldout_split_indices(2490, 277)
    assert held_rte[:5] == [3, 7, 18, 23, 24]
    _, other_seed = heldout_split_indices(67349, 872, seed=1)
    assert other_seed != held
    with pytest.raises(ValueError, match="Cannot hold out 10 of 10 rows"):
        heldout_split_indices(10, 10)


def test_sst2_validation_known_row(assets_dir):
    # Row 62 of the file (line 64) is the first held-out row.
    validation = load_examples("sst2", "validation", data_dir=assets_dir)
    line = (assets_dir / "glue/SST-2/train.tsv").read_text().splitlines()[63]
    sentence, label = line.split("\t")
    assert validation[0] == Example(
        f"sst2 sentence: {sentence.strip()}",
        ("negative", "positive")[int(label)],
        int(label),
    )


# --------------------------------------------------------------------------
# Bad input.
# --------------------------------------------------------------------------


def _write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_missing_file_names_full_path(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_examples("sst2", "train", data_dir=tmp_path)
    assert str((tmp_path / "glue" / "SST-2" / "train.tsv").resolve()) in str(info.value)
    with pytest.raises(FileNotFoundError, match=r"superglue/BoolQ/val\.jsonl"):
        load_examples("boolq", "validation", data_dir=tmp_path)


def test_bad_split_and_no_source(assets_dir):
    with pytest.raises(
        ValueError, match=r"Unknown split 'dev'.*train, validation, test"
    ):
        load_examples("sst2", "dev", data_dir=assets_dir)
    with pytest.raises(ValueError, match="needs a source"):
        load_examples("sst2", "train")


def test_tsv_wrong_column_count(tmp_path):
    path = _write(
        tmp_path, "glue/SST-2/train.tsv", "sentence\tlabel\ngood\t1\nbad\t0\textra\n"
    )
    with pytest.raises(DataFormatError) as info:
        load_examples("sst2", "train", data_dir=tmp_path)
    message = str(info.value)
    assert f"{path}:3:" in message
    assert "expected 2 tab-separated columns (sentence, label), found 3" in message
    assert (info.value.path, info.value.line) == (str(path), 3)


def test_tsv_label_not_allowed(tmp_path):
    rows = "".join(f"s{i}\t{i % 2}\n" for i in range(5))
    path = _write(tmp_path, "glue/SST-2/train.tsv", f"sentence\tlabel\n{rows}x\t2\n")
    with pytest.raises(DataFormatError) as info:
        load_examples("sst2", "train", data_dir=tmp_path)
    assert f"{path}:7:" in str(info.value)
    assert "label '2'" in str(info.value)
    assert "allowed values ('0', '1')" in str(info.value)


def test_heldout_needs_enough_rows(tmp_path):
    path = _write(tmp_path, "glue/SST-2/train.tsv", "sentence\tlabel\na\t1\n")
    with pytest.raises(DataFormatError, match="has 1 rows, too few") as info:
        load_examples("sst2", "validation", data_dir=tmp_path)
    assert str(path) in str(info.value)


def test_tsv_header_missing_column(tmp_path):
    path = _write(tmp_path, "glue/MRPC/train.tsv", "Quality\t#1 String\n1\tx\n")
    with pytest.raises(DataFormatError, match="lacks column") as info:
        load_examples("mrpc", "train", data_dir=tmp_path)
    assert f"{path}:1:" in str(info.value)
    assert "#2 String" in str(info.value)


@pytest.mark.parametrize(
    "task, relative, rows",
    [
        (
            "sst2",
            "glue/SST-2/train.tsv",
            [b"sentence\tlabel", b"good\t1", b"b\xffd\t0"],
        ),
        (
            "cb",
            "superglue/CB/val.jsonl",
            [b'{"premise": "p", "hypothesis": "h", "label": "neutral"}'] * 2
            + [b'{"premise": "caf\xe9", "hypothesis": "h", "label": "neutral"}'],
        ),
        ("qqp", "glue/QQP/train_subset.json", [b"{", b'"0": {', b'"text_a": "\xff"']),
    ],
    ids=["tsv", "jsonl", "json"],
)
def test_bytes_that_are_not_utf8_are_named_by_file_and_line(
    tmp_path, task, relative, rows
):
    path = tmp_path / relative
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\n".join(rows) + b"\n")
    with pytest.raises(DataFormatError) as info:
        load_examples(
            task, "train" if task != "cb" else "validation", data_dir=tmp_path
        )
    assert f"{path}:3: not UTF-8 text: byte 0x" in str(info.value)
    assert info.value.line == 3


def test_jsonl_invalid_json(tmp_path):
    good = json.dumps({"premise": "p", "hypothesis": "h", "label": "neutral"})
    path = _write(tmp_path, "superglue/CB/val.jsonl", f"{good}\n{{not json\n")
    with pytest.raises(DataFormatError, match="invalid JSON") as info:
        load_examples("cb", "validation", data_dir=tmp_path)
    assert f"{path}:2:" in str(info.value)


def test_jsonl_label_not_allowed(tmp_path):
    rows = [
        {"premise": "p", "hypothesis": "h", "label": "neutral"},
        {"premise": "p", "hypothesis": "h", "label": "maybe"},
    ]
    path = _write(
        tmp_path, "superglue/CB/val.jsonl", "\n".join(json.dumps(r) for r in rows)
    )
    with pytest.raises(DataFormatError) as info:
        load_examples("cb", "validation", data_dir=tmp_path)
    message = str(info.value)
    assert f"{path}:2:" in message
    assert "label 'maybe'" in message
    assert "'entailment', 'contradiction', 'neutral'" in message


def test_jsonl_label_type_is_strict(tmp_path):
    # BoolQ labels are JSON booleans; the string "true" is not accepted.
    row = {"passage": "p", "question": "q", "label": "true"}
    _write(tmp_path, "superglue/BoolQ/val.jsonl", json.dumps(row) + "\n")
    with pytest.raises(DataFormatError, match=r":1: label 'true'.*False, True"):
        load_examples("boolq", "validation", data_dir=tmp_path)


def test_jsonl_missing_field(tmp_path):
    rows = [
        {"premise": "p", "hypothesis": "h", "label": "entailment"},
        {"premise": "p", "label": "entailment"},
        {"premise": "p", "hypothesis": "h"},
    ]
    text = "\n".join(json.dumps(r) for r in rows)
    path = _write(tmp_path, "superglue/RTE/train.jsonl", text)
    with pytest.raises(DataFormatError, match=r"missing field.*hypothesis") as info:
        load_examples("rte", "train", data_dir=tmp_path)
    assert f"{path}:2:" in str(info.value)
    # A label missing after labelled rows is a malformed row, not a test split.
    path.write_text("\n".join(json.dumps(r) for r in (rows[0], rows[2])))
    with pytest.raises(DataFormatError, match=r":2: missing field 'label'"):
        load_examples("rte", "train", data_dir=tmp_path)


def test_qqp_json_errors(tmp_path):
    rows = {
        "0": {"text_a": "a", "text_b": "b", "label": "0"},
        "1": {"text_a": "a", "text_b": "b", "label": "yes"},
    }
    path = _write(tmp_path, "glue/QQP/dev_subset.json", json.dumps(rows, indent=4))
    with pytest.raises(DataFormatError) as info:
        load_examples("qqp", "validation", data_dir=tmp_path)
    # Row "1" opens on line 7 of the pretty-printed file.
    assert f"{path}:7: row '1': label 'yes'" in str(info.value)

    path.write_text('{\n    "0": {"text_a": "a",,}\n}\n')
    with pytest.raises(DataFormatError, match=r":2: invalid JSON"):
        load_examples("qqp", "validation", data_dir=tmp_path)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("mrpc", "test.tsv is unlabelled"),  # GLUE test.tsv: 'index', no Quality.
        ("rte", "test.jsonl is unlabelled"),  # SuperGLUE test: no "label" key.
        ("sst2", "no labelled 'test' split"),  # No test file at all.
        ("boolq", "no labelled 'test' split"),
    ],
)
def test_unlabelled_test_split(assets_dir, name, expected):
    with pytest.raises(UnlabelledSplitError, match=expected):
        load_examples(name, "test", data_dir=assets_dir)


# --------------------------------------------------------------------------
# TFDS.
# --------------------------------------------------------------------------


# The T5 input each task must build from TFDS's own feature names, spelled out
# independently of the Task definitions.
TFDS_FORMATS = {
    "sst2": "sst2 sentence: {sentence}",
    "mrpc": "mrpc sentence1: {sentence1} sentence2: {sentence2}",
    "qqp": "qqp question1: {question1} question2: {question2}",
    "rte": "rte sentence1: {premise} sentence2: {hypothesis}",
    "boolq": "boolq passage: {passage} question: {question}",
    "cb": "cb hypothesis: {hypothesis} premise: {premise}",
    "copa": "copa choice1: {choice1} choice2: {choice2} premise: {premise} "
    "question: {question}",
    "wic": "wic sentence1: {sentence1} sentence2: {sentence2} word: {word}",
}


@pytest.mark.parametrize("name", sorted(TFDS_FORMATS))
def test_tfds_feature_mapping(tmp_path, name):
    task = get_task(name)
    with tfds.testing.mock_data(
        num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE
    ):
        examples = load_examples(name, "validation", tfds_data_dir=tmp_path)
        raw = list(tfds.as_numpy(tfds.load(task.tfds_name, split="validation")))
    assert len(examples) == 4
    for example, element in zip(examples, raw, strict=True):
        text = {
            k: v.decode().strip() for k, v in element.items() if isinstance(v, bytes)
        }
        assert example.inputs == TFDS_FORMATS[name].format(**text)
        assert example.label == int(element["label"])
        assert example.targets == task.verbalizers[example.label]


def test_tfds_sst2_and_boolq_text(tmp_path):
    with tfds.testing.mock_data(
        num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE
    ):
        sst2 = load_examples("sst2", "train", tfds_data_dir=tmp_path)
        boolq = load_examples("boolq", "validation", tfds_data_dir=tmp_path)
    assert all(e.inputs.startswith("sst2 sentence: ") for e in sst2)
    assert all(" question: " in e.inputs for e in boolq)
    assert all(e.inputs.startswith("boolq passage: ") for e in boolq)
    assert {e.targets for e in boolq} <= {"False", "True"}


def test_tfds_unlabelled_split(tmp_path):
    def as_dataset(self, split, **kwargs):
        return tf.data.Dataset.from_tensor_slices(
            {
                "sentence": [b"a", b"b"],
                "label": tf.constant([-1, -1], tf.int64),
                "idx": tf.constant([0, 1], tf.int32),
            }
        )

    with (
        tfds.testing.mock_data(
            policy=tfds.testing.MockPolicy.USE_CODE, as_dataset_fn=as_dataset
        ),
        pytest.raises(UnlabelledSplitError, match="glue/sst2 split 'test'"),
    ):
        load_examples("sst2", "test", tfds_data_dir=tmp_path)


# --------------------------------------------------------------------------
# make_dataset.
# --------------------------------------------------------------------------

LONG_INPUT = "sst2 sentence: " + " ".join(["an extraordinarily long review"] * 60)


@pytest.fixture(scope="module")
def sst2_validation(assets_dir) -> list[Example]:
    return load_examples("sst2", "validation", data_dir=assets_dir)


def _batches(ds):
    return [
        (
            {k: v.numpy() for k, v in x.items()},
            y.numpy(),
            w.numpy(),
        )
        for x, y, w in ds
    ]


def test_layout_matches_keras_hub_preprocessor(tokenizer, sst2_validation):
    import keras_hub

    examples = [
        *sst2_validation[:5],
        Example(LONG_INPUT, "not_entailment not_entailment", 1),  # Both truncated.
        Example("rte sentence1: a sentence2: b", "entailment", 0),
    ]
    max_in, max_tgt = 24, 6
    reference = keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=max_in, decoder_sequence_length=max_tgt
    )
    ref_x, ref_y, ref_w = reference(
        {
            "encoder_text": [e.inputs for e in examples],
            "decoder_text": [e.targets for e in examples],
        }
    )
    ds = make_dataset(
        examples,
        tokenizer,
        batch_size=len(examples),
        max_input_length=max_in,
        max_target_length=max_tgt,
        bucket_boundaries=[max_in],
    )
    ((x, y, w),) = _batches(ds)  # One bucket, one batch, file order.
    assert x["encoder_token_ids"].shape[1] == max_in  # The long input is in it.
    for key in ref_x:
        assert x[key].dtype == ref_x[key].numpy().dtype, key
        width = x[key].shape[1]
        np.testing.assert_array_equal(x[key], ref_x[key].numpy()[:, :width], key)
        # Whatever we cut off is padding in keras-hub's output too.
        assert not ref_x[key].numpy()[:, width:].any(), key
    width = y.shape[1]
    np.testing.assert_array_equal(y, ref_y.numpy()[:, :width])
    np.testing.assert_array_equal(w, ref_w.numpy()[:, :width])
    assert y.dtype == ref_y.numpy().dtype and w.dtype == ref_w.numpy().dtype
    assert not ref_w.numpy()[:, width:].any()

    # Spot-check the layout by hand on the short RTE example.
    dec = x["decoder_token_ids"][-1]
    assert dec[0] == 0 and y[-1][: w[-1].sum()][-1] == 1  # start <pad>, ends </s>.
    np.testing.assert_array_equal(y[-1][: w[-1].sum() - 1], dec[1 : w[-1].sum()])


def test_truncation(tokenizer):
    long_ids = np.asarray(tokenizer(LONG_INPUT))
    assert len(long_ids) > 300
    ds = make_dataset([Example(LONG_INPUT, "positive", 1)], tokenizer, batch_size=1)
    ((x, y, w),) = _batches(ds)
    enc = x["encoder_token_ids"][0]
    assert enc.shape == (256,)
    np.testing.assert_array_equal(enc[:255], long_ids[:255])
    assert enc[255] == 1 and x["encoder_padding_mask"].all()

    ds = make_dataset(
        [Example("x", "not_entailment", 1)],
        tokenizer,
        batch_size=1,
        max_target_length=3,
    )
    ((x, y, w),) = _batches(ds)
    target = np.asarray(tokenizer("not_entailment"))
    np.testing.assert_array_equal(x["decoder_token_ids"][0], [0, *target[:2]])
    np.testing.assert_array_equal(y[0], [*target[:2], 1])
    assert w.all()


def test_buckets_vary_in_width(tokenizer, sst2_validation):
    boundaries = default_bucket_boundaries(256)
    assert boundaries == (16, 32, 64, 128, 256)
    batches = _batches(make_dataset(sst2_validation, tokenizer, batch_size=32))
    assert sum(len(y) for _, y, _ in batches) == len(sst2_validation)
    widths = collections.Counter(x["encoder_token_ids"].shape[1] for x, _, _ in batches)
    assert len(widths) > 3
    assert max(widths) < 256  # SST-2 sentences are short.
    lower = (0, *boundaries)
    for x, _, _ in batches:
        lengths = x["encoder_padding_mask"].sum(axis=1)
        width = x["encoder_token_ids"].shape[1]
        assert lengths.max() == width  # Padded only to the batch's longest.
        # All rows come from one bucket.
        bucket = next(i for i, b in enumerate(boundaries) if lengths.max() <= b)
        assert lengths.min() > lower[bucket]
        assert x["decoder_token_ids"].shape[1] == x["decoder_padding_mask"].sum(1).max()


def test_fixed_shape(tokenizer, sst2_validation):
    ds = make_dataset(
        sst2_validation[:100],
        tokenizer,
        batch_size=16,
        fixed_shape=True,
        max_input_length=64,
        max_target_length=4,
    )
    x_spec, y_spec, w_spec = ds.element_spec
    assert x_spec["encoder_token_ids"].shape == (16, 64)
    assert x_spec["decoder_padding_mask"].shape == (16, 4)
    assert y_spec.shape == w_spec.shape == (16, 4)
    batches = _batches(ds)
    assert len(batches) == 100 // 16
    shapes = {(x["encoder_token_ids"].shape, y.shape) for x, y, _ in batches}
    assert shapes == {((16, 64), (16, 4))}


def test_shuffle_is_seeded_and_repeat(tokenizer, sst2_validation):
    examples = sst2_validation[:64]

    def first_ids(**kwargs):
        ds = make_dataset(
            examples,
            tokenizer,
            batch_size=8,
            fixed_shape=True,
            max_input_length=48,
            **kwargs,
        )
        return [x["encoder_token_ids"] for x, _, _ in _batches(ds.take(4))]

    plain = first_ids()
    expected = np.asarray(tokenizer(examples[0].inputs))
    np.testing.assert_array_equal(plain[0][0][: len(expected)], expected)
    a, b = first_ids(shuffle=True, seed=3), first_ids(shuffle=True, seed=3)
    c = first_ids(shuffle=True, seed=4)
    assert all((u == v).all() for u, v in zip(a, b, strict=True))
    assert not all((u == v).all() for u, v in zip(a, c, strict=True))
    assert not all((u == v).all() for u, v in zip(a, plain, strict=True))

    repeated = make_dataset(
        examples, tokenizer, batch_size=8, repeat=True, shuffle=True
    )
    assert len(_batches(repeated.take(20))) == 20  # More than one epoch.


def test_drop_remainder(tokenizer, sst2_validation):
    ds = make_dataset(
        sst2_validation[:50],
        tokenizer,
        batch_size=8,
        bucket_boundaries=[256],
        drop_remainder=True,
    )
    assert [len(y) for _, y, _ in _batches(ds)] == [8] * 6


# keras-hub's T5 attention warns that it ignores Keras masks; it reads the
# padding masks from its inputs instead.
@pytest.mark.filterwarnings("ignore:Layer '.*' .* was passed an input with a mask")
def test_batches_feed_a_t5_backbone(tokenizer, tiny_backbone, sst2_validation):
    ds = make_dataset(sst2_validation[:4], tokenizer, batch_size=4)
    x, y, _w = next(iter(ds))
    outputs = tiny_backbone(x)
    assert outputs["decoder_sequence_output"].shape[:2] == y.shape


def test_make_dataset_errors(tokenizer):
    example = [Example("sst2 sentence: a", "positive", 1)]
    with pytest.raises(ValueError, match="no examples"):
        make_dataset([], tokenizer, batch_size=2)
    with pytest.raises(ValueError, match="batch_size must be a positive"):
        make_dataset(example, tokenizer, batch_size=0)
    with pytest.raises(ValueError, match="has no effect with fixed_shape"):
        make_dataset(
            example, tokenizer, batch_size=1, fixed_shape=True, bucket_boundaries=[8]
        )
    with pytest.raises(ValueError, match="strictly increasing"):
        make_dataset(example, tokenizer, batch_size=1, bucket_boundaries=[32, 16])


# --------------------------------------------------------------------------
# Evaluation.
# --------------------------------------------------------------------------


def test_f1_hand_computed():
    # tp=2 (idx 0, 4), fp=1 (idx 1), fn=1 (idx 2): F1 = 4 / 6.
    assert f1_score([1, 1, 0, 0, 1], [1, 0, 1, 0, 1]) == pytest.approx(2 / 3)
    # tp=1, fp=0, fn=2: precision 1, recall 1/3 -> F1 = 0.5.
    assert f1_score([1, 0, 0, 0], [1, 1, 1, 0]) == pytest.approx(0.5)
    assert f1_score([0, 0], [0, 0]) == 0.0  # No positives anywhere.
    assert f1_score([0, 0, 0], [1, 1, 0]) == 0.0
    assert f1_score([1, 1], [1, 1]) == 1.0


def test_compute_metrics():
    assert compute_metrics("sst2", [1, 0, 1, 1], [1, 0, 0, 1]) == {"accuracy": 0.75}
    # Unparseable generations count as wrong and as negative for F1.
    metrics = compute_metrics("mrpc", [1, INVALID_LABEL, 0, 1], [1, 1, 0, 0])
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert metrics["f1"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))
    assert set(compute_metrics("qqp", [1], [1])) == {"accuracy", "f1"}
    with pytest.raises(ValueError, match="3 predicted labels but 2 gold"):
        compute_metrics("sst2", [1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match=r"gold_labels must be in 0\.\.2"):
        compute_metrics("cb", [0], [3])


def test_label_from_text():
    assert label_from_text("rte", " not_entailment ") == 1
    assert label_from_text("cb", b"neutral") == 2
    assert label_from_text("sst2", "Positive") == INVALID_LABEL
