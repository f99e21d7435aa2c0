"""`T5Seq2SeqLM` and `T5Seq2SeqLMPreprocessor` for keras-hub releases without them.

keras-hub added both classes in 0.32, whose wheels need TensorFlow Text >= 2.20
(so TF >= 2.20) and Python >= 3.11. TFX 1.16, the TFX release that installs
here, needs TF 2.16 and Python 3.10, where keras-hub stops at 0.25. On such a
keras-hub these backports stand in, so `PromptTunedT5` (a `T5Seq2SeqLM`
subclass) trains, scores, generates and exports the same way on both stacks.
On keras-hub >= 0.32 this module only re-exports keras-hub's own classes.

What differs in the backport, and why:

* keras-hub < 0.32's T5 layers have no key/value cache. The backport keeps the
  `call_decoder_with_cache` interface but its "self-attention cache" is the
  buffer of decoder token ids: each step writes the new token(s) and re-runs
  the decoder over the whole buffer under the causal mask, which gives exactly
  the cached computation's outputs at O(length^2) cost. Decoding lengths here
  are a verbalizer's few tokens, so the cost is small; the cross-attention
  "cache" is an unused placeholder.
* Encoding, decoding and `generate_step` are
  `keras_prompt.models.prompted_t5.PromptedT5`'s, which follows keras-hub
  0.32's code (Apache-2.0), so generation matches it step for step.
"""

from __future__ import annotations

import keras
import keras_hub

from keras_prompt.models.prompted_t5 import PromptedT5

#: True when keras-hub ships `T5Seq2SeqLM` itself (keras-hub >= 0.32).
NATIVE_T5_SEQ2SEQ_LM = hasattr(keras_hub.models, "T5Seq2SeqLM")

if NATIVE_T5_SEQ2SEQ_LM:
    T5Seq2SeqLM = keras_hub.models.T5Seq2SeqLM
    T5Seq2SeqLMPreprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor
else:  # pragma: no cover - exercised on the TFX stack (tests/tfx).

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

        Encoding, decoding and generation are
        `keras_prompt.models.prompted_t5.PromptedT5`'s (without a prompt),
        which decodes by recomputation on these layers (see the module
        docstring).
        """

        backbone_cls = keras_hub.models.T5Backbone
        preprocessor_cls = T5Seq2SeqLMPreprocessor

        def __init__(self, backbone, preprocessor=None, **kwargs):
            self.backbone = backbone
            self.preprocessor = preprocessor
            self._t5 = PromptedT5(backbone)
            inputs = backbone.input
            hidden_states = backbone(inputs)["decoder_sequence_output"]
            outputs = self._t5.logits(hidden_states)
            super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        def call_encoder(self, token_ids, padding_mask):
            return self._t5.encode(token_ids, padding_mask)[0]

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
            """One decoding step; `self_attention_cache` is the token buffer."""
            return self._t5.decode_with_cache(
                decoder_token_ids,
                encoder_hidden_states,
                encoder_padding_mask,
                self_attention_cache,
                self_attention_cache_update_index,
                cross_attention_cache,
                cross_attention_cache_update_index,
            )

        def generate_step(self, inputs, stop_token_ids=None):
            """keras-hub 0.32's `T5Seq2SeqLM.generate_step`."""
            return self._t5.generate(
                inputs,
                self.sampler,
                stop_token_ids=stop_token_ids,
                model=self,
                dtype=self.compute_dtype,
            )


__all__ = ["NATIVE_T5_SEQ2SEQ_LM", "T5Seq2SeqLM", "T5Seq2SeqLMPreprocessor"]
