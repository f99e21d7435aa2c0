"""Named T5 geometries, for randomly initialised backbones of real sizes.

Used where no pretrained weights exist (benchmarks, from-scratch pretraining,
parameter counts). Numbers are those of the public `config.json` files of
t5-small/t5-base (T5 1.0: ReLU FFN, tied embeddings) and t5-v1_1-* (gated-GELU
FFN, untied LM head, no dropout at pretraining).
"""

from __future__ import annotations

from typing import Any

import keras
import keras_hub

# The tanh-approximated GELU ("gelu_new") of T5 1.1's gated FFN. keras-hub
# registers one for its own models; using it keeps presets loadable with
# keras-hub alone, without importing keras_prompt.
GELU_TANH = "gelu_tanh"
_GELU_TANH_REGISTERED_NAME = "keras_hub>gelu_approximate"


def resolve_activation(name: str):
    """Maps `"gelu_tanh"` to keras-hub's registered function; others pass."""
    if name != GELU_TANH:
        return name
    function = keras.saving.get_registered_object(_GELU_TANH_REGISTERED_NAME)
    if function is None:
        raise RuntimeError(
            f"keras-hub no longer registers '{_GELU_TANH_REGISTERED_NAME}', the "
            "tanh-approximated GELU that T5 1.1 ('gated-gelu') needs."
        )
    return function


_T5_1_0 = dict(
    activation="relu", use_gated_activation=False, tie_embedding_weights=True
)
_T5_1_1 = dict(
    activation=GELU_TANH,
    use_gated_activation=True,
    tie_embedding_weights=False,
)

T5_GEOMETRIES: dict[str, dict[str, Any]] = {
    "t5_small": dict(
        num_layers=6,
        num_heads=8,
        hidden_dim=512,
        intermediate_dim=2048,
        key_value_dim=64,
        **_T5_1_0,
    ),
    "t5_base": dict(
        num_layers=12,
        num_heads=12,
        hidden_dim=768,
        intermediate_dim=3072,
        key_value_dim=64,
        **_T5_1_0,
    ),
    "t5_1_1_small": dict(
        num_layers=8,
        num_heads=6,
        hidden_dim=512,
        intermediate_dim=1024,
        key_value_dim=64,
        **_T5_1_1,
    ),
    "t5_1_1_base": dict(
        num_layers=12,
        num_heads=12,
        hidden_dim=768,
        intermediate_dim=2048,
        key_value_dim=64,
        **_T5_1_1,
    ),
    # Unit-test size: real vocabulary, toy width.
    "t5_1_1_tiny": dict(
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        key_value_dim=8,
        **_T5_1_1,
    ),
}

T5_VOCABULARY_SIZE = 32128


def geometry_config(name: str, **overrides) -> dict[str, Any]:
    """The `T5Backbone` constructor arguments of a named geometry."""
    if name not in T5_GEOMETRIES:
        raise ValueError(
            f"Unknown T5 geometry {name!r}; known geometries: {sorted(T5_GEOMETRIES)}."
        )
    config = dict(vocabulary_size=T5_VOCABULARY_SIZE, dropout=0.1)
    config.update(T5_GEOMETRIES[name])
    config.update(overrides)
    config["activation"] = resolve_activation(config["activation"])
    return config


def build_backbone(name: str, **overrides) -> keras_hub.models.T5Backbone:
    """A randomly initialised `T5Backbone` of a named geometry."""
    return keras_hub.models.T5Backbone(**geometry_config(name, **overrides))
