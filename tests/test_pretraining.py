"""keras_prompt.pretraining: objectives, packing, fit, checkpoints, presets, errors.

Tiny geometry (``t5_1_1_tiny``: width 16, 2+2 layers, real 32,128-row
vocabulary) and a tiny corpus of real English written to ``tmp_path``.
Nothing here calls ``keras.utils.set_random_seed`` (it would break the
session tokenizer fixture's SentencePiece resources).
"""

from __future__ import annotations

import json

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_prompt.models.geometries import build_backbone
from keras_prompt.pretraining import (
    CheckpointMismatchError,
    CorpusError,
    PretrainConfig,
    T5Pretrainer,
    pack_examples,
    prefix_lm_examples,
    pretrain,
    read_checkpoint_state,
    span_corruption_example,
    span_corruption_lengths,
)
from keras_prompt.pretraining import trainer as trainer_module
from keras_prompt.pretraining.data import (
    heldout_dataset,
    packing_density,
    sentencepiece_tokenizer,
    training_dataset,
)
from keras_prompt.pretraining.objectives import (
    FIRST_SENTINEL_ID,
    line_pieces,
    token_chunks,
)

# Real English (WordNet-style glosses and proverbs), varied enough that the
# hash split puts lines in both partitions.
_SENTENCES = [
    "a domesticated carnivorous mammal that typically has a long snout",
    "the act of moving from one place to another in search of food",
    "a written account of the events of a person's life and career",
    "an instrument used for measuring the pressure of the atmosphere",
    "the quality of being honest and having strong moral principles",
    "a large body of salt water that covers most of the planet",
    "the branch of mathematics that deals with shapes and spaces",
    "a feeling of deep affection for a person or a place or a thing",
    "a flat piece of ground prepared for growing vegetables and flowers",
    "the scientific study of the structure and behaviour of matter",
]


