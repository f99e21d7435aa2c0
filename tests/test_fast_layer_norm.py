"""The closed-form-gradient RMS norm that PromptTunedT5 puts into its backbone."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import make_tiny_backbone, make_tiny_model_and_batch

from keras_prompt import compat
from keras_prompt.layers.speed_kernels import set_speed_kernels
from keras_prompt.layers.speed_kernels.layer_norm import FastT5LayerNorm, T5LayerNorm


def _norm(dtype):
    layer = FastT5LayerNorm(epsilon=1e-6, dtype=dtype)
    layer.build((None, 24))
    layer.weight.assign(np.random.default_rng(0).normal(1.0, 0.5, 24))
    return layer


def _value_and_gradients(layer, call, inputs):
    inputs = tf.Variable(inputs)
    with tf.GradientTape() as tape:
        outputs = call(inputs)
        # A non-uniform upstream gradient (a plain sum would hide errors in
        # the mean's branch).
        loss = tf.reduce_sum(
            tf.cast(outputs, tf.float32) * tf.sin(tf.range(24, dtype=tf.float32))
        )
    gradients = tape.gradient(loss, [inputs, layer.weight])
    return [np.asarray(tf.cast(t, tf.float32)) for t in [outputs, *gradients]]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_matches_keras_hub_values_and_gradients(dtype):
    layer = _norm(dtype)
    inputs = np.random.default_rng(1).normal(0, 3, (2, 7, 24)).astype(dtype)
    ours = _value_and_gradients(layer, layer, inputs)
    theirs = _value_and_gradients(layer, lambda x: T5LayerNorm.call(layer, x), inputs)
    # Same forward ops in the same order and dtype: identical outputs.
    np.testing.assert_array_equal(ours[0], theirs[0])
    tolerance = 1e-5 if dtype == "float32" else 3e-2
    for mine, reference in zip(ours[1:], theirs[1:]):
        scale = np.abs(reference).max()
        np.testing.assert_allclose(mine / scale, reference / scale, atol=tolerance)


def test_prompt_gradient_through_the_whole_model_matches():
    model, x = make_tiny_model_and_batch()
    norms = [
        layer
        for layer in compat.sublayers(model.backbone)
        if isinstance(layer, T5LayerNorm)
    ]
    assert norms and all(type(layer) is FastT5LayerNorm for layer in norms)

    def prompt_gradient():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x) * 0.01)
        return tape.gradient(loss, model.trainable_variables)[0].numpy()

    ours = prompt_gradient()
    kernels = set_speed_kernels(model.backbone, ["attention", "dropout"])
    assert not any(type(layer) is FastT5LayerNorm for layer in norms)
    assert kernels["layer_norm"] == 0
    reference = prompt_gradient()
    assert np.abs(reference).max() > 0
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-7)
    assert set_speed_kernels(model.backbone)["layer_norm"] == len(norms)
    # Rebuilding from the backbone's config gives keras-hub's layers again.
    rebuilt = type(model.backbone).from_config(model.backbone.get_config())
    assert not any(
        type(layer) is FastT5LayerNorm
        for layer in compat.sublayers(rebuilt)
    )


def test_weight_files_load_across_the_switch(tmp_path):
    """Saved with the fast norms (model tuning) loads into keras-hub's and back."""
    switched = make_tiny_backbone()
    assert set_speed_kernels(switched, ["layer_norm"])["layer_norm"] > 0
    for variable in switched.weights:
        variable.assign(np.full(variable.shape, 0.5, variable.dtype))
    switched.save_weights(tmp_path / "switched.weights.h5")
    plain = make_tiny_backbone()
    plain.load_weights(tmp_path / "switched.weights.h5")
    for mine, theirs in zip(plain.weights, switched.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    plain.save_weights(tmp_path / "plain.weights.h5")
    switched.load_weights(tmp_path / "plain.weights.h5")
