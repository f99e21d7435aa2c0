"""The reassociated cross-attention equals keras-hub's, value and gradient."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import make_tiny_model_and_batch

from keras_prompt.layers.speed_kernels import set_speed_kernels
from keras_prompt.layers.speed_kernels.attention import (
    FusedSelfAttention,
    ShortQueryCrossAttention,
    T5MultiHeadAttention,
    reassociation_pays,
)


def _attention(dtype="float32"):
    layer = ShortQueryCrossAttention(
        is_decoder=True,
        hidden_dim=32,
        key_value_dim=8,
        num_heads=4,
        dropout=0.0,
        dtype=dtype,
    )
    layer(np.zeros((1, 2, 32), "float32"), key_value_states=np.zeros((1, 3, 32)))
    rng = np.random.default_rng(0)
    for variable in layer.weights:
        variable.assign(rng.normal(0, 0.3, variable.shape).astype("float32"))
    return layer


def _inputs(batch=3, query=4, source=11):
    rng = np.random.default_rng(1)
    hidden = rng.normal(size=(batch, query, 32)).astype("float32")
    encoded = rng.normal(size=(batch, source, 32)).astype("float32")
    mask = np.ones((batch, 1, source), "int32")
    mask[0, :, 7:] = 0
    mask[2, :, 2:] = 0
    return hidden, encoded, mask


def _keras_hub(layer, hidden, encoded, mask):
    return T5MultiHeadAttention.call(
        layer, hidden, mask=mask, key_value_states=encoded
    )[0]


def test_reassociated_matches_keras_hub_in_float32():
    layer = _attention()
    hidden, encoded, mask = _inputs()
    ours, bias, cache = layer(hidden, mask=mask, key_value_states=encoded)
    assert bias is None and cache is None
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours),
        keras.ops.convert_to_numpy(_keras_hub(layer, hidden, encoded, mask)),
        rtol=1e-5,
        atol=1e-5,
    )


def test_gradient_to_the_encoder_matches():
    layer = _attention()
    hidden, encoded, mask = _inputs()
    encoded = tf.Variable(encoded)

    def grad(fn):
        with tf.GradientTape() as tape:
            out = fn()
            loss = tf.reduce_sum(out * tf.sin(tf.range(32, dtype=out.dtype)))
        return tape.gradient(loss, encoded).numpy()

    ours = grad(lambda: layer(hidden, mask=mask, key_value_states=encoded)[0])
    reference = grad(lambda: _keras_hub(layer, hidden, encoded, mask))
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)


def test_mixed_bfloat16_agrees_with_float32():
    layer32 = _attention()
    layer16 = _attention("mixed_bfloat16")
    layer16.set_weights(layer32.get_weights())
    hidden, encoded, mask = _inputs()
    ours = layer16(hidden, mask=mask, key_value_states=encoded)[0]
    assert ours.dtype == "bfloat16"
    reference = _keras_hub(layer32, hidden, encoded, mask)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours).astype("float32"),
        keras.ops.convert_to_numpy(reference),
        atol=0.05 * float(np.abs(keras.ops.convert_to_numpy(reference)).max()),
    )


def test_unknown_lengths_choose_at_run_time():
    layer = _attention()
    spec = tf.TensorSpec((None, None, 32), tf.float32)
    mask_spec = tf.TensorSpec((None, 1, None), tf.int32)
    run = tf.function(
        lambda h, e, m: layer(h, mask=m, key_value_states=e)[0],
        input_signature=[spec, spec, mask_spec],
    )
    for query in (3, 40):  # below and above the break-even length
        hidden, encoded, mask = _inputs(query=query)
        np.testing.assert_allclose(
            run(hidden, encoded, mask).numpy(),
            keras.ops.convert_to_numpy(_keras_hub(layer, hidden, encoded, mask)),
            rtol=1e-5,
            atol=1e-5,
        )


def test_break_even():
    # t5-small: reassociation needs fewer FLOPs up to ~48 decoder positions.
    assert reassociation_pays(4, 8, 512, 512, 64)
    assert reassociation_pays(48, 8, 512, 512, 64)
    assert not reassociation_pays(50, 8, 512, 512, 64)


def _assert_logits_close(ours, reference, policy):
    if policy == "float32":
        np.testing.assert_allclose(ours, reference, atol=1e-4)
    else:
        # bfloat16 rounds differently in a different order: a few percent of
        # the logits' norm; a wrong mask, bias or head layout moves them O(1).
        error = np.linalg.norm(ours - reference) / np.linalg.norm(reference)
        assert error < 0.05, error


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_prompt_tuned_t5_logits_unchanged(policy):
    """Whole model: switched cross-attention vs keras-hub's, same weights."""
    model, x = make_tiny_model_and_batch(policy, np.ones((2, 3), "int32"))
    layers = [
        layer.cross_attention for layer in model.backbone.decoder_transformer_layers
    ]
    assert all(type(layer) is ShortQueryCrossAttention for layer in layers)
    ours = keras.ops.convert_to_numpy(model(x)).astype("float32")
    for layer in layers:
        layer.__class__ = T5MultiHeadAttention
    reference = keras.ops.convert_to_numpy(model(x)).astype("float32")
    # The switch puts back exactly the layers taken out (self-attention
    # stayed switched).
    assert set_speed_kernels(model.backbone)["attention"] == len(layers)
    _assert_logits_close(ours, reference, policy)


