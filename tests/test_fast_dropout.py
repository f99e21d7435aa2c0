"""The cheaper dropout that PromptTunedT5 puts into its frozen backbone."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import make_tiny_backbone

from keras_prompt import PromptTunedT5, compat
from keras_prompt.layers.speed_kernels import set_speed_kernels
from keras_prompt.layers.speed_kernels.dropout import (
    FastDropout,
    fast_dropout,
    keep_mask,
)


def _kept_value_and_dropped_fraction(y):
    kept = np.unique(y[y != 0])
    assert kept.size == 1, kept  # one scale per call
    return kept[0], (y == 0).mean()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_drops_at_one_of_the_two_thresholds_and_rescales_to_match(dtype):
    x = tf.ones((64, 8, 31, 33), dtype)  # odd size: the byte split pads
    y = fast_dropout(x, 0.1, tf.constant([3, 4])).numpy().astype("float32")
    assert y.dtype == np.float32 and y.shape == x.shape
    scale, dropped = _kept_value_and_dropped_fraction(y)
    # 0.1 = 25.6 / 256: this call drops k/256 with k = 25 or 26 and keeps
    # 256 / (256 - k); 523,776 draws, so the std of `dropped` is 0.0004.
    k = 25 if abs(scale - 256 / 231) < abs(scale - 256 / 230) else 26
    np.testing.assert_allclose(scale, 256 / (256 - k), rtol=4e-3)  # bf16 rounding
    assert abs(dropped - k / 256) < 0.002
    assert abs(y.mean() - 1.0) < 0.005  # unbiased whichever k was drawn


def test_marginal_rate_is_exact_across_calls():
    """k = 26 is drawn with probability 0.6, so the average rate is 0.1."""
    x = tf.ones((64, 256))
    draws = [
        _kept_value_and_dropped_fraction(fast_dropout(x, 0.1, [7, seed]).numpy())
        for seed in range(400)
    ]
    high = np.mean([abs(scale - 256 / 230) < 1e-6 for scale, _ in draws])
    assert all(
        abs(scale - 256 / 230) < 1e-6 or abs(scale - 256 / 231) < 1e-6
        for scale, _ in draws
    )
    assert abs(high - 0.6) < 0.1  # std 0.025 over 400 calls
    # 6.5 million draws in all: the std of the mean rate is 0.00012.
    assert abs(np.mean([dropped for _, dropped in draws]) - 0.1) < 0.0006


def test_rates_on_the_byte_grid_use_one_threshold():
    x = tf.ones((128, 256))
    for seed in range(5):
        y = fast_dropout(x, 0.25, [1, seed]).numpy()
        scale, dropped = _kept_value_and_dropped_fraction(y)
        assert scale == pytest.approx(4 / 3) and abs(dropped - 0.25) < 0.01


def test_gradient_is_the_mask():
    x = tf.Variable(tf.random.normal((16, 50)))
    with tf.GradientTape() as tape:
        y = fast_dropout(x, 0.3, tf.constant([5, 6]))
        loss = tf.reduce_sum(y)
    grad = tape.gradient(loss, x).numpy()
    np.testing.assert_allclose(grad, (y.numpy() / x.numpy()), rtol=1e-5, atol=1e-6)


def test_edge_rates():
    x = tf.ones((3, 4))
    np.testing.assert_array_equal(fast_dropout(x, 0.0, [0, 0]).numpy(), x.numpy())
    np.testing.assert_array_equal(fast_dropout(x, 1.0, [0, 0]).numpy(), 0.0)
    # Above 255/256 the byte grid has no threshold: Keras' own dropout.
    y = fast_dropout(tf.ones((1000,)), 0.999, [0, 1]).numpy()
    assert (y == 0).mean() > 0.99
    with pytest.raises(ValueError, match="rate"):
        keep_mask([4], 0.9999, [0, 0], tf.float32)


def test_layer_is_identity_at_inference_and_draws_new_masks_per_call():
    layer = FastDropout(0.5, seed=0)
    x = np.ones((8, 64), "float32")
    np.testing.assert_array_equal(layer(x, training=False), x)
    a = keras.ops.convert_to_numpy(layer(x, training=True))
    b = keras.ops.convert_to_numpy(layer(x, training=True))
    assert set(np.unique(a)) <= {0.0, 2.0} and not np.array_equal(a, b)


def test_prompt_tuned_t5_switches_backbone_dropout(tokenizer):
    backbone = make_tiny_backbone(dropout=0.1)
    plain = [
        layer
        for layer in compat.sublayers(backbone)
        if isinstance(layer, keras.layers.Dropout)
    ]
    assert plain and not any(isinstance(layer, FastDropout) for layer in plain)
    PromptTunedT5(backbone, prompt_length=2)
    assert all(type(layer) is FastDropout for layer in plain)
    assert set_speed_kernels(backbone)["dropout"] == 0  # already switched
    # Rebuilding from the backbone's config gives plain keras layers again.
    rebuilt = type(backbone).from_config(backbone.get_config())
    assert not any(
        isinstance(layer, FastDropout)
        for layer in compat.sublayers(rebuilt)
    )
