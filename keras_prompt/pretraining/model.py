"""A trainable T5 encoder-decoder over packed rows (segment-masked attention).

keras-hub's ``T5Seq2SeqLM`` takes padding masks, which cannot keep the
examples of a packed row apart. This model runs the same
``keras_hub.models.T5Backbone`` layers (so its weights are the backbone's, and
a normal keras-hub preset is written from it) through
`keras_prompt.models.prompted_t5.PromptedT5` with segment ids: encoder tokens
attend within their segment, decoder tokens causally within theirs, and
cross-attention only to their own example's encoder segment.
"""

from __future__ import annotations

import keras
import keras_hub
from keras import ops

from keras_prompt.models.prompted_t5 import PromptedT5

INPUT_NAMES: tuple[str, ...] = (
    "encoder_token_ids",
    "encoder_segment_ids",
    "decoder_token_ids",
    "decoder_segment_ids",
)


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
        self._t5 = PromptedT5(backbone)

    def call(self, inputs, training=None):
        missing = [name for name in INPUT_NAMES if name not in inputs]
        if missing:
            raise ValueError(
                f"T5Pretrainer inputs lack {missing}; expected {INPUT_NAMES}."
            )
        encoder_segments = inputs["encoder_segment_ids"]
        encoded = self.encode(
            inputs["encoder_token_ids"], encoder_segments, training=training
        )
        hidden = self._t5.decode(
            inputs["decoder_token_ids"],
            None,
            encoded,
            encoder_segments,
            segment_ids=inputs["decoder_segment_ids"],
            training=training,
        )
        return ops.cast(self._t5.logits(hidden), "float32")

    def encode(self, token_ids, segment_ids, training=None):
        """Encoder outputs ``(batch, length, hidden)``; attention within segments."""
        return self._t5.encode(token_ids, segment_ids=segment_ids, training=training)[0]

    def compile(self, optimizer="adamw", **kwargs):
        """Token cross-entropy averaged over real target tokens."""
        kwargs.setdefault(
            "loss",
            keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, reduction="mean_with_sample_weight"
            ),
        )
        super().compile(optimizer=optimizer, **kwargs)
