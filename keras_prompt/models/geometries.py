"""Named T5 geometries and T5's initialisation, for backbones made from scratch.

Used where no pretrained weights exist (benchmarks, from-scratch pretraining,
`keras-prompt make-preset`, parameter counts). Numbers are those of the
public `config.json` files of t5-small/t5-base (T5 1.0: ReLU FFN, tied
embeddings) and t5-v1_1-* (gated-GELU FFN, untied LM head, no dropout at
pretraining), plus `t5_1_1_mini`, the geometry of the embedded checkpoint.

Every backbone made here is initialised as Mesh TF / Hugging Face T5 are
(`initialize_embeddings`): keras-hub's own `T5Backbone` draws its token
embedding with `TruncatedNormal(1.0)`, whose first argument is the *mean*, so
every token starts as the same vector (docs/keras_hub_t5_init.md).
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
    # The embedded checkpoint (keras_prompt/presets/): the largest T5 1.1-style
    # model whose float16 weights fit a committed 40 MB preset.
    "t5_1_1_mini": dict(
        num_layers=4,
        num_heads=3,
        hidden_dim=192,
        intermediate_dim=768,
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


def count_parameters(name: str) -> int:
    """Parameter count of a named geometry, without allocating its weights."""
    g = geometry_config(name)
    d, ff, layers = g["hidden_dim"], g["intermediate_dim"], g["num_layers"]
    inner = g["num_heads"] * g["key_value_dim"]
    attention = 4 * d * inner
    ffn = (3 if g["use_gated_activation"] else 2) * d * ff
    bias = 32 * g["num_heads"]  # relative attention bias, first layer of each stack
    # Each sub-layer has an RMS-norm scale (d); each stack a final one.
    encoder = layers * (attention + ffn + 2 * d) + d + bias
    decoder = layers * (2 * attention + ffn + 3 * d) + d + bias
    tables = 1 if g["tie_embedding_weights"] else 2
    return encoder + decoder + tables * g["vocabulary_size"] * d


def initialize_embeddings(
    backbone: keras_hub.models.T5Backbone, seed: int | None = None
) -> keras_hub.models.T5Backbone:
    """Re-draws the token embedding (and an untied LM head) as T5 does.

    Mesh TF and Hugging Face initialise T5's token embedding N(0, 1). With
    untied weights the LM head is drawn N(0, hidden_dim**-0.5), so the
    logits of the RMS-normalised decoder output have unit variance (a tied
    head gets the same from T5Seq2SeqLM's `hidden_dim**-0.5` rescaling).
    keras-hub's `T5Backbone` initialises both tables with mean 1.0, which
    makes every token the same vector; call this on any backbone built from
    scratch. Every other weight keeps keras-hub's initialiser.

    Args:
        backbone: a freshly built `keras_hub.models.T5Backbone` (changed in
            place and returned).
        seed: seed of the draws; `None` uses Keras' global seed (set by
            `keras.utils.set_random_seed`).

    Example:

    ```python
    import keras_hub
    from keras_prompt.models.geometries import geometry_config, initialize_embeddings
    backbone = initialize_embeddings(
        keras_hub.models.T5Backbone(**geometry_config("t5_1_1_tiny")), seed=0
    )
    ```
    """
    embedding = backbone.token_embedding
    tables = [(embedding.embeddings, 1.0)]
    if not backbone.tie_embedding_weights:
        tables.append((embedding.reverse_embeddings, backbone.hidden_dim**-0.5))
    for offset, (variable, stddev) in enumerate(tables):
        draw = keras.initializers.RandomNormal(
            mean=0.0, stddev=stddev, seed=None if seed is None else seed + offset
        )
        variable.assign(draw(tuple(variable.shape), dtype=variable.dtype))
    return backbone


def build_backbone(
    name: str, *, seed: int | None = None, **overrides
) -> keras_hub.models.T5Backbone:
    """A randomly initialised `T5Backbone` of a named geometry (T5's init)."""
    backbone = keras_hub.models.T5Backbone(**geometry_config(name, **overrides))
    return initialize_embeddings(backbone, seed=seed)