def _self_attention(dtype="float32", relative=True, decoder=False):
    layer = FusedSelfAttention(
        is_decoder=decoder,
        hidden_dim=32,
        key_value_dim=8,
        num_heads=4,
        dropout=0.0,
        use_relative_attention_bias=relative,
        dtype=dtype,
    )
    layer(np.zeros((1, 3, 32), "float32"))
    rng = np.random.default_rng(2)
    for variable in layer.weights:
        variable.assign(rng.normal(0, 0.3, variable.shape).astype("float32"))
    return layer


@pytest.mark.parametrize("relative", [True, False])
def test_fused_self_attention_matches_keras_hub(relative):
    layer = _self_attention(relative=relative)
    rng = np.random.default_rng(3)
    hidden = tf.Variable(rng.normal(size=(3, 11, 32)).astype("float32"))
    mask = np.ones((3, 1, 11), "int32")
    mask[0, :, 7:] = 0
    given_bias = None if relative else rng.normal(size=(1, 4, 11, 11)).astype("float32")

    def run(fn):
        with tf.GradientTape() as tape:
            out, bias, cache = fn(hidden, mask=mask, position_bias=given_bias)
            loss = tf.reduce_sum(out * tf.sin(tf.range(32, dtype=out.dtype)))
        bias = keras.ops.convert_to_numpy(bias)
        return out.numpy(), bias, cache, tape.gradient(loss, hidden).numpy()

    ours = run(layer)
    reference = run(lambda *a, **k: T5MultiHeadAttention.call(layer, *a, **k))
    assert ours[2] is None and reference[2] is None
    for mine, theirs in zip(ours[:2] + ours[3:], reference[:2] + reference[3:]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5)


def test_fused_self_attention_keeps_the_cached_path():
    """Cached decoding goes through keras-hub's code unchanged."""
    layer = _self_attention(decoder=True)
    rng = np.random.default_rng(4)
    hidden = rng.normal(size=(2, 1, 32)).astype("float32")
    cache = rng.normal(size=(2, 2, 5, 4, 8)).astype("float32")
    ours = layer(hidden, cache=cache, cache_update_index=2)
    reference = T5MultiHeadAttention.call(
        layer, hidden, cache=cache, cache_update_index=2
    )
    for mine, theirs in zip(ours, reference):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(theirs),
            rtol=1e-6, atol=1e-6,
        )


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_all_switched_layers_leave_logits_unchanged(policy):
    """Whole model: fused self- and short-query cross-attention vs keras-hub's."""
    model, x = make_tiny_model_and_batch(
        policy, np.array([[1] * 3, [1, 1, 0]], "int32")
    )
    backbone = model.backbone
    layers = [
        layer.self_attention
        for layer in backbone.encoder_transformer_layers
        + backbone.decoder_transformer_layers
    ]
    assert all(type(layer) is FusedSelfAttention for layer in layers)
    layers += [layer.cross_attention for layer in backbone.decoder_transformer_layers]
    ours = keras.ops.convert_to_numpy(model(x)).astype("float32")
    set_speed_kernels(backbone, ["layer_norm", "dropout"])
    assert all(type(layer) is T5MultiHeadAttention for layer in layers)
    reference = keras.ops.convert_to_numpy(model(x)).astype("float32")
    assert set_speed_kernels(backbone)["attention"] == len(layers)
    _assert_logits_close(ours, reference, policy)
