"""`T5Seq2SeqLM` and `T5Seq2SeqLMPreprocessor` for keras-hub releases without them.

keras-hub added both classes in 0.32, whose wheels need TensorFlow Text >= 2.20
(so TF >= 2.20) and Python >= 3.11. TFX 1.16, the TFX release that installs
here, needs TF 2.16 and Python 3.10, where keras-hub stops at 0.25. On such a
keras-hub these backports stand in, so `PromptTunedT5` (a `T5Seq2SeqLM`
subclass) trains, scores, generates and exports the same way on both stacks.
On keras-hub >= 0.32 this module only re-exports keras-hub's own classes.

What differs in the backport, and why:

* keras-hub < 0.32's T5 layers have no key/value cache. The backport keeps the
  `call_decoder_with_cache` / `_initialize_cache` interface (the serving
  exporter and `generate_step` drive it) but its "self-attention cache" is the
  buffer of decoder token ids: each step writes the new token(s) and re-runs
  the decoder over the whole buffer under the causal mask, which gives exactly
  the cached computation's outputs at O(length^2) cost. Decoding lengths here
  are a verbalizer's few tokens, so the cost is small; the cross-attention
  "cache" is an unused placeholder.
* The code of `_logits`, `call_encoder`, `_build_cache` and `generate_step` is
  keras-hub 0.32's (Apache-2.0), so generation matches it step for step.
"""

from __future__ import annotations

import keras
import keras_hub
from keras import ops

#: True when keras-hub ships `T5Seq2SeqLM` itself (keras-hub >= 0.32).
NATIVE_T5_SEQ2SEQ_LM = hasattr(keras_hub.models, "T5Seq2SeqLM")

if NATIVE_T5_SEQ2SEQ_LM:
    T5Seq2SeqLM = keras_hub.models.T5Seq2SeqLM
    T5Seq2SeqLMPreprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor
