import json

import keras
import keras_hub
import numpy as np
import pytest
from conftest import make_tiny_backbone

from keras_prompt import PromptTunedT5, initializers

VERBALIZERS = ["negative", "positive"]


@pytest.fixture
def preprocessor(tokenizer):
    return keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=32, decoder_sequence_length=8
    )


@pytest.fixture
def model(preprocessor):
    return PromptTunedT5(make_tiny_backbone(), preprocessor, prompt_length=4)


def _tokenized_batch(preprocessor, texts, targets):
    x, y, sample_weight = preprocessor({"encoder_text": texts, "decoder_text": targets})
    x = {k: np.asarray(v).astype("int32") for k, v in x.items()}
    return x, np.asarray(y), np.asarray(sample_weight).astype("float32")


def test_only_the_prompt_is_trainable(model):
    assert [w.path for w in model.trainable_weights] == ["soft_prompt/prompt"]
    assert tuple(model.trainable_weights[0].shape) == (4, 16)
    assert all(not w.trainable for w in model.backbone.weights)
    assert model.count_params() > 500_000  # the frozen backbone is all there


def test_fit_moves_only_the_prompt(model, preprocessor):
    backbone_before = [np.array(w.numpy()) for w in model.backbone.weights]
    prompt_before = model.get_prompt()
    x = {
        "encoder_text": ["a great movie", "an awful film"] * 4,
        "decoder_text": ["positive", "negative"] * 4,
    }
    model.fit(x, batch_size=4, epochs=2, verbose=0)
    assert not np.allclose(model.get_prompt(), prompt_before)
    for before, after in zip(backbone_before, model.backbone.weights):
        np.testing.assert_array_equal(before, after.numpy())


def test_a_small_step_lowers_the_loss_on_its_batch(model, preprocessor):
    """Gradients reach the prompt with the right sign (no dropout: deterministic)."""
    from keras_prompt import PromptAdafactor

    x, y, sample_weight = _tokenized_batch(
        preprocessor, ["a great movie", "an awful film"], ["positive", "negative"]
    )
    # A fixed starting prompt: from some random ones a 0.01 step overshoots
    # on this random network (steep), which made the test flaky.
    model.set_prompt(np.random.default_rng(0).uniform(-0.5, 0.5, (4, 16)))
    model.compile(optimizer=PromptAdafactor(learning_rate=1e-3, weight_decay=None))
    before = model.evaluate(x, y, sample_weight=sample_weight, verbose=0)[0]
    model.fit(x, y, sample_weight=sample_weight, batch_size=2, epochs=1, verbose=0)
    after = model.evaluate(x, y, sample_weight=sample_weight, verbose=0)[0]
    assert after < before


def test_tokenized_dict_input_and_prompt_changes_output(model, preprocessor):
    x, _, _ = _tokenized_batch(preprocessor, ["a movie"], ["positive"])
    logits = keras.ops.convert_to_numpy(model(x))
    assert logits.shape == (1, 8, 32128)
    model.set_prompt(model.get_prompt() + 1.0)
    assert not np.allclose(keras.ops.convert_to_numpy(model(x)), logits)


def test_forward_matches_manual_prompt_concatenation(model, preprocessor):
    """The functional graph equals: embed, prepend prompt, run the backbone."""
    backbone = model.backbone
    x, _, _ = _tokenized_batch(preprocessor, ["a movie", "b"], ["positive", "no"])
    prompt = model.get_prompt()
    # Feed the prompt as token embeddings by temporarily swapping 4 rows of the
    # embedding table: ids 0..3 then embed to exactly the prompt vectors.
    table = backbone.token_embedding.embeddings
    original = table.numpy()
    spare_ids = np.arange(32100, 32104)
    patched = original.copy()
    patched[spare_ids] = prompt
    table.assign(patched)
    try:
        ids = np.concatenate(
            [np.tile(spare_ids, (2, 1)), x["encoder_token_ids"]], axis=1
        )
        mask = np.concatenate([np.ones((2, 4), "int32"), x["encoder_padding_mask"]], 1)
        reference_hidden = backbone(
            {
                "encoder_token_ids": ids,
                "encoder_padding_mask": mask,
                "decoder_token_ids": x["decoder_token_ids"],
                "decoder_padding_mask": x["decoder_padding_mask"],
            }
        )["decoder_sequence_output"]
        reference = keras.ops.convert_to_numpy(model.logits(reference_hidden))
        ours = keras.ops.convert_to_numpy(model(x))
    finally:
        table.assign(original)
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_score_equals_teacher_forced_log_likelihood(model, preprocessor):
    texts = ["a fine film", "dull and long"]
    scores = model.score(texts, VERBALIZERS)
    assert scores.shape == (2, 2)
    for i, text in enumerate(texts):
        for j, target in enumerate(VERBALIZERS):
            x, y, sample_weight = _tokenized_batch(preprocessor, [text], [target])
            logits = keras.ops.convert_to_numpy(model(x)).astype("float64")
            log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
            token_scores = np.take_along_axis(log_probs, y[..., None], -1)[..., 0]
            expected = (token_scores * sample_weight).sum()
            assert scores[i, j] == pytest.approx(expected, abs=1e-3)
    np.testing.assert_array_equal(
        model.predict_label(texts, VERBALIZERS), scores.argmax(-1)
    )


