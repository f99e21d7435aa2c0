"""The one switch for keras-prompt's speed kernels (PromptTunedT5(speed_kernels=))."""

import keras
import numpy as np
import pytest
from conftest import make_tiny_backbone

from keras_prompt import PromptTunedT5, compat
from keras_prompt.layers import speed_kernels
from keras_prompt.layers.speed_kernels.attention import (
    FusedSelfAttention,
    ShortQueryCrossAttention,
    T5MultiHeadAttention,
)
from keras_prompt.layers.speed_kernels.dropout import FastDropout
from keras_prompt.layers.speed_kernels.layer_norm import FastT5LayerNorm

FAST = {FusedSelfAttention, ShortQueryCrossAttention, FastDropout, FastT5LayerNorm}


def _classes(backbone) -> set[type]:
    return {type(layer) for layer in compat.sublayers(backbone)}


def _keras_hub_only(backbone) -> bool:
    return not _classes(backbone) & FAST


def test_auto_is_every_kernel_on_a_cpu_only_tensorflow():
    assert speed_kernels.default_speed_kernels() == speed_kernels.KERNELS
    model = PromptTunedT5(make_tiny_backbone(dropout=0.1), prompt_length=2)
    assert speed_kernels.active_speed_kernels(model.backbone) == speed_kernels.KERNELS


def test_auto_is_keras_hubs_layers_where_an_accelerator_is_visible(monkeypatch):
    import tensorflow as tf

    gpu = tf.config.LogicalDevice(name="/device:GPU:0", device_type="GPU")
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda *a: [gpu])
    assert speed_kernels.default_speed_kernels() == ()
    model = PromptTunedT5(make_tiny_backbone(dropout=0.1), prompt_length=2)
    assert speed_kernels.active_speed_kernels(model.backbone) == ()
    assert _keras_hub_only(model.backbone)


def test_false_gives_keras_hubs_layers_and_the_same_logits():
    backbone = make_tiny_backbone()
    fast = PromptTunedT5(backbone, prompt_length=2)
    fast.set_prompt(np.full((2, 16), 0.3))
    x = {
        "encoder_token_ids": np.array([[5, 6, 7, 1]], "int32"),
        "encoder_padding_mask": np.ones((1, 4), "int32"),
        "decoder_token_ids": np.array([[0, 9]], "int32"),
        "decoder_padding_mask": np.ones((1, 2), "int32"),
    }
    ours = keras.ops.convert_to_numpy(fast(x))
    # Another model on the same backbone takes the kernels out again.
    plain = PromptTunedT5(backbone, prompt_length=2, speed_kernels=False)
    plain.set_prompt(fast.get_prompt())
    assert speed_kernels.active_speed_kernels(backbone) == ()
    assert T5MultiHeadAttention in _classes(backbone) and _keras_hub_only(backbone)
    reference = keras.ops.convert_to_numpy(plain(x))
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_kernels_by_name_and_config_round_trip():
    model = PromptTunedT5(
        make_tiny_backbone(dropout=0.1), prompt_length=2, speed_kernels=["dropout"]
    )
    assert speed_kernels.active_speed_kernels(model.backbone) == ("dropout",)
    config = model.get_config()
    assert config["speed_kernels"] == ["dropout"]
    rebuilt = PromptTunedT5.from_config(config)
    assert rebuilt.speed_kernels == ["dropout"]
    assert speed_kernels.active_speed_kernels(rebuilt.backbone) == ("dropout",)


def test_unknown_kernel_is_refused():
    with pytest.raises(ValueError, match="Unknown speed kernel"):
        PromptTunedT5(make_tiny_backbone(), prompt_length=2, speed_kernels=["xla"])
