"""keras-hub ``T5Backbone`` -> Hugging Face T5: config, weights, tokenizer.

Shaped like keras-hub's exporters
(``keras_hub/src/utils/transformers/export/<model>.py``: ``get_<model>_config``,
``get_<model>_weights_map``, ``get_<model>_tokenizer_config``), so it can go
upstream beside them. Weight names come from ``convert_t5.weight_plan``, the
table the importer uses, so import and export cannot drift apart.

What maps (``transformers.T5Config`` fields):

* ``tie_embedding_weights=True`` -> T5 1.0: ``tie_word_embeddings=true``
  (transformers then scales decoder outputs by ``d_model**-0.5``, as
  keras-hub's ``T5Seq2SeqLM`` does for tied models); only ``shared.weight``
  is written.
* ``tie_embedding_weights=False`` -> T5 1.1: ``tie_word_embeddings=false``
  (no scaling; transformers 5 records it as ``scale_decoder_outputs=false``)
  and a separate ``lm_head.weight``.
* ReLU FFN -> ``feed_forward_proj="relu"``; gated tanh-GELU ->
  ``"gated-gelu"`` (transformers' ``gelu_new``). Other activations have no
  exact transformers spelling that the importer reads back, and are refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import keras_hub
import numpy as np

from keras_prompt.checkpoints.convert_t5 import weight_plan
from keras_prompt.checkpoints.errors import HFCheckpointError
from keras_prompt.checkpoints.relative_position import (
    KERAS_HUB_RELATIVE_ATTENTION_MAX_DISTANCE,
    KERAS_HUB_RELATIVE_ATTENTION_NUM_BUCKETS,
)
from keras_prompt.models.geometries import GELU_TANH, resolve_activation

__all__ = [
    "get_t5_config",
    "get_t5_spiece_model",
    "get_t5_tokenizer_config",
    "get_t5_weights_map",
]


def _feed_forward_proj(backbone: keras_hub.models.T5Backbone) -> str:
    activation = backbone.activation
    if not backbone.use_gated_activation and activation is keras.activations.get(
        "relu"
    ):
        return "relu"
    if backbone.use_gated_activation and activation is resolve_activation(GELU_TANH):
        return "gated-gelu"
    name = getattr(activation, "__name__", repr(activation))
    raise HFCheckpointError(
        f"T5Backbone with activation {name!r} and "
        f"use_gated_activation={backbone.use_gated_activation} has no "
        "transformers T5 equivalent; expected ReLU without gating (T5 1.0, "
        "'relu') or the tanh-approximated GELU with gating (T5 1.1, "
        "'gated-gelu')."
    )


def get_t5_config(
    backbone: keras_hub.models.T5Backbone,
    tokenizer: keras_hub.models.T5Tokenizer | None = None,
) -> dict:
    """The ``config.json`` of ``backbone`` as ``transformers.T5Config`` reads it."""
    tied = bool(backbone.tie_embedding_weights)
    config = {
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "vocab_size": backbone.vocabulary_size,
        "d_model": backbone.hidden_dim,
        "d_kv": backbone.key_value_dim or backbone.hidden_dim // backbone.num_heads,
        "d_ff": backbone.intermediate_dim,
        "num_layers": backbone.num_layers,
        "num_decoder_layers": backbone.num_layers,
        "num_heads": backbone.num_heads,
        "relative_attention_num_buckets": KERAS_HUB_RELATIVE_ATTENTION_NUM_BUCKETS,
        "relative_attention_max_distance": KERAS_HUB_RELATIVE_ATTENTION_MAX_DISTANCE,
        "dropout_rate": float(backbone.dropout),
        "layer_norm_epsilon": float(backbone.layer_norm_epsilon),
        "initializer_factor": 1.0,
        "feed_forward_proj": _feed_forward_proj(backbone),
        "is_encoder_decoder": True,
        "use_cache": True,
        "tie_word_embeddings": tied,
        "scale_decoder_outputs": tied,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
    }
    if tokenizer is not None:
        config["pad_token_id"] = int(tokenizer.pad_token_id)
        config["eos_token_id"] = int(tokenizer.end_token_id)
        # T5 starts decoding from the pad token.
        config["decoder_start_token_id"] = int(tokenizer.pad_token_id)
    return config


def get_t5_weights_map(
    backbone: keras_hub.models.T5Backbone, include_lm_head: bool = True
) -> dict[str, np.ndarray]:
    """``{hf_weight_key: float32 array}`` in PyTorch layout.

    ``lm_head.weight`` is written only for untied backbones (with
    ``include_lm_head``); a tied model's head is ``shared.weight``, which
    transformers ties back on load.
    """
    embedding = backbone.token_embedding
    weights = {"shared.weight": keras.ops.convert_to_numpy(embedding.embeddings)}
    if include_lm_head and not backbone.tie_embedding_weights:
        head = keras.ops.convert_to_numpy(embedding.reverse_embeddings)
        weights["lm_head.weight"] = head.T
    for name, variable, transpose in weight_plan(backbone):
        value = keras.ops.convert_to_numpy(variable)
        weights[name] = value.T if transpose else value
    return {name: np.asarray(value, dtype="float32") for name, value in weights.items()}


def get_t5_spiece_model(tokenizer: keras_hub.models.T5Tokenizer) -> bytes:
    """The serialized SentencePiece model (``spiece.model``) of ``tokenizer``."""
    proto = tokenizer.proto
    if proto is None:
        raise HFCheckpointError(
            "The tokenizer has no SentencePiece model loaded; expected a "
            "T5Tokenizer built from a preset or a spiece.model."
        )
    if isinstance(proto, str):
        proto = Path(proto).read_bytes()
    return bytes(proto)


def get_t5_tokenizer_config(tokenizer: keras_hub.models.T5Tokenizer) -> dict:
    """``tokenizer_config.json`` for transformers' ``T5Tokenizer``.

    T5 models append 100 sentinel tokens (``<extra_id_0>``...) after the
    SentencePiece pieces; transformers adds them itself from ``extra_ids``.
    """
    return {
        "tokenizer_class": "T5Tokenizer",
        "model_max_length": 512,
        "extra_ids": 100,
        "eos_token": tokenizer.end_token,
        "pad_token": tokenizer.pad_token,
        "unk_token": "<unk>",
    }


def write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
