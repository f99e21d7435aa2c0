"""`PromptTunedT5(tune="prompt" | "model")`: prompt tuning vs model tuning."""

import keras
import keras_hub
import numpy as np
import pytest
from conftest import make_tiny_backbone

from keras_prompt import PromptTunedT5
from keras_prompt.callbacks import PromptBackup
from keras_prompt.optimizers import PromptAdafactor

VERBALIZERS = ["negative", "positive"]


@pytest.fixture
def preprocessor(tokenizer):
    return keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=32, decoder_sequence_length=8
    )


def _fit(model):
    x = {
        "encoder_text": ["a great movie", "an awful film"] * 4,
        "decoder_text": ["positive", "negative"] * 4,
    }
    model.fit(x, batch_size=4, epochs=1, verbose=0)


def _backbone_variables(model):
    return [w for w in model.weights if not w.path.startswith("soft_prompt")]


@pytest.mark.parametrize("prompt_length", [0, 4])
def test_model_tuning_trains_every_weight(preprocessor, prompt_length):
    model = PromptTunedT5(
        make_tiny_backbone(), preprocessor, prompt_length=prompt_length, tune="model"
    )
    backbone_ids = {id(w) for w in model.backbone.trainable_weights}
    assert len(backbone_ids) == len(model.backbone.weights) > 10
    assert backbone_ids <= {id(w) for w in model.trainable_weights}
    expected = model.backbone.count_params() + prompt_length * 16
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == expected
    has_prompt = any(w.path == "soft_prompt/prompt" for w in model.trainable_weights)
    assert has_prompt == (prompt_length > 0)


def test_prompt_tuning_trains_only_the_prompt(preprocessor):
    model = PromptTunedT5(make_tiny_backbone(), preprocessor, prompt_length=4)
    assert model.tune == "prompt"
    assert [w.path for w in model.trainable_weights] == ["soft_prompt/prompt"]
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 4 * 16


@pytest.mark.parametrize("tune", ["prompt", "model"])
def test_fit_moves_backbone_only_in_model_mode(preprocessor, tune):
    model = PromptTunedT5(
        make_tiny_backbone(), preprocessor, prompt_length=3, tune=tune
    )
    # A fixed learning rate for both, so the test is about what trains.
    model.compile(optimizer=PromptAdafactor(learning_rate=0.01))
    before = [np.array(w.numpy()) for w in _backbone_variables(model)]
    prompt_before = model.get_prompt()
    _fit(model)
    after = [np.array(w.numpy()) for w in _backbone_variables(model)]
    changed = [not np.array_equal(b, a) for b, a in zip(before, after)]
    assert not np.allclose(model.get_prompt(), prompt_before)
    if tune == "prompt":
        assert not any(changed)
    else:
        assert all(changed)


def test_model_tuning_without_prompt_scores_and_generates(preprocessor):
    model = PromptTunedT5(
        make_tiny_backbone(), preprocessor, prompt_length=0, tune="model"
    )
    assert model.score(["a fine film", "bad"], VERBALIZERS).shape == (2, 2)
    assert isinstance(model.generate(["a fine film"], max_length=5)[0], str)
    _fit(model)
    with pytest.raises(ValueError, match="no prompt|none"):
        model.get_prompt()
    with pytest.raises(ValueError, match="prompt"):
        model.score(["x"], VERBALIZERS, prompts=np.zeros((1, 1, 16)))


def test_no_prompt_model_matches_the_plain_backbone(preprocessor):
    """tune="model" with P=0 is exactly keras-hub's T5Seq2SeqLM on the backbone."""
    backbone = make_tiny_backbone()
    model = PromptTunedT5(backbone, preprocessor, prompt_length=0, tune="model")
    x, _, _ = preprocessor(
        {"encoder_text": ["a b c"], "decoder_text": ["positive"]}
    )
    x = {k: np.asarray(v).astype("int32") for k, v in x.items()}
    ours = model(x)
    reference = keras_hub.models.T5Seq2SeqLM(backbone=backbone)(x)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(reference), atol=1e-4)


def test_compile_defaults_per_mode(preprocessor):
    prompt = PromptTunedT5(make_tiny_backbone(), preprocessor, prompt_length=2)
    model = PromptTunedT5(
        make_tiny_backbone(), preprocessor, prompt_length=0, tune="model"
    )
    assert float(prompt.optimizer.learning_rate) == pytest.approx(0.3)
    assert isinstance(model.optimizer, PromptAdafactor)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    assert model.optimizer.multiply_by_parameter_scale is False


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tune": "prompts"}, "`tune` must be one of"),
        ({"tune": None}, "`tune` must be one of"),
        ({"tune": "prompt", "prompt_length": 0}, ">= 1"),
        ({"tune": "model", "prompt_length": -1}, ">= 0"),
    ],
)
def test_bad_tune_arguments(kwargs, match):
    kwargs = {"prompt_length": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        PromptTunedT5(make_tiny_backbone(), **kwargs)


@pytest.mark.parametrize("prompt_length", [0, 3])
def test_config_round_trip_keeps_tune(preprocessor, tmp_path, prompt_length):
    model = PromptTunedT5(
        make_tiny_backbone(), preprocessor, prompt_length=prompt_length, tune="model"
    )
    config = model.get_config()
    assert config["tune"] == "model" and config["prompt_length"] == prompt_length
    clone = PromptTunedT5.from_config(config)
    assert clone.tune == "model"
    assert len(clone.trainable_weights) == len(model.trainable_weights)
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert restored.tune == "model"
    np.testing.assert_allclose(
        restored.score(["a b"], VERBALIZERS), model.score(["a b"], VERBALIZERS),
        atol=1e-5,
    )
    # Configs written before `tune` existed load as prompt tuning.
    old = {k: v for k, v in PromptTunedT5(
        make_tiny_backbone(), preprocessor, prompt_length=2
    ).get_config().items() if k != "tune"}
    assert PromptTunedT5.from_config(old).tune == "prompt"


def test_from_preset_takes_tune(tmp_path, tokenizer):
    backbone = make_tiny_backbone()
    backbone.save_to_preset(tmp_path / "preset")
    tokenizer.save_to_preset(tmp_path / "preset")
    model = PromptTunedT5.from_preset(
        tmp_path / "preset", prompt_length=0, tune="model"
    )
    assert model.tune == "model" and model.prompt_length == 0
    assert len(model.trainable_weights) == len(model.backbone.weights)


def test_prompt_files_refused_for_model_tuning(preprocessor, tmp_path):
    model = PromptTunedT5(
        make_tiny_backbone(), preprocessor, prompt_length=3, tune="model"
    )
    with pytest.raises(ValueError, match="backbone"):
        model.save_prompt(tmp_path / "p")
    with pytest.raises(ValueError, match="tune='model'"):
        PromptBackup(tmp_path / "backup").set_model(model)
    assert not list(tmp_path.iterdir())