else:  # pragma: no cover - exercised on the TFX stack (tests/tfx).

    def any_equal(inputs, values, padding_mask):
        """Where `inputs` equals any of `values`, within `padding_mask`."""
        found = ops.equal(inputs, values[0])
        for value in values[1:]:
            found = ops.logical_or(found, ops.equal(inputs, value))
        return ops.logical_and(found, padding_mask)

    @keras.saving.register_keras_serializable(package="keras_prompt")
    class T5Seq2SeqLMPreprocessor(keras_hub.models.Seq2SeqLMPreprocessor):
        """keras-hub 0.32's T5 packing: `tokens </s>` / `<pad> tokens </s>`.

        T5 has no start token on the encoder side, and its decoder starts from
        `<pad>`; everything else (labels shifted left, sample weights from the
        padding mask) is `Seq2SeqLMPreprocessor`'s.
        """

        backbone_cls = keras_hub.models.T5Backbone
        tokenizer_cls = keras_hub.models.T5Tokenizer

        def build(self, input_shape):
            self.encoder_packer = keras_hub.layers.StartEndPacker(
                start_value=None,
                end_value=self.tokenizer.end_token_id,
                pad_value=self.tokenizer.pad_token_id,
                sequence_length=self.encoder_sequence_length,
                return_padding_mask=True,
            )
            self.decoder_packer = keras_hub.layers.StartEndPacker(
                start_value=self.tokenizer.pad_token_id,
                end_value=self.tokenizer.end_token_id,
                pad_value=self.tokenizer.pad_token_id,
                sequence_length=self.decoder_sequence_length,
                return_padding_mask=True,
            )
            self.built = True

    @keras.saving.register_keras_serializable(package="keras_prompt")
    class T5Seq2SeqLM(keras_hub.models.Seq2SeqLM):
        """keras-hub 0.32's `T5Seq2SeqLM` on keras-hub's older, cache-less layers.

        See the module docstring for the one behavioural difference (decoding
        recomputes the decoder over the token buffer instead of caching).
        """

        backbone_cls = keras_hub.models.T5Backbone
        preprocessor_cls = T5Seq2SeqLMPreprocessor

        def __init__(self, backbone, preprocessor=None, **kwargs):
            self.backbone = backbone
            self.preprocessor = preprocessor
            inputs = backbone.input
            hidden_states = backbone(inputs)["decoder_sequence_output"]
            outputs = self._logits(hidden_states)
            super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        def _logits(self, hidden_states):
            """Projects decoder states onto the vocabulary (T5's tied scaling)."""
            if self.backbone.tie_embedding_weights:
                hidden_states = ops.multiply(
                    hidden_states,
                    ops.cast(self.backbone.hidden_dim**-0.5, hidden_states.dtype),
                )
            return self.backbone.token_embedding(hidden_states, reverse=True)

        def call_encoder(self, token_ids, padding_mask):
            x = self.backbone.token_embedding(token_ids)
            x = self.backbone.encoder_embedding_dropout(x)
            attention_mask = padding_mask[:, None, :]
            position_bias = None
            for layer in self.backbone.encoder_transformer_layers:
                x, position_bias = layer(
                    x,
                    attention_mask=attention_mask,
                    position_bias=position_bias,
                    use_causal_mask=False,
                )
            x = self.backbone.encoder_layer_norm(x)
            return self.backbone.encoder_dropout(x)

        def call_decoder_with_cache(
            self,
            encoder_hidden_states,
            encoder_padding_mask,
            decoder_token_ids,
            self_attention_cache,
            self_attention_cache_update_index,
            cross_attention_cache,
            cross_attention_cache_update_index,
        ):
            """One decoding step; `self_attention_cache` is the token buffer.

            Writes `decoder_token_ids` into the `(batch, max_length)` int32
            buffer at `self_attention_cache_update_index`, decodes the whole
            buffer (causally masked, so later positions cannot leak into
            earlier ones) and returns the logits and states of the written
            positions, as keras-hub 0.32's cached version does.
            """
            index = self_attention_cache_update_index
            if index is None:
                raise ValueError(
                    "The keras-hub < 0.32 backport of T5Seq2SeqLM needs "
                    "`self_attention_cache_update_index` on every call."
                )
            tokens = ops.slice_update(
                self_attention_cache,
                [0, index],
                ops.cast(decoder_token_ids, self_attention_cache.dtype),
            )
            backbone = self.backbone
            x = backbone.token_embedding(tokens)
            x = backbone.decoder_embedding_dropout(x)
            attention_mask = ops.ones_like(tokens, dtype="bool")[:, None, :]
            encoder_attention_mask = encoder_padding_mask[:, None, :]
            position_bias = None
            for layer in backbone.decoder_transformer_layers:
                x, position_bias = layer(
                    x,
                    attention_mask=attention_mask,
                    position_bias=position_bias,
                    encoder_hidden_states=encoder_hidden_states,
                    encoder_attention_mask=encoder_attention_mask,
                    use_causal_mask=True,
                )
            x = backbone.decoder_layer_norm(x)
            x = backbone.decoder_dropout(x)
            batch_size = ops.shape(x)[0]
            length = ops.shape(decoder_token_ids)[1]
            hidden_states = ops.slice(
                x, [0, index, 0], [batch_size, length, backbone.hidden_dim]
            )
            logits = self._logits(hidden_states)
            return logits, hidden_states, tokens, cross_attention_cache

        def _initialize_cache(self, encoder_token_ids, decoder_token_ids):
            """`(token buffer, placeholder)`: see `call_decoder_with_cache`."""
            batch_size = ops.shape(encoder_token_ids)[0]
            decoder_max_length = ops.shape(decoder_token_ids)[1]
            self_attention_cache = ops.zeros(
                [batch_size, decoder_max_length], dtype="int32"
            )
            cross_attention_cache = ops.zeros([batch_size, 0], dtype=self.compute_dtype)
            return self_attention_cache, cross_attention_cache

        def _build_cache(
            self, encoder_token_ids, encoder_padding_mask, decoder_token_ids
        ):
            encoder_hidden_states = self.call_encoder(
                token_ids=encoder_token_ids, padding_mask=encoder_padding_mask
            )
            self_attention_cache, cross_attention_cache = self._initialize_cache(
                encoder_token_ids, decoder_token_ids
            )
            _, hidden_states, self_attention_cache, cross_attention_cache = (
                self.call_decoder_with_cache(
                    encoder_hidden_states=encoder_hidden_states,
                    encoder_padding_mask=encoder_padding_mask,
                    decoder_token_ids=decoder_token_ids,
                    self_attention_cache=self_attention_cache,
                    self_attention_cache_update_index=0,
                    cross_attention_cache=cross_attention_cache,
                    cross_attention_cache_update_index=0,
                )
            )
            return (
                hidden_states,
                encoder_hidden_states,
                self_attention_cache,
                cross_attention_cache,
            )

        def generate_step(self, inputs, stop_token_ids=None):
            """keras-hub 0.32's `T5Seq2SeqLM.generate_step`, unchanged."""
            encoder_token_ids = inputs["encoder_token_ids"]
            encoder_padding_mask = inputs["encoder_padding_mask"]
            decoder_token_ids = inputs["decoder_token_ids"]
            decoder_padding_mask = inputs["decoder_padding_mask"]
            (
                hidden_states,
                encoder_hidden_states,
                self_attention_cache,
                cross_attention_cache,
            ) = self._build_cache(
                encoder_token_ids, encoder_padding_mask, decoder_token_ids
            )
            row_lengths = ops.sum(ops.cast(decoder_padding_mask, "int32"), axis=-1)
            index = ops.min(row_lengths)

            def next(prompt, cache, index):
                cache_index = index - 1
                num_samples = ops.shape(prompt)[0]
                prompt = ops.slice(prompt, [0, cache_index], [num_samples, 1])
                (
                    self_attention_cache,
                    encoder_hidden_states,
                    encoder_padding_mask,
                    cross_attention_cache,
                ) = cache
                logits, hidden_states, self_attention_cache, _ = (
                    self.call_decoder_with_cache(
                        encoder_hidden_states=encoder_hidden_states,
                        encoder_padding_mask=encoder_padding_mask,
                        decoder_token_ids=prompt,
                        self_attention_cache=self_attention_cache,
                        self_attention_cache_update_index=cache_index,
                        cross_attention_cache=cross_attention_cache,
                        cross_attention_cache_update_index=None,
                    )
                )
                return (
                    ops.squeeze(logits, axis=1),
                    ops.squeeze(hidden_states, axis=1),
                    (
                        self_attention_cache,
                        encoder_hidden_states,
                        encoder_padding_mask,
                        cross_attention_cache,
                    ),
                )

            decoder_token_ids = self.sampler(
                next=next,
                prompt=decoder_token_ids,
                cache=(
                    self_attention_cache,
                    encoder_hidden_states,
                    encoder_padding_mask,
                    cross_attention_cache,
                ),
                index=index,
                mask=decoder_padding_mask,
                stop_token_ids=stop_token_ids,
                hidden_states=hidden_states,
                model=self,
            )
            if stop_token_ids is not None:
                end_locations = any_equal(
                    decoder_token_ids,
                    stop_token_ids,
                    ops.logical_not(decoder_padding_mask),
                )
                end_locations = ops.cast(end_locations, "int32")
                cumsum = ops.cast(ops.cumsum(end_locations, axis=-1), "int32")
                overflow = cumsum - end_locations
                decoder_padding_mask = ops.logical_not(ops.cast(overflow, "bool"))
            else:
                decoder_padding_mask = ops.ones_like(decoder_token_ids, dtype="bool")
            return {
                "decoder_token_ids": decoder_token_ids,
                "decoder_padding_mask": decoder_padding_mask,
            }


__all__ = ["NATIVE_T5_SEQ2SEQ_LM", "T5Seq2SeqLM", "T5Seq2SeqLMPreprocessor"]
