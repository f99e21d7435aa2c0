"""A trainable T5 encoder-decoder over packed rows (segment-masked attention).

keras-hub's ``T5Seq2SeqLM`` takes padding masks, which cannot keep the
examples of a packed row apart. This model runs the same
``keras_hub.models.T5Backbone`` layers (so its weights are the backbone's, and
a normal keras-hub preset is written from it) with attention masks built
from segment ids: encoder tokens attend within their segment, decoder tokens
causally within theirs, and cross-attention only to their own example's
encoder segment. T5's relative position bias depends on position
differences only, so packed examples see the same biases as unpacked ones.
"""

from __future__ import annotations

import keras
import keras_hub
from keras import ops

INPUT_NAMES: tuple[str, ...] = (
    "encoder_token_ids",
    "encoder_segment_ids",
    "decoder_token_ids",
    "decoder_segment_ids",
)


def _same_segment(query_segments, key_segments):
    """``(batch, q, k)`` bool: same non-padding segment."""
    same = ops.equal(query_segments[:, :, None], key_segments[:, None, :])
    return ops.logical_and(same, ops.greater(key_segments, 0)[:, None, :])


class T5Pretrainer(keras.Model):
    """Trains every weight of a T5 backbone on packed seq2seq rows.

    The logits are returned in float32 whatever the dtype policy, so the
    cross-entropy (and the perplexity derived from it) is computed at full
    precision under ``mixed_bfloat16``.

    Args:
        backbone: a ``keras_hub.models.T5Backbone`` (trained in place).
    """

    def __init__(self, backbone: keras_hub.models.T5Backbone, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone

    def call(self, inputs, training=None):
        missing = [name for name in INPUT_NAMES if name not in inputs]
        if missing:
            raise ValueError(
                f"T5Pretrainer inputs lack {missing}; expected {INPUT_NAMES}."
            )
        backbone = self.backbone
        encoder_segments = inputs["encoder_segment_ids"]
        decoder_segments = inputs["decoder_segment_ids"]
        encoded = self.encode(
            inputs["encoder_token_ids"], encoder_segments, training=training
        )

        x = backbone.token_embedding(inputs["decoder_token_ids"])
        x = backbone.decoder_embedding_dropout(x, training=training)
        self_mask = _same_segment(decoder_segments, decoder_segments)
        cross_mask = _same_segment(decoder_segments, encoder_segments)
        position_bias = None
        for layer in backbone.decoder_transformer_layers:
            x, position_bias = layer(
                x,
                attention_mask=self_mask,
                position_bias=position_bias,
                encoder_hidden_states=encoded,
                encoder_attention_mask=cross_mask,
                use_causal_mask=True,
                training=training,
            )
        x = backbone.decoder_layer_norm(x)
        x = backbone.decoder_dropout(x, training=training)
        if backbone.tie_embedding_weights:
            # As T5Seq2SeqLM: T5 1.0 rescales before a tied output layer.
            x = x * ops.cast(backbone.hidden_dim**-0.5, x.dtype)
        logits = backbone.token_embedding(x, reverse=True)
        return ops.cast(logits, "float32")

    def encode(self, token_ids, segment_ids, training=None):
        """Encoder outputs ``(batch, length, hidden)``; attention within segments."""
        backbone = self.backbone
        x = backbone.token_embedding(token_ids)
        x = backbone.encoder_embedding_dropout(x, training=training)
        mask = _same_segment(segment_ids, segment_ids)
        position_bias = None
        for layer in backbone.encoder_transformer_layers:
            x, position_bias = layer(
                x,
                attention_mask=mask,
                position_bias=position_bias,
                use_causal_mask=False,
                training=training,
            )
        x = backbone.encoder_layer_norm(x)
        return backbone.encoder_dropout(x, training=training)

    def compile(self, optimizer="adamw", **kwargs):
        """Token cross-entropy averaged over real target tokens."""
        kwargs.setdefault(
            "loss",
            keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, reduction="mean_with_sample_weight"
            ),
        )
        super().compile(optimizer=optimizer, **kwargs)
