"""The prompted T5 forward pass: one implementation for every caller.

`PromptedT5` runs the layers of a keras-hub `T5Backbone` with an optional
`SoftPrompt` in front of the encoder: encode (per-example prompts, padding
masks, or segment ids for packed rows), decode (teacher-forced, or one step
at a time with key/value caches), project to logits, score candidate
targets and greedily or otherwise sample. It owns no weights: the backbone
and the prompt stay where they are tracked (the Keras model), so weight
files and presets are unchanged.

Its users: `PromptTunedT5` (training graph, rank classification,
generation), `T5Pretrainer` (packed rows), the keras-hub < 0.32
`T5Seq2SeqLM` backport, and the serving export through `PromptTunedT5`'s
public methods.

Masks. With `padding_mask`, attention masks are `mask[:, None, :]`
(keras-hub's convention) and the prompt's positions are always attended to.
With `segment_ids` (0 = padding), tokens attend within their own segment and
decoder tokens only to their own example's encoder segment; T5's relative
position bias depends on position differences only, so packed examples see
the biases they would see alone.

Example:

```python
import keras_hub, numpy as np
from keras_prompt.models.prompted_t5 import PromptedT5
backbone = keras_hub.models.T5Backbone(
    vocabulary_size=100, num_layers=1, num_heads=2, hidden_dim=8,
    intermediate_dim=16, dropout=0.0,
)
t5 = PromptedT5(backbone)
ids, mask = np.array([[5, 6, 1]]), np.ones((1, 3), "int32")
encoded, encoder_mask = t5.encode(ids, mask)
hidden = t5.decode(np.array([[0, 7]]), np.ones((1, 2), "int32"), encoded,
                   encoder_mask)
t5.logits(hidden).shape  # (1, 2, 100)
```
"""

from __future__ import annotations

from keras import ops

from keras_prompt import compat


def same_segment(query_segments, key_segments):
    """`(batch, q, k)` bool: the key is in the query's (non-padding) segment."""
    same = ops.equal(query_segments[:, :, None], key_segments[:, None, :])
    return ops.logical_and(same, ops.greater(key_segments, 0)[:, None, :])


def _run_layers(layers, x, training, **masks):
    """A stack of T5 transformer layers; the first one's position bias is reused."""
    position_bias = None
    for layer in layers:
        x, position_bias = layer(
            x, position_bias=position_bias, training=training, **masks
        )
    return x


def _drop_unused_columns(token_ids, padding_mask):
    """`token_ids` and `padding_mask` cut after the last column any row uses.

    Exact for T5: padded key positions are masked out of every attention.
    """
    used = ops.any(ops.cast(padding_mask, "bool"), axis=0)
    length = ops.maximum(
        ops.max(ops.where(used, ops.arange(1, ops.shape(used)[0] + 1), 0)), 1
    )
    return token_ids[:, :length], padding_mask[:, :length]


def _any_equal(inputs, values, padding_mask):
    """Where `inputs` equals any of `values`, within `padding_mask`."""
    found = ops.equal(inputs, values[0])
    for value in values[1:]:
        found = ops.logical_or(found, ops.equal(inputs, value))
    return ops.logical_and(found, padding_mask)


