"""T5's RMS layer norm with a closed-form gradient (same forward, same results).

Why: keras-hub's `T5LayerNorm` computes `w * x * r` with
`r = rsqrt(mean(x^2) + eps)`, and TensorFlow's autodiff of it splits the
input's gradient into two branches (through `x` directly and through the
mean), each several full passes over the activations plus a tile of the mean's
gradient, then sums them with the residual stream's gradient. Every encoder
layer has two of these norms, and prompt tuning backpropagates through all of
them to reach the prompt. The closed form

    n = x * r,   s = g * w,   dx = r * (s - n * mean(s * n, axis=-1))

gives the same gradient in one branch. The forward pass is keras-hub's ops in
keras-hub's order and dtype, so outputs are bit-identical; the weight's
gradient (`sum(g * n)` over all but the last axis) is returned for model
tuning and pruned from the graph when the weight is frozen. Timings:
docs/benchmarks.md ("Speed kernels").
"""

from __future__ import annotations

import tensorflow as tf

from keras_prompt import compat

T5LayerNorm = compat.t5_layer_classes()[0]


def rms_norm(inputs, weight, epsilon: float) -> tf.Tensor:
    """`weight * inputs * rsqrt(mean(inputs**2, -1) + epsilon)`, one-branch gradient.

    `weight` has the size of `inputs`' last axis and the dtype of `inputs`.
    """

    @tf.custom_gradient
    def normalize(inputs, weight):
        variance = tf.reduce_mean(tf.square(inputs), axis=-1, keepdims=True)
        inverse_rms = tf.math.rsqrt(variance + epsilon)
        normalized = inputs * inverse_rms

        def gradient(upstream):
            scaled = upstream * weight
            projection = tf.reduce_mean(scaled * normalized, axis=-1, keepdims=True)
            inputs_gradient = (scaled - normalized * projection) * inverse_rms
            width = tf.shape(normalized)[-1]
            weight_gradient = tf.reduce_sum(
                tf.reshape(upstream * normalized, (-1, width)), axis=0
            )
            return inputs_gradient, weight_gradient

        return weight * normalized, gradient

    return normalize(inputs, weight)


class FastT5LayerNorm(T5LayerNorm):
    """keras-hub's `T5LayerNorm` computed by `rms_norm` (weights, config kept)."""

    def call(self, hidden_states):
        hidden_states = tf.convert_to_tensor(hidden_states)
        weight = tf.cast(self.weight, hidden_states.dtype)
        return rms_norm(hidden_states, weight, self.epsilon)


# Weights saved with and without the switch load into each other.
compat.keep_class_name(FastT5LayerNorm, T5LayerNorm)
