import keras
import numpy as np
import pytest

from keras_prompt import initializers

TABLE = np.random.default_rng(0).normal(size=(6000, 8)).astype("float32")


def _values(initializer, shape=(10, 8)):
    return keras.ops.convert_to_numpy(initializer(shape))


def test_random_uniform_range_and_seed():
    values = _values(initializers.RandomUniform(scale=0.5, seed=1))
    assert values.shape == (10, 8) and np.all(np.abs(values) <= 0.5)
    np.testing.assert_array_equal(
        values, _values(initializers.RandomUniform(0.5, seed=1))
    )
    assert not np.allclose(values, _values(initializers.RandomUniform(0.5, seed=2)))


def test_sampled_vocab_rows_come_from_the_common_tokens():
    values = _values(initializers.SampledVocab(TABLE, population=50, seed=0))
    for row in values:
        matches = np.where(np.all(TABLE == row, axis=1))[0]
        assert len(matches) and 3 <= matches[0] < 53
    assert len({tuple(r) for r in values}) == 10  # without replacement


def test_sampled_vocab_needs_embeddings():
    with pytest.raises(ValueError, match="embedding table"):
        initializers.SampledVocab()((3, 8))


def test_width_mismatch_is_named():
    with pytest.raises(ValueError, match=r"width 8 .*\(3, 4\)"):
        initializers.SampledVocab(TABLE)((3, 4))


def test_class_labels_average_subtokens_and_fill_rest(tokenizer):
    table = np.random.default_rng(1).normal(size=(32128, 8)).astype("float32")
    labels = ["not_entailment", "entailment"]
    init = initializers.ClassLabels(table, tokenizer, labels, seed=0)
    values = _values(init, (5, 8))
    for row, label in enumerate(labels):
        ids = np.asarray(tokenizer.tokenize(label))
        assert len(ids) >= 1
        np.testing.assert_allclose(values[row], table[ids].mean(0), rtol=1e-6)
    fallback = _values(initializers.SampledVocab(table, seed=0), (3, 8))
    np.testing.assert_array_equal(values[2:], fallback)


def test_class_labels_truncate_to_prompt_length(tokenizer):
    table = np.ones((32128, 8), "float32")
    values = _values(
        initializers.ClassLabels(table, tokenizer, ["a", "b", "c"]), (2, 8)
    )
    assert values.shape == (2, 8)


def test_class_labels_with_random_fallback(tokenizer):
    table = np.zeros((32128, 8), "float32")
    init = initializers.ClassLabels(
        table, tokenizer, ["yes"], fallback=initializers.RandomUniform(seed=3)
    )
    values = _values(init, (4, 8))
    np.testing.assert_array_equal(values[0], 0.0)
    assert np.all(values[1:] != 0.0)


def test_from_text(tokenizer):
    table = np.random.default_rng(2).normal(size=(32128, 8)).astype("float32")
    text = "Classify the sentiment"
    ids = np.asarray(tokenizer.tokenize(text))
    values = _values(initializers.FromText(table, tokenizer, text), (len(ids) + 2, 8))
    np.testing.assert_array_equal(values[: len(ids)], table[ids])


@pytest.mark.parametrize(
    "kwargs, message",
    [({"labels": []}, "labels"), ({"labels": ["ok", ""]}, "labels")],
)
def test_class_labels_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        initializers.ClassLabels(**kwargs)


def test_from_file_checks_shape(tmp_path):
    path = tmp_path / "p.npy"
    np.save(path, np.ones((4, 8), "float32"))
    np.testing.assert_array_equal(_values(initializers.FromFile(path), (4, 8)), 1.0)
    with pytest.raises(ValueError, match=r"\(4, 8\).*\(5, 8\)"):
        initializers.FromFile(path)((5, 8))
    assert isinstance(initializers.get(str(path)), initializers.FromFile)


@pytest.mark.parametrize(
    "initializer",
    [
        initializers.RandomUniform(scale=0.1, seed=4),
        initializers.SampledVocab(population=100, seed=5),
        initializers.ClassLabels(labels=["a", "b"], seed=6),
        initializers.FromText(text="hello world", fallback="random_uniform"),
        initializers.FromFile("/x/y.npy"),
    ],
)
def test_serialization_round_trip(initializer):
    config = initializers.serialize(initializer)
    clone = initializers.get(config)
    assert type(clone) is type(initializer)
    assert clone.get_config() == initializer.get_config()


def test_get_resolves_names_and_rejects_garbage():
    assert isinstance(initializers.get("random_uniform"), initializers.RandomUniform)
    assert isinstance(initializers.get("sampled_vocab"), initializers.SampledVocab)
    with pytest.raises(ValueError, match="needs arguments"):
        initializers.get("class_labels")
    with pytest.raises(ValueError, match="prompt initializer"):
        initializers.get(42)


def test_by_name_builds_the_papers_three_and_refuses_others():
    built = {
        name: initializers.by_name(name, ["negative", "positive"], seed=3)
        for name in initializers.PAPER_INITIALIZERS
    }
    assert isinstance(built["random_uniform"], initializers.RandomUniform)
    assert isinstance(built["sampled_vocab"], initializers.SampledVocab)
    assert isinstance(built["class_labels"], initializers.ClassLabels)
    assert built["class_labels"].get_config()["labels"] == ["negative", "positive"]
    assert isinstance(initializers.by_name("p.npy", []), initializers.FromFile)
    with pytest.raises(ValueError, match="'uniform'.*class_labels"):
        initializers.by_name("uniform", [])


def test_cli_and_tfx_spell_the_same_init_names():
    # Both spell the names out to avoid importing keras to parse options.
    from keras_prompt import cli
    from keras_prompt.tfx import trainer

    assert cli.INITIALIZERS == initializers.PAPER_INITIALIZERS
    assert trainer.INITIALIZERS == initializers.PAPER_INITIALIZERS