class PromptedT5:
    """A T5 backbone's forward pass with an optional soft prompt.

    Args:
        backbone: a `keras_hub.models.T5Backbone`.
        soft_prompt: a `keras_prompt.layers.SoftPrompt`, or `None` for
            keras-hub's plain T5.
    """

    def __init__(self, backbone, soft_prompt=None):
        self.backbone = backbone
        self.soft_prompt = soft_prompt

    @property
    def prompt_length(self) -> int:
        return 0 if self.soft_prompt is None else self.soft_prompt.length

    # -- teacher-forced pass --------------------------------------------
    def encode(
        self,
        token_ids,
        padding_mask=None,
        *,
        segment_ids=None,
        prompts=None,
        training=None,
    ):
        """Encoder outputs and the mask `decode` takes with them.

        Args:
            token_ids: `(batch, length)` int ids.
            padding_mask: `(batch, length)`, 1 on real tokens. The prompt's
                positions are prepended: the outputs and the returned mask
                span `prompt_length + length` positions.
            segment_ids: instead of `padding_mask`, packed rows' segment ids
                (no prompt); they are returned as the mask.
            prompts: optional `(batch, prompt_length, hidden_dim)`
                per-example prompts replacing the model's own.
            training: passed to the dropout layers (`None`: Keras' context).

        Returns:
            `(outputs, mask)`.
        """
        backbone = self.backbone
        x = backbone.token_embedding(token_ids)
        if segment_ids is not None:
            if self.soft_prompt is not None or prompts is not None:
                raise ValueError("Packed rows (`segment_ids`) take no prompt.")
            mask, attention_mask = segment_ids, same_segment(segment_ids, segment_ids)
        else:
            if self.soft_prompt is not None:
                x, padding_mask = self.soft_prompt(x, padding_mask, prompts=prompts)
            elif prompts is not None:
                raise ValueError(
                    "`prompts` was given but this model has no prompt "
                    "(tune='model', prompt_length=0)."
                )
            mask, attention_mask = padding_mask, padding_mask[:, None, :]
        x = backbone.encoder_embedding_dropout(x, training=training)
        layers = backbone.encoder_transformer_layers
        x = _run_layers(layers, x, training, attention_mask=attention_mask)
        x = backbone.encoder_layer_norm(x)
        return backbone.encoder_dropout(x, training=training), mask

    def decode(
        self,
        token_ids,
        padding_mask,
        encoder_outputs,
        encoder_mask,
        *,
        segment_ids=None,
        training=None,
    ):
        """Decoder hidden states `(batch, length, hidden_dim)`, causally masked.

        `encoder_mask` is what `encode` returned. Give the decoder's
        `padding_mask`, or (`padding_mask=None`) its `segment_ids` when the
        encoder's were segment ids too.
        """
        if segment_ids is not None:
            self_mask = same_segment(segment_ids, segment_ids)
            cross_mask = same_segment(segment_ids, encoder_mask)
        else:
            self_mask = padding_mask[:, None, :]
            cross_mask = encoder_mask[:, None, :]
        backbone = self.backbone
        x = backbone.token_embedding(token_ids)
        x = backbone.decoder_embedding_dropout(x, training=training)
        x = _run_layers(
            backbone.decoder_transformer_layers,
            x,
            training,
            attention_mask=self_mask,
            encoder_hidden_states=encoder_outputs,
            encoder_attention_mask=cross_mask,
            use_causal_mask=True,
        )
        x = backbone.decoder_layer_norm(x)
        return backbone.decoder_dropout(x, training=training)

    def logits(self, hidden_states):
        """Vocabulary logits; T5 1.0 (tied embeddings) rescales first."""
        backbone = self.backbone
        if backbone.tie_embedding_weights:
            hidden_states = ops.multiply(
                hidden_states, ops.cast(backbone.hidden_dim**-0.5, hidden_states.dtype)
            )
        return backbone.token_embedding(hidden_states, reverse=True)

    def score(self, encoder_outputs, encoder_mask, target_ids, target_mask):
        """Summed target log-probabilities `(batch, candidates)`, in float32.

        `target_ids` is `(batch, candidates, length + 1)`: a `<pad>` start,
        the candidate's tokens and `</s>`. Each example's encoder outputs
        are shared by its candidates (rank classification).
        """
        num_candidates = ops.shape(target_ids)[1]
        length = ops.shape(target_ids)[2]
        flat_ids = ops.reshape(target_ids, (-1, length))
        flat_mask = ops.reshape(target_mask, (-1, length))
        encoded = ops.repeat(encoder_outputs, num_candidates, axis=0)
        mask = ops.repeat(encoder_mask, num_candidates, axis=0)
        hidden = self.decode(flat_ids[:, :-1], flat_mask[:, :-1], encoded, mask)
        log_probs = ops.log_softmax(ops.cast(self.logits(hidden), "float32"), -1)
        token_scores = ops.take_along_axis(
            log_probs, ops.expand_dims(flat_ids[:, 1:], -1), axis=-1
        )[..., 0]
        totals = ops.sum(token_scores * ops.cast(flat_mask[:, 1:], "float32"), -1)
        return ops.reshape(totals, (-1, num_candidates))

    # -- decoding with caches -------------------------------------------
    def initial_cache(self, batch_size, encoder_length, decoder_length, dtype):
        """Empty `(self_attention_cache, cross_attention_cache)` for decoding.

        keras-hub >= 0.32: per-layer key/value caches (its `T5Seq2SeqLM`'s
        layout). Older keras-hub T5 layers have no cache: the first is then
        the `(batch, decoder_length)` buffer of decoded token ids, the second
        an unused placeholder (see `decode_with_cache`).
        """
        backbone = self.backbone
        if not compat.t5_layers_have_cache():
            return (
                ops.zeros([batch_size, decoder_length], dtype="int32"),
                ops.zeros([batch_size, 0], dtype=dtype),
            )
        head_dim = backbone.key_value_dim or backbone.hidden_dim // backbone.num_heads
        shape = [batch_size, backbone.num_layers, 2, decoder_length]
        shape += [backbone.num_heads, head_dim]
        cross_shape = [*shape[:3], encoder_length, *shape[4:]]
        return ops.zeros(shape, dtype=dtype), ops.zeros(cross_shape, dtype=dtype)

    def decode_with_cache(
        self,
        token_ids,
        encoder_outputs,
        encoder_mask,
        self_attention_cache,
        self_attention_cache_update_index,
        cross_attention_cache,
        cross_attention_cache_update_index,
    ):
        """keras-hub's `T5Seq2SeqLM.call_decoder_with_cache` over `encode`'s mask.

        Returns `(logits, hidden_states, self_attention_cache,
        cross_attention_cache)`. On keras-hub < 0.32 the "self-attention
        cache" is the token buffer: the new tokens are written at the index
        and the decoder re-runs over the whole buffer under the causal mask,
        which gives the cached computation's outputs at O(length^2) cost.
        """
        if not compat.t5_layers_have_cache():
            buffer = (self_attention_cache, self_attention_cache_update_index)
            return self._recompute_step(
                token_ids, encoder_outputs, encoder_mask, *buffer, cross_attention_cache
            )
        backbone = self.backbone
        x = backbone.token_embedding(token_ids)
        x = backbone.decoder_embedding_dropout(x)
        self_caches, cross_caches = [], []
        position_bias = None
        for i, layer in enumerate(backbone.decoder_transformer_layers):
            x, position_bias, self_cache, cross_cache = layer(
                x,
                position_bias=position_bias,
                encoder_hidden_states=encoder_outputs,
                encoder_attention_mask=encoder_mask[:, None, :],
                use_causal_mask=True,
                self_attention_cache=self_attention_cache[:, i, ...],
                self_attention_cache_update_index=self_attention_cache_update_index,
                cross_attention_cache=cross_attention_cache[:, i, ...],
                cross_attention_cache_update_index=cross_attention_cache_update_index,
            )
            self_caches.append(self_cache)
            cross_caches.append(cross_cache)
        if self_attention_cache_update_index is not None:
            self_attention_cache = ops.stack(self_caches, axis=1)
        if cross_attention_cache_update_index is not None:
            cross_attention_cache = ops.stack(cross_caches, axis=1)
        x = backbone.decoder_layer_norm(x)
        hidden_states = backbone.decoder_dropout(x)
        logits = self.logits(hidden_states)
        return logits, hidden_states, self_attention_cache, cross_attention_cache

    def _recompute_step(
        self, token_ids, encoder_outputs, encoder_mask, tokens, index, cross_cache
    ):
        if index is None:
            raise ValueError(
                "Decoding without keras-hub's caches (keras-hub < 0.32) needs "
                "`self_attention_cache_update_index` on every call."
            )
        tokens = ops.slice_update(tokens, [0, index], ops.cast(token_ids, tokens.dtype))
        padding_mask = ops.ones_like(tokens, dtype="bool")
        x = self.decode(tokens, padding_mask, encoder_outputs, encoder_mask)
        batch_size = ops.shape(x)[0]
        length = ops.shape(token_ids)[1]
        hidden_states = ops.slice(
            x, [0, index, 0], [batch_size, length, self.backbone.hidden_dim]
        )
        return self.logits(hidden_states), hidden_states, tokens, cross_cache

    def generate(self, inputs, sampler, *, stop_token_ids=None, model=None, dtype):
        """keras-hub 0.32's `T5Seq2SeqLM.generate_step` over this forward pass.

        `inputs` is the seq2seq dict; the prompt is prepended to the encoder
        input. `sampler` is a `keras_hub.samplers.Sampler`, `model` what it
        is handed, `dtype` the caches' dtype.
        """
        encoder_ids = inputs["encoder_token_ids"]
        encoder_padding_mask = inputs["encoder_padding_mask"]
        if not getattr(model, "jit_compile", False):
            # keras-hub's preprocessing pads every input to the full sequence
            # length; the columns no row uses cost encoder and cross-attention
            # work at every step. XLA needs the static shape, so it keeps them.
            encoder_ids, encoder_padding_mask = _drop_unused_columns(
                encoder_ids, encoder_padding_mask
            )
        decoder_ids = inputs["decoder_token_ids"]
        decoder_mask = inputs["decoder_padding_mask"]
        encoded, encoder_mask = self.encode(encoder_ids, encoder_padding_mask)
        self_cache, cross_cache = self.initial_cache(
            ops.shape(encoder_ids)[0],
            ops.shape(encoder_mask)[1],
            ops.shape(decoder_ids)[1],
            dtype,
        )
        _, hidden_states, self_cache, cross_cache = self.decode_with_cache(
            decoder_ids, encoded, encoder_mask, self_cache, 0, cross_cache, 0
        )
        # Start at the first index that has no given token.
        index = ops.min(ops.sum(ops.cast(decoder_mask, "int32"), axis=-1))

        def next(prompt, cache, index):
            # The encoder tensors ride along in `cache` (keras-hub's layout),
            # so the loop body closes over nothing but its own variables.
            cache_index = index - 1
            prompt = ops.slice(prompt, [0, cache_index], [ops.shape(prompt)[0], 1])
            self_cache, encoded, encoder_mask, cross_cache = cache
            logits, hidden_states, self_cache, _ = self.decode_with_cache(
                prompt,
                encoded,
                encoder_mask,
                self_cache,
                cache_index,
                cross_cache,
                None,
            )
            return (
                ops.squeeze(logits, axis=1),
                ops.squeeze(hidden_states, axis=1),
                (self_cache, encoded, encoder_mask, cross_cache),
            )

        decoder_ids = sampler(
            next=next,
            prompt=decoder_ids,
            cache=(self_cache, encoded, encoder_mask, cross_cache),
            index=index,
            mask=decoder_mask,
            stop_token_ids=stop_token_ids,
            hidden_states=hidden_states,
            model=model,
        )
        if stop_token_ids is None:
            decoder_mask = ops.ones_like(decoder_ids, dtype="bool")
        else:
            # Mask everything after the first stop token of each row.
            given = ops.logical_not(decoder_mask)
            ends = ops.cast(_any_equal(decoder_ids, stop_token_ids, given), "int32")
            overflow = ops.cast(ops.cumsum(ends, axis=-1), "int32") - ends
            decoder_mask = ops.logical_not(ops.cast(overflow, "bool"))
        return {"decoder_token_ids": decoder_ids, "decoder_padding_mask": decoder_mask}