def test_score_with_per_example_prompts(model):
    texts = ["a fine film", "dull and long", "ok"]
    own = model.score(texts, VERBALIZERS)
    same = np.stack([model.get_prompt()] * 3)
    np.testing.assert_allclose(
        model.score(texts, VERBALIZERS, prompts=same), own, atol=1e-5
    )
    other = np.random.default_rng(1).normal(size=(3, 4, 16)).astype("float32")
    mixed = model.score(texts, VERBALIZERS, prompts=other)
    # Each row depends only on its own prompt: batching is invariant.
    for i in range(3):
        alone = model.score(texts[i : i + 1], VERBALIZERS, prompts=other[i : i + 1])
        np.testing.assert_allclose(alone[0], mixed[i], atol=1e-5)
    with pytest.raises(ValueError, match=r"\(3, 4, 16\).*\(3, 5, 16\)"):
        model.score(texts, VERBALIZERS, prompts=np.zeros((3, 5, 16)))


def test_score_rejects_bad_candidates(model):
    with pytest.raises(ValueError, match="candidates"):
        model.score(["a", "b"], [["x", "y"], ["x"]])
    with pytest.raises(ValueError, match="empty"):
        model.score([], VERBALIZERS)


def test_blank_candidates_are_refused_and_long_ones_scored_whole(model):
    # A blank candidate would score only `</s>` and win.
    for blank in ("", "  "):
        with pytest.raises(ValueError, match="non-blank strings; got"):
            model.score(["a fine film"], ["positive", blank])
    long_a = "a " * 12 + "good film"
    long_b = "a " * 12 + "bad film"
    scores = model.score(["a fine film"], [long_a, long_b])
    assert scores[0, 0] != scores[0, 1]


def test_a_prompt_of_another_backbone_is_refused(model, tmp_path):
    other = PromptTunedT5(make_tiny_backbone(num_layers=1), prompt_length=4)
    path = other.save_prompt(tmp_path / "other", task="sst2")
    before = model.get_prompt()
    with pytest.raises(ValueError, match=r"'backbone.fingerprint' is [0-9a-f]{16}"):
        model.load_prompt(path)
    np.testing.assert_array_equal(model.get_prompt(), before)


def test_train_prompt_refuses_inputs_without_text(model):
    from keras_prompt.data import Example
    from keras_prompt.training import train_prompt

    model.compile()
    with pytest.raises(ValueError, match="max_input_length` must be >= 2"):
        train_prompt(model, "sst2", [Example("x", "positive", 1)], steps=1,
                     max_input_length=1)  # fmt: skip


def test_generate_runs_with_prompt(model):
    outputs = model.generate(["a fine film"], max_length=6)
    assert isinstance(outputs[0], str)


def test_generate_encodes_only_the_columns_some_input_uses(model, monkeypatch):
    """keras-hub pads generate()'s inputs to the full encoder length (32
    here); the encoder (and so cross-attention at every step) runs on the
    batch's own width instead, with the same generations."""
    from keras_prompt.models import prompted_t5

    widths = []
    encode = prompted_t5.PromptedT5.encode

    def spy(self, token_ids, *args, **kwargs):
        widths.append(token_ids.shape[1])
        return encode(self, token_ids, *args, **kwargs)

    monkeypatch.setattr(prompted_t5.PromptedT5, "encode", spy)
    texts = ["a fine film", "dull and long, a waste of an evening"]
    trimmed = model.generate(texts, max_length=6)
    assert widths and widths[-1] is None, widths  # traced with a dynamic width

    monkeypatch.setattr(prompted_t5, "_drop_unused_columns", lambda *inputs: inputs)
    model.generate_function = None  # retrace without the cut
    full = model.generate(texts, max_length=6)
    assert widths[-1] == 32
    assert trimmed == full


@pytest.mark.parametrize("bad", [0, -3, 1.5, None])
def test_prompt_length_must_be_positive_int(bad):
    with pytest.raises(ValueError, match="prompt_length"):
        PromptTunedT5(make_tiny_backbone(), prompt_length=bad)


def test_set_prompt_validates_and_keeps_old_value(model):
    before = model.get_prompt()
    with pytest.raises(ValueError, match=r"width 8 .* hidden size 16"):
        model.set_prompt(np.zeros((4, 8)))
    with pytest.raises(ValueError, match=r"length 5 .* prompt_length 4"):
        model.set_prompt(np.zeros((5, 16)))
    with pytest.raises(ValueError, match="NaN"):
        model.set_prompt(np.full((4, 16), np.inf))
    np.testing.assert_array_equal(model.get_prompt(), before)