def _corpus_lines(n: int = 240) -> list[str]:
    rng = np.random.default_rng(0)
    return [
        " and ".join(rng.choice(_SENTENCES, size=2, replace=False)) + f" ({i})."
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "english.txt"
    path.write_text("\n".join(_corpus_lines()) + "\n")
    return path


def _config(corpus, out, spiece_path, **overrides) -> PretrainConfig:
    settings = dict(
        corpus=[str(corpus)],
        out=str(out),
        vocab=str(spiece_path),
        geometry="t5_1_1_tiny",
        steps=4,
        span_corruption_steps=2,
        batch_size=4,
        sequence_length=24,
        learning_rate=1e-2,
        warmup_steps=1,
        eval_every=2,
        eval_batches=2,
        heldout_fraction=0.1,
        min_chars=10,
    )
    settings.update(overrides)
    return PretrainConfig(**settings)


# ---------------------------------------------------------------------------
# Objectives and packing.
# ---------------------------------------------------------------------------


def _examples(*pairs):
    return tf.data.Dataset.from_generator(
        lambda: iter([(np.array(a, "int32"), np.array(b, "int32")) for a, b in pairs]),
        output_signature=(tf.TensorSpec([None], tf.int32),) * 2,
    )


def test_pack_examples_fills_rows_greedily_with_segments():
    pairs = [([5, 6, 1], [7, 1]), ([8, 1], [9, 10, 11, 1]), ([12, 13, 14, 1], [15, 1])]
    rows = list(pack_examples(_examples(*pairs, ([3, 4, 1], [5, 1])), 6, 6))
    # Rows: the first two examples (enc 5, dec 6), then the third (the
    # fourth overflows its encoder side; the stream then ends, and the partial
    # row holding the fourth is dropped).
    assert len(rows) == 2
    x, y, weights = rows[0]
    np.testing.assert_array_equal(x["encoder_token_ids"], [5, 6, 1, 8, 1, 0])
    np.testing.assert_array_equal(x["encoder_segment_ids"], [1, 1, 1, 2, 2, 0])
    np.testing.assert_array_equal(y, [7, 1, 9, 10, 11, 1])
    # Each segment's decoder input is <pad> then its targets shifted right.
    np.testing.assert_array_equal(x["decoder_token_ids"], [0, 7, 0, 9, 10, 11])
    np.testing.assert_array_equal(x["decoder_segment_ids"], [1, 1, 2, 2, 2, 2])
    np.testing.assert_array_equal(weights, [1, 1, 1, 1, 1, 1])
    x, y, weights = rows[1]
    np.testing.assert_array_equal(x["encoder_token_ids"], [12, 13, 14, 1, 0, 0])
    np.testing.assert_array_equal(x["decoder_segment_ids"], [1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(weights, [1, 1, 0, 0, 0, 0])


def test_prefix_lm_examples_split_each_piece_and_cover_split_points():
    pieces = tf.data.Dataset.from_tensor_slices(
        np.arange(300 * 6, dtype="int32").reshape(300, 6) + 3
    )
    splits = set()
    for piece, (inputs, targets) in zip(
        pieces, prefix_lm_examples(pieces, seed=1), strict=True
    ):
        inputs, targets = inputs.numpy(), targets.numpy()
        # Prefix + </s>, continuation + </s>; together the original piece.
        assert inputs[-1] == 1 and targets[-1] == 1
        np.testing.assert_array_equal(
            np.concatenate([inputs[:-1], targets[:-1]]), piece.numpy()
        )
        splits.add(len(inputs) - 1)
    assert splits == set(range(1, 6))


def test_line_pieces_keep_each_line_apart(spiece_path):
    import sentencepiece

    proto = spiece_path.read_bytes()
    processor = sentencepiece.SentencePieceProcessor(model_proto=proto)
    lines = _corpus_lines(20)
    pieces = line_pieces(
        tf.data.Dataset.from_tensor_slices(lines),
        sentencepiece_tokenizer(proto),
        7,
        lines_per_batch=8,
    )
    expected = []
    for line in lines:
        ids = processor.encode(line)
        expected += [ids[i : i + 7] for i in range(0, len(ids), 7)]
    expected = [p for p in expected if len(p) >= 2]
    assert [p.numpy().tolist() for p in pieces] == expected


def test_span_corruption_reconstructs_chunk():
    lengths = span_corruption_lengths(64)
    assert lengths.inputs_length <= 64
    assert span_corruption_lengths(64).tokens_length > 64  # sentinels compress
    chunk = tf.range(10, 10 + lengths.tokens_length, dtype=tf.int32)
    inputs, targets = span_corruption_example(
        chunk, lengths, tf.constant([3, 4], tf.int64)
    )
    inputs, targets = inputs.numpy(), targets.numpy()
    assert inputs.shape == (lengths.inputs_length,)
    assert targets.shape == (lengths.targets_length,)
    assert inputs[-1] == 1 and targets[-1] == 1
    sentinels = [t for t in inputs if t > 32000]
    assert sentinels == list(
        range(FIRST_SENTINEL_ID, FIRST_SENTINEL_ID - lengths.num_noise_spans, -1)
    )
    # Put each sentinel's span back: the original chunk.
    spans: dict[int, list[int]] = {}
    current = None
    for token in targets[:-1]:
        if token > 32000:
            current = int(token)
            spans[current] = []
        else:
            spans[current].append(int(token))
    rebuilt = []
    for token in inputs[:-1]:
        rebuilt.extend(spans[int(token)] if token > 32000 else [int(token)])
    np.testing.assert_array_equal(rebuilt, chunk.numpy())
    assert sum(map(len, spans.values())) == lengths.num_noise_tokens


def test_token_chunks_pack_concatenated_lines(spiece_path):
    lines = _corpus_lines(20)
    proto = spiece_path.read_bytes()
    chunks = token_chunks(
        tf.data.Dataset.from_tensor_slices(lines),
        sentencepiece_tokenizer(proto),
        16,
        lines_per_batch=32,
    )
    packed = np.concatenate([c.numpy() for c in chunks])
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_proto=proto)
    flat = np.concatenate([processor.encode(line) for line in lines])
    assert len(packed) == len(flat) // 16 * 16
    np.testing.assert_array_equal(packed, flat[: len(packed)])


def test_packed_row_equals_separate_examples():
    """Segment masks make a packed row compute exactly what unpacked rows do."""
    backbone = build_backbone("t5_1_1_tiny", dropout=0.0, seed=0)
    model = T5Pretrainer(backbone)
    pairs = [(list(range(40, 44)) + [1], list(range(44, 50)) + [1])]
    pairs.append((list(range(70, 77)) + [1], [77, 78, 1]))
    x, _, _ = next(iter(pack_examples(_examples(*pairs, ([3, 1], [4, 1])), 14, 12)))
    x = {k: v.numpy() for k, v in x.items()}
    packed = model({k: v[None] for k, v in x.items()}).numpy()[0]
    seg = x["decoder_segment_ids"]
    enc_seg = x["encoder_segment_ids"]
    for segment in (1, 2):
        alone = {
            "encoder_token_ids": x["encoder_token_ids"][enc_seg == segment],
            "decoder_token_ids": x["decoder_token_ids"][seg == segment],
        }
        alone["encoder_segment_ids"] = np.ones_like(alone["encoder_token_ids"])
        alone["decoder_segment_ids"] = np.ones_like(alone["decoder_token_ids"])
        logits = model({k: v[None] for k, v in alone.items()}).numpy()[0]
        np.testing.assert_allclose(packed[seg == segment], logits, atol=1e-4)


def test_fit_lowers_loss(corpus_file, spiece_path):
    backbone = build_backbone("t5_1_1_tiny", dropout=0.0, seed=0)
    model = T5Pretrainer(backbone)
    model.compile(optimizer=keras.optimizers.Adam(3e-2))
    dataset = training_dataset(
        [str(corpus_file)],
        spiece_path.read_bytes(),
        objective="lm_adaptation",
        sequence_length=24,
        batch_size=8,
        seed=0,
        heldout_fraction=0.1,
        min_chars=10,
    )
    history = model.fit(dataset, steps_per_epoch=5, epochs=2, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0] - 0.5, losses


# ---------------------------------------------------------------------------
# Whole runs: checkpoints, resume, presets.
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, corpus_file, spiece_path):
    out = tmp_path_factory.mktemp("run")
    first = pretrain(_config(corpus_file, out, spiece_path), verbose=0)
    return out, first


def test_run_writes_checkpoint_metrics_and_preset(finished_run):
    out, result = finished_run
    assert result["step"] == 4
    assert read_checkpoint_state(out / "checkpoint")["step"] == 4
    records = [
        json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in records] == [2, 4]
    assert [r["stage"] for r in records] == ["span_corruption", "lm_adaptation"]
    assert all(np.isfinite(r["heldout_perplexity"]) for r in records)
    # Health at every evaluation: a fresh T5 init is not collapsed, and the
    # encoder's vectors differ between tokens.
    for record in records:
        assert record["embedding_collapse"] < 0.05
        assert record["encoder_similarity"] < 0.9
        for key in ("encoder_use", "shuffled_encoder_loss"):
            assert np.isfinite(record[key])
        assert 0 < record["heldout_span_corruption_loss"] < 20
    card = (out / "preset" / "MODEL_CARD.md").read_text()
    assert "embedding collapse" in card and "encoder use" in card
    assert result["heldout_perplexity"] == pytest.approx(
        np.exp(result["heldout_loss"]), rel=1e-3
    )
    assert "4 of 4" in (out / "preset" / "MODEL_CARD.md").read_text()


def test_preset_loads_in_keras_hub_and_prompt_tuned_t5(finished_run):
    import keras_prompt

    out, _ = finished_run
    preset = out / "preset"
    backbone = keras_hub.models.T5Backbone.from_preset(str(preset))
    assert backbone.hidden_dim == 16 and backbone.num_layers == 2
    assert backbone.dtype_policy.name == "float32"
    # Weights are stored as float16 and equal the checkpoint's up to that.
    trained = build_backbone("t5_1_1_tiny", dropout=0.0)
    trained.load_weights(out / "checkpoint" / "model.weights.h5")
    for saved, reference in zip(backbone.weights, trained.weights):
        np.testing.assert_allclose(
            saved.numpy(), reference.numpy(), rtol=2e-3, atol=1e-4
        )
    model = keras_prompt.PromptTunedT5.from_preset(str(preset), prompt_length=3)
    scores = model.score(["sst2 sentence: a fine film"], ["negative", "positive"])
    assert scores.shape == (1, 2) and np.all(np.isfinite(scores))


def test_interrupted_run_resumes_without_losing_steps(
    finished_run, tmp_path, corpus_file, spiece_path, monkeypatch
):
    """LM adaptation of an existing preset (`model=`), interrupted and resumed."""
    original = trainer_module._RunMonitor.on_train_batch_end

    def interrupt_at_three(self, batch, logs=None):
        original(self, batch, logs)
        if self.run.step == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(
        trainer_module._RunMonitor, "on_train_batch_end", interrupt_at_three
    )
    preset = finished_run[0] / "preset"
    config = _config(
        corpus_file,
        tmp_path,
        spiece_path,
        geometry=None,
        model=str(preset),
        span_corruption_steps=0,
    )
    with pytest.raises(KeyboardInterrupt):
        pretrain(config, verbose=0)
    # Step 3 is mid-interval (evaluations every 2): saved at the exact step.
    assert read_checkpoint_state(tmp_path / "checkpoint")["step"] == 3
    monkeypatch.setattr(trainer_module._RunMonitor, "on_train_batch_end", original)
    result = pretrain(config, verbose=0)
    assert result["step"] == 4
    # One evaluation per interval; none lost or repeated across the restart.
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2, 4]
    # Corpus tokens count completed steps x batch 4 x the held-out rows'
    # packing density (corpus tokens per packed row).
    eval_ds, _ = heldout_dataset(
        [str(corpus_file)],
        spiece_path.read_bytes(),
        sequence_length=24,
        batch_size=4,
        num_batches=2,
        heldout_fraction=0.1,
        min_chars=10,
    )
    density = packing_density(eval_ds)
    assert 0 < density <= 2 * 23
    assert result["tokens_seen"] == round(4 * 4 * density)
    assert "from preset" in (tmp_path / "preset" / "MODEL_CARD.md").read_text()


