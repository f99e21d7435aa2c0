"""T5 attention computed in cheaper orders and layouts (same weights and results).

Two layer classes replace keras-hub's `T5MultiHeadAttention` on an existing
backbone (the `"attention"` kernel of `keras_prompt.layers.speed_kernels`);
only the uncached path (training, teacher-forced scoring) changes.

## Cross-attention for short decoder inputs

Why: prompt tuning trains on verbalizers ("positive", "not_equivalent"): 2-5
decoder positions against 50-500 encoder positions. keras-hub's T5
cross-attention projects *every encoder position* to keys and values in
*every decoder layer* (`K = E Wk`, `V = E Wv`), and backpropagates through
those projections to reach the prompt. For t5-small at batch 32 with 148
encoder and 4 decoder positions that is 60 of the step's ~460 GFLOP, for 4
query positions.

Matrix products associate, so per head `h`

    scores_h = (Q_h Wk_h^T) E^T        instead of  Q_h (E Wk_h)^T
    output_h = (P_h E) Wv_h            instead of  P_h (E Wv_h)

which costs `O(T * heads * S * hidden)` instead of `O(S * hidden * inner)`:
about 10x fewer FLOPs (forward and backward) at T = 4, with the same result up
to float rounding. It loses once the decoder is long; `reassociation_pays`
compares the two FLOP counts (break-even near 48 decoder positions for
t5-small/base), and the choice is made per batch (statically when the shape is
known, with a `cond` otherwise).

Only the uncached, bias-free case changes (training, teacher-forced scoring);
cached generation and everything else call keras-hub's own code. TensorFlow
backend only (the products use `tf.linalg.matmul`'s adjoint flags, so neither
direction materializes a transpose).

## Self-attention with one QKV projection

keras-hub projects queries, keys and values with three `(hidden, inner)`
matmuls and forms the attention products with `einsum`s whose gradients
transpose their operands. `FusedSelfAttention` multiplies by the three kernels
concatenated (one `(hidden, 3 inner)` matmul, which oneDNN runs closer to its
peak than three narrow ones) and forms the products as head-major batched
matmuls with adjoint flags. Timings: docs/benchmarks.md ("Speed kernels").
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from keras_prompt import compat

T5MultiHeadAttention = compat.t5_layer_classes()[1]


def reassociation_pays(
    query_length, num_heads: int, hidden_dim: int, inner_dim: int, key_value_dim: int
):
    """True when the reassociated order needs fewer FLOPs (forward + backward).

    Per encoder position and example: reassociated ~ `12 T H d`; standard ~
    `8 d inner + 12 T H dk` (the key/value projections and their backward,
    plus the attention products).
    """
    reassociated = 12 * query_length * num_heads * hidden_dim
    standard = (
        8 * hidden_dim * inner_dim + 12 * query_length * num_heads * key_value_dim
    )
    return reassociated < standard


def _plain_projection(layer: keras.layers.Dense) -> bool:
    # Unbuilt (first call builds through keras-hub's path), biased or
    # quantized projections keep keras-hub's order.
    return (
        layer.built
        and not layer.use_bias
        and getattr(layer, "quantization_mode", None) is None
    )


def _plain_projections(attention: T5MultiHeadAttention) -> bool:
    return all(
        _plain_projection(p)
        for p in (
            attention.query_projector,
            attention.key_projector,
            attention.value_projector,
            attention.output_projector,
        )
    )


class ShortQueryCrossAttention(T5MultiHeadAttention):
    """keras-hub's `T5MultiHeadAttention`, reassociated for short queries.

    Used as the class of a decoder's cross-attention layers (the
    `"attention"` speed kernel); weights, config and the cached path are
    keras-hub's.
    """

    def call(
        self,
        hidden_states,
        mask=None,
        key_value_states=None,
        position_bias=None,
        cache=None,
        cache_update_index=None,
        training=False,
    ):
        eligible = (
            key_value_states is not None
            and cache is None
            and cache_update_index is None
            and position_bias is None
            and not self.use_relative_attention_bias
            # One mask row per example (the decoder's encoder padding mask).
            and (mask is None or (len(mask.shape) == 3 and mask.shape[1] == 1))
            and _plain_projections(self)
        )

        def standard():
            return super(ShortQueryCrossAttention, self).call(
                hidden_states,
                mask=mask,
                key_value_states=key_value_states,
                training=training,
            )[0]

        if not eligible:
            return super().call(
                hidden_states,
                mask=mask,
                key_value_states=key_value_states,
                position_bias=position_bias,
                cache=cache,
                cache_update_index=cache_update_index,
                training=training,
            )

        def reassociated():
            return self._reassociated(hidden_states, key_value_states, mask, training)

        pays = reassociation_pays(
            hidden_states.shape[1]
            if hidden_states.shape[1] is not None
            else ops.shape(hidden_states)[1],
            self.num_heads,
            self.hidden_dim,
            self.inner_dim,
            self.key_value_dim,
        )
        if isinstance(pays, bool):
            output = reassociated() if pays else standard()
        else:
            output = ops.cond(pays, reassociated, standard)
        # The decoder layer discards a cross-attention's bias and cache.
        return output, None, None

    def _reassociated(self, hidden_states, key_value_states, mask, training):
        dtype = self.compute_dtype
        batch_size = ops.shape(hidden_states)[0]
        heads, head_dim = self.num_heads, self.key_value_dim
        queries = ops.reshape(
            self.query_projector(hidden_states), (batch_size, -1, heads, head_dim)
        )
        key_kernel = ops.reshape(
            ops.cast(self.key_projector.kernel, dtype), (-1, heads, head_dim)
        )
        value_kernel = ops.reshape(
            ops.cast(self.value_projector.kernel, dtype), (-1, heads, head_dim)
        )
        keys = ops.cast(key_value_states, dtype)  # (batch, source, hidden)
        # (Q_h Wk_h^T): each head's query mapped back to the hidden space,
        # heads and query positions flattened into one (batch, N*T, hidden)
        # matrix so the two large products are plain batched matmuls whose
        # gradients use adjoint flags instead of transposes.
        queries = ops.einsum("bqnh,dnh->bnqd", queries, key_kernel)
        queries = ops.reshape(queries, (batch_size, -1, ops.shape(keys)[-1]))
        scores = tf.linalg.matmul(queries, keys, transpose_b=True)
        if mask is not None:  # (batch, 1, source): 1 where attending is allowed
            mask = ops.cast(mask, dtype)
            scores = scores + (1.0 - mask) * ops.cast(-1e9, dtype)
        weights = ops.nn.softmax(scores, axis=-1)
        weights = self.dropout_layer(weights, training=training)
        mixed = tf.linalg.matmul(weights, keys)  # (P_h E)
        mixed = ops.reshape(mixed, (batch_size, heads, -1, ops.shape(keys)[-1]))
        outputs = ops.einsum("bnqd,dnh->bqnh", mixed, value_kernel)
        outputs = ops.reshape(outputs, (batch_size, -1, self.inner_dim))
        return self.output_projector(outputs)


class FusedSelfAttention(T5MultiHeadAttention):
    """keras-hub's `T5MultiHeadAttention` with one fused QKV projection.

    Used as the class of a backbone's self-attention layers (the
    `"attention"` speed kernel); weights, config, the relative position bias
    and the cached (generation) path are keras-hub's.
    """

    def call(
        self,
        hidden_states,
        mask=None,
        key_value_states=None,
        position_bias=None,
        cache=None,
        cache_update_index=None,
        training=False,
    ):
        eligible = (
            key_value_states is None
            and cache is None
            and cache_update_index is None
            and _plain_projections(self)
        )
        if not eligible:
            return super().call(
                hidden_states,
                mask=mask,
                key_value_states=key_value_states,
                position_bias=position_bias,
                cache=cache,
                cache_update_index=cache_update_index,
                training=training,
            )
        dtype = self.compute_dtype
        batch_size, length = ops.shape(hidden_states)[0], ops.shape(hidden_states)[1]
        heads, head_dim = self.num_heads, self.key_value_dim
        projectors = (self.query_projector, self.key_projector, self.value_projector)
        kernel = ops.concatenate([ops.cast(p.kernel, dtype) for p in projectors], -1)
        qkv = ops.matmul(ops.cast(hidden_states, dtype), kernel)

        def head_major(states):  # (batch, heads, length, head_dim)
            states = ops.reshape(states, (batch_size, length, heads, head_dim))
            return ops.transpose(states, (0, 2, 1, 3))

        # A split's gradient is a concatenation (slicing's would add zeros).
        queries, keys, values = map(head_major, ops.split(qkv, 3, axis=-1))
        scores = tf.linalg.matmul(queries, keys, transpose_b=True)

        # The position bias (and the mask folded into it) exactly as keras-hub
        # builds it, so later layers reuse the same tensor.
        if position_bias is None:
            if not self.use_relative_attention_bias:
                position_bias = ops.zeros((1, heads, length, length), dtype)
            else:
                position_bias = self.compute_bias(length, length)
            if mask is not None:
                mask = mask[:, None, :, :]
                mask = (1.0 - ops.cast(mask, position_bias.dtype)) * -1e9
                position_bias = position_bias + mask
        scores += ops.cast(position_bias, scores.dtype)
        weights = ops.nn.softmax(scores, axis=-1)
        weights = self.dropout_layer(weights, training=training)
        outputs = tf.linalg.matmul(weights, values)  # (batch, heads, length, dim)
        outputs = ops.reshape(
            ops.transpose(outputs, (0, 2, 1, 3)), (batch_size, length, self.inner_dim)
        )
        return self.output_projector(outputs), position_bias, None
