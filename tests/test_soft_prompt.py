import keras
import numpy as np
import pytest

from keras_prompt import SoftPrompt


def test_prepends_prompt_and_extends_mask():
    layer = SoftPrompt(3, initializer="random_uniform", hidden_dim=4)
    embeddings = np.arange(2 * 5 * 4, dtype="float32").reshape(2, 5, 4)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], "int32")
    outputs, outputs_mask = layer(embeddings, mask)
    outputs = keras.ops.convert_to_numpy(outputs)
    prompt = keras.ops.convert_to_numpy(layer.prompt)
    np.testing.assert_allclose(outputs[:, :3], np.stack([prompt, prompt]))
    np.testing.assert_allclose(outputs[:, 3:], embeddings)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(outputs_mask),
        np.concatenate([np.ones((2, 3), "int32"), mask], axis=1),
    )


def test_per_example_prompts_replace_the_weight():
    layer = SoftPrompt(2, hidden_dim=3)
    embeddings = np.zeros((2, 4, 3), "float32")
    prompts = np.stack([np.full((2, 3), 1.0), np.full((2, 3), 7.0)]).astype("float32")
    outputs, _ = layer(embeddings, np.ones((2, 4), "int32"), prompts=prompts)
    outputs = keras.ops.convert_to_numpy(outputs)
    np.testing.assert_allclose(outputs[0, :2], 1.0)
    np.testing.assert_allclose(outputs[1, :2], 7.0)


def test_builds_lazily_from_embedding_width():
    layer = SoftPrompt(4)
    outputs, mask = layer(np.zeros((1, 2, 6), "float32"), np.ones((1, 2), "int32"))
    assert tuple(layer.prompt.shape) == (4, 6)
    assert tuple(outputs.shape) == (1, 6, 6) and tuple(mask.shape) == (1, 6)


def test_wrong_width_names_both_shapes():
    layer = SoftPrompt(2, hidden_dim=8)
    with pytest.raises(ValueError, match=r"\(batch, sequence_length, 8\).*\(1, 3, 5\)"):
        layer(np.zeros((1, 3, 5), "float32"), np.ones((1, 3), "int32"))


def test_wrong_prompts_shape_names_both_shapes():
    layer = SoftPrompt(2, hidden_dim=4)
    with pytest.raises(ValueError, match=r"\(1, 2, 4\).*\(1, 3, 4\)"):
        layer(
            np.zeros((1, 3, 4), "float32"),
            np.ones((1, 3), "int32"),
            prompts=np.zeros((1, 3, 4), "float32"),
        )
    with pytest.raises(ValueError, match="rank|shape"):
        layer(
            np.zeros((1, 3, 4), "float32"),
            np.ones((1, 3), "int32"),
            prompts=np.zeros((2, 4), "float32"),
        )


@pytest.mark.parametrize("length", [0, -1, 2.5, True])
def test_rejects_bad_length(length):
    with pytest.raises(ValueError, match="length"):
        SoftPrompt(length)


def test_config_round_trip():
    layer = SoftPrompt(3, initializer="random_uniform", hidden_dim=4, name="p")
    clone = SoftPrompt.from_config(layer.get_config())
    assert clone.length == 3 and clone.hidden_dim == 4 and clone.name == "p"
    assert clone.get_config() == layer.get_config()


def test_mixed_bfloat16_keeps_float32_weight():
    layer = SoftPrompt(2, hidden_dim=4, dtype="mixed_bfloat16")
    assert layer.prompt.dtype == "float32"
    embeddings = keras.ops.cast(np.zeros((1, 3, 4)), "bfloat16")
    outputs, _ = layer(embeddings, np.ones((1, 3), "int32"))
    assert outputs.dtype == "bfloat16"