# ---------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------


def test_missing_and_empty_corpus(tmp_path, spiece_path):
    with pytest.raises(CorpusError, match="does not exist"):
        pretrain(_config(tmp_path / "nope.txt", tmp_path / "o", spiece_path))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(CorpusError, match="corpus is empty"):
        pretrain(_config(empty, tmp_path / "o", spiece_path))
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.md").write_text("not a corpus file")
    with pytest.raises(CorpusError, match="holds no text files"):
        pretrain(_config(folder, tmp_path / "o", spiece_path))


def test_corpus_without_text_after_filtering(tmp_path, spiece_path):
    short = tmp_path / "short.txt"
    short.write_text("a\nbb\n   \nok\n" * 50)
    with pytest.raises(CorpusError, match="no text after filtering"):
        pretrain(_config(short, tmp_path / "o", spiece_path))


def test_vocabulary_that_is_not_sentencepiece(tmp_path, corpus_file):
    bogus = tmp_path / "vocab.txt"
    bogus.write_text("the\nof\nand\n")
    with pytest.raises(CorpusError, match="is not a SentencePiece model"):
        pretrain(_config(corpus_file, tmp_path / "o", bogus))
    with pytest.raises(CorpusError, match="does not exist"):
        pretrain(_config(corpus_file, tmp_path / "o", tmp_path / "missing.model"))