def test_save_and_load_prompt(model, tmp_path):
    model.set_prompt(np.random.default_rng(0).normal(size=(4, 16)))
    path = model.save_prompt(tmp_path / "sst2", task="sst2", verbalizers=VERBALIZERS)
    metadata = json.loads((tmp_path / "sst2.json").read_text())
    assert metadata["task"] == "sst2" and metadata["verbalizers"] == VERBALIZERS
    assert metadata["hidden_dim"] == 16 and metadata["prompt_length"] == 4
    assert metadata["backbone"]["hidden_dim"] == 16
    assert metadata["keras_prompt_version"]
    assert metadata["init"]["class_name"] == "RandomUniform"
    expected = model.get_prompt()
    model.set_prompt(np.zeros((4, 16)))
    loaded = model.load_prompt(path)
    np.testing.assert_array_equal(model.get_prompt(), expected)
    assert loaded["task"] == "sst2"


def test_released_768_prompts_load_into_768_model_only(assets_dir, preprocessor):
    path = assets_dir / "prompts" / "t5_1_1_lm100k_base" / "sst2.npy"
    wide = PromptTunedT5(
        make_tiny_backbone(hidden_dim=768, num_layers=1), prompt_length=100
    )
    wide.load_prompt(path)
    np.testing.assert_array_equal(wide.get_prompt(), np.load(path))
    narrow = PromptTunedT5(
        make_tiny_backbone(hidden_dim=512, num_layers=1), prompt_length=100
    )
    before = narrow.get_prompt()
    with pytest.raises(ValueError, match=r"768.*512"):
        narrow.load_prompt(path)
    np.testing.assert_array_equal(narrow.get_prompt(), before)


def test_load_pickled_prompt_refused(model, tmp_path):
    path = tmp_path / "evil.npy"
    np.save(path, np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickled"):
        model.load_prompt(path)


def test_class_label_init_uses_label_embeddings(preprocessor, tokenizer):
    backbone = make_tiny_backbone()
    model = PromptTunedT5(
        backbone,
        preprocessor,
        prompt_length=6,
        prompt_initializer=initializers.ClassLabels(labels=VERBALIZERS, seed=0),
    )
    table = backbone.token_embedding.embeddings.numpy()
    prompt = model.get_prompt()
    for row, label in enumerate(VERBALIZERS):
        ids = np.asarray(tokenizer.tokenize(label))
        np.testing.assert_allclose(prompt[row], table[ids].mean(0), rtol=1e-6)
    # The rest are rows of the vocabulary's common tokens.
    for row in prompt[2:]:
        assert np.any(np.all(np.isclose(table[3:5003], row), axis=1))


def test_compile_defaults_follow_the_paper(model):
    from keras_prompt.optimizers import PromptAdafactor

    assert isinstance(model.optimizer, PromptAdafactor)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.3)


def test_config_and_keras_file_round_trip(model, tmp_path):
    model.set_prompt(np.random.default_rng(3).normal(size=(4, 16)))
    config = model.get_config()
    assert config["prompt_length"] == 4
    clone = PromptTunedT5.from_config(config)
    assert clone.prompt_length == 4
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(restored, PromptTunedT5)
    np.testing.assert_array_equal(restored.get_prompt(), model.get_prompt())
    np.testing.assert_allclose(
        restored.score(["a b"], VERBALIZERS),
        model.score(["a b"], VERBALIZERS),
        atol=1e-5,
    )
    assert [w.path for w in restored.trainable_weights] == ["soft_prompt/prompt"]


def test_from_local_preset_dir(tmp_path, tokenizer):
    backbone = make_tiny_backbone()
    backbone.save_to_preset(tmp_path / "preset")
    tokenizer.save_to_preset(tmp_path / "preset")
    model = PromptTunedT5.from_preset(tmp_path / "preset", prompt_length=3)
    assert model.prompt_shape == (3, 16)
    np.testing.assert_array_equal(
        model.backbone.token_embedding.embeddings.numpy(),
        backbone.token_embedding.embeddings.numpy(),
    )
    assert model.score(["x"], VERBALIZERS).shape == (1, 2)


def test_mixed_bfloat16_trains_float32_prompt(preprocessor):
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = PromptTunedT5(make_tiny_backbone(), preprocessor, prompt_length=4)
    finally:
        keras.config.set_dtype_policy(policy)
    assert model.soft_prompt.prompt.dtype == "float32"
    assert model.backbone.compute_dtype == "bfloat16"
    before = model.get_prompt()
    x = {
        "encoder_text": ["good", "bad"] * 2,
        "decoder_text": ["positive", "negative"] * 2,
    }
    model.fit(x, batch_size=4, epochs=1, verbose=0)
    assert not np.allclose(model.get_prompt(), before)


def test_from_preset_bad_directories(tmp_path, tokenizer):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PromptTunedT5.from_preset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        PromptTunedT5.from_preset(tmp_path / "empty")
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"class_name": "BertBackbone"}))
    with pytest.raises(ValueError, match="'BertBackbone'.*T5Backbone"):
        PromptTunedT5.from_preset(bert)
    no_weights = tmp_path / "no_weights"
    make_tiny_backbone().save_to_preset(no_weights)
    (no_weights / "model.weights.h5").unlink()
    with pytest.raises(FileNotFoundError, match="no weights file"):
        PromptTunedT5.from_preset(no_weights)
