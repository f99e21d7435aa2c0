"""The cheaper dropout that PromptTunedT5 puts into its frozen backbone."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import make_tiny_backbone

from keras_prompt import PromptTunedT5
from keras_prompt.layers.fast_dropout import FastDropout, fast_dropout, use_fast_dropout


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_drops_at_the_rate_and_rescales(dtype):
    x = tf.ones((64, 8, 31, 33), dtype)  # odd sizes: the uint16 split pads
    y = fast_dropout(x, 0.1, tf.constant([3, 4])).numpy().astype("float32")
    assert y.dtype == np.float32 and y.shape == x.shape
    values = np.unique(y)
    np.testing.assert_allclose(values, [0.0, 1 / 0.9], rtol=1e-2)
    # 523,776 draws: the std of the dropped fraction is 0.0004.
    assert abs((y == 0).mean() - 0.1) < 0.003
    assert abs(y.mean() - 1.0) < 0.005


def test_deterministic_per_seed_and_independent_across_seeds():
    x = tf.ones((4, 1000))
    first = fast_dropout(x, 0.5, tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(first, fast_dropout(x, 0.5, [1, 2]).numpy())
    other = fast_dropout(x, 0.5, tf.constant([1, 3])).numpy()
    assert 0.4 < ((first == 0) != (other == 0)).mean() < 0.6
    # The two 16-bit halves of one Philox word are not correlated.
    halves = (first.reshape(-1, 2) == 0).astype("float32")
    assert abs(np.corrcoef(halves[:, 0], halves[:, 1])[0, 1]) < 0.05


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
        for layer in backbone._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.Dropout)
    ]
    assert plain and not any(isinstance(layer, FastDropout) for layer in plain)
    PromptTunedT5(backbone, prompt_length=2)
    assert all(type(layer) is FastDropout for layer in plain)
    assert use_fast_dropout(backbone) == 0  # already switched
    # Rebuilding from the backbone's config gives plain keras layers again.
    rebuilt = type(backbone).from_config(backbone.get_config())
    assert not any(
        isinstance(layer, FastDropout)
        for layer in rebuilt._flatten_layers(include_self=False, recursive=True)
    )