def test_resume_from_checkpoint_of_another_geometry(
    finished_run, tmp_path, corpus_file, spiece_path
):
    out, _ = finished_run
    from keras_prompt.models.geometries import T5_GEOMETRIES

    T5_GEOMETRIES["wider_tiny"] = dict(T5_GEOMETRIES["t5_1_1_tiny"], hidden_dim=24)
    try:
        config = _config(
            corpus_file,
            tmp_path,
            spiece_path,
            geometry="wider_tiny",
            resume_from=str(out / "checkpoint"),
        )
        with pytest.raises(
            CheckpointMismatchError, match="another backbone geometry"
        ) as e:
            pretrain(config)
        assert "hidden_dim: 16 vs 24" in str(e.value)
    finally:
        del T5_GEOMETRIES["wider_tiny"]


def test_cli_reports_bad_corpus(tmp_path, spiece_path, monkeypatch, capsys):
    from keras_prompt import cli
    from keras_prompt.cli import common

    # The CLI seeds Keras first thing, which would destroy the SentencePiece
    # resources of the session tokenizer fixture; skip it in-process.
    monkeypatch.setattr(common, "set_seed", lambda seed: None)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code = cli.main(
        [
            "lm-adapt",
            "--corpus",
            str(empty),
            "--vocab",
            str(spiece_path),
            "--geometry",
            "t5_1_1_tiny",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    assert "lm-adapt: error: The corpus is empty" in capsys.readouterr().err


def test_count_parameters_matches_keras_hub():
    from keras_prompt.pretraining import count_parameters

    backbone = build_backbone("t5_1_1_tiny")
    assert count_parameters("t5_1_1_tiny") == backbone.count_params()


def test_embedded_default_preset():
    from keras_prompt.presets import default_preset_path, preset_path

    path = default_preset_path()
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    assert size <= 40 * 1024 * 1024
    backbone = keras_hub.models.T5Backbone.from_preset(str(path), load_weights=False)
    assert (backbone.hidden_dim, backbone.num_layers) == (192, 4)
    assert "Exact command" in (path / "MODEL_CARD.md").read_text()
    with pytest.raises(FileNotFoundError, match="No embedded preset"):
        preset_path("nope")


def test_supervised_examples_mix_into_lm_adaptation_rows(corpus_file, spiece_path):
    import sentencepiece

    proto = spiece_path.read_bytes()
    processor = sentencepiece.SentencePieceProcessor(model_proto=proto)
    inputs = [f"sst2 sentence: film {i} was fine" for i in range(20)]
    targets = ["positive"] * 20
    dataset = training_dataset(
        [str(corpus_file)],
        proto,
        objective="lm_adaptation",
        sequence_length=48,
        batch_size=8,
        seed=0,
        heldout_fraction=0.1,
        min_chars=10,
        supervised=(inputs, targets),
        supervised_rate=0.5,
    )
    positive = processor.encode("positive")
    task_examples = corpus_examples = 0
    for x, y, _ in dataset.take(4):
        for enc, enc_seg, tgt, dec_seg in zip(
            x["encoder_token_ids"].numpy(),
            x["encoder_segment_ids"].numpy(),
            y.numpy(),
            x["decoder_segment_ids"].numpy(),
        ):
            for segment in set(enc_seg[enc_seg > 0]):
                text = processor.decode(enc[enc_seg == segment].tolist())
                if text.startswith("sst2 sentence: film"):
                    task_examples += 1
                    assert tgt[dec_seg == segment].tolist() == positive + [1]
                else:
                    corpus_examples += 1
    # About half of the examples are the task's (64 rows' worth of examples).
    share = task_examples / (task_examples + corpus_examples)
    assert 0.3 < share < 0.7


def test_adafactor_pretraining_and_bad_optimizer(corpus_file, tmp_path, spiece_path):
    result = pretrain(
        _config(
            corpus_file,
            tmp_path / "adafactor",
            spiece_path,
            optimizer="adafactor",
            learning_rate=1e-2,
            steps=2,
            span_corruption_steps=0,
        ),
        verbose=0,
    )
    assert result["step"] == 2 and np.isfinite(result["heldout_loss"])
    with pytest.raises(ValueError, match="`optimizer` must be 'adamw' or 'adafactor'"):
        pretrain(_config(corpus_file, tmp_path / "bad", spiece_path, optimizer="sgd"))


def test_supervised_settings_are_checked(corpus_file, tmp_path, spiece_path):
    with pytest.raises(ValueError, match="Give both `supervised_tasks`/"):
        pretrain(_config(corpus_file, tmp_path, spiece_path, supervised_rate=0.1))
    with pytest.raises(ValueError, match=r"`supervised_rate` must be in \[0, 1\)"):
        pretrain(
            _config(
                corpus_file,
                tmp_path,
                spiece_path,
                supervised_tasks=("sst2",),
                supervised_rate=1.0,
            )
        )


def test_supervised_files_are_read_and_checked(tmp_path):
    from keras_prompt.pretraining.trainer import read_text_pairs

    good = tmp_path / "pairs.tsv"
    good.write_text("word sentiment: good\tpositive\n\nword sentiment: bad\tnegative\n")
    assert read_text_pairs(good) == [
        ("word sentiment: good", "positive"),
        ("word sentiment: bad", "negative"),
    ]
    bad = tmp_path / "bad.tsv"
    bad.write_text("word sentiment: good\tpositive\nno tab here\n")
    with pytest.raises(ValueError, match=r"bad.tsv, line 2: expected 'inputs<TAB>"):
        read_text_pairs(bad)
    binary = tmp_path / "binary.tsv"
    binary.write_bytes(b"a\tb\n\xff\tc\n")
    with pytest.raises(ValueError, match="line 2: not UTF-8 text"):
        read_text_pairs(binary)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_text_pairs(tmp_path / "missing.tsv")


def test_lm_adapt_defaults_come_from_pretrain_config():
    import dataclasses
    import subprocess
    import sys

    from keras_prompt.cli import build_parser
    from keras_prompt.pretraining.config import PretrainConfig

    args = build_parser().parse_args(
        ["lm-adapt", "--corpus", "c", "--vocab", "v", "--out", "o", "--geometry", "g"]
    )
    # Given on this command line, or not a flag (`command` is the subcommand).
    given = {"corpus", "vocab", "out", "geometry", "model", "command"}
    shared = 0
    for field in dataclasses.fields(PretrainConfig):
        if field.name in given or field.default is dataclasses.MISSING:
            continue
        if hasattr(args, field.name):
            assert getattr(args, field.name) == field.default, field.name
            shared += 1
    assert shared >= 18
    assert args.checkpoint_minutes * 60 == PretrainConfig.checkpoint_seconds
    assert (args.optimizer, args.learning_rate) == ("adafactor", 1e-2)
    # The command line reads these defaults without loading TensorFlow.
    probe = (
        "import sys, keras_prompt.pretraining.config; "
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
