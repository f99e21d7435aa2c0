"""Dropout whose random mask costs a fraction of `tf.nn.stateless_dropout`'s.

Why this exists: with a `mixed_bfloat16` policy, Keras' TensorFlow dropout
(`tf.nn.experimental.stateless_dropout`) draws one *bfloat16* uniform number
per element, and TensorFlow's bfloat16 Philox/uniform kernel is slow on CPU;
in a prompt-tuning step the backbone's dropout layers draw over a hundred
million numbers, and profiles showed them costing more than the encoder's
matmuls (docs/benchmarks.md, "Speed kernels").

`fast_dropout` draws raw Philox bits instead (`StatelessRandomUniformFullInt`,
no float conversion), splits each 32-bit word into four 8-bit uniforms, and
compares them with an integer threshold: a quarter of the Philox work of one
uint32 per element, an eighth of the float path's, and no bfloat16 arithmetic
on the random numbers. The keep mask becomes a `{0, scale}` tensor in the input
dtype, so the forward pass is one multiply and so is its gradient.

## Exact rate from 8-bit uniforms

An 8-bit threshold `k` drops with probability `k / 256`, and most rates (0.1
is 25.6 / 256) fall between two thresholds. Each call therefore draws one more
Philox word and uses `k = floor(256 rate) + 1` with probability
`frac(256 rate)`, else `floor(256 rate)`, and scales kept entries by
`256 / (256 - k)`:

- every element is dropped with probability exactly `rate` (to 2^-32),
  independently of the other elements of its call given `k`;
- every call is unbiased, `E[output] = inputs`, whichever `k` it drew;
- what differs from per-element Bernoulli(`rate`): all elements of one call
  share `k`, so a call drops 25/256 or 26/256 of its entries on average
  (9.77% or 10.16% at rate 0.1) rather than 10%. Across a training run the
  rate is exact; the per-call wobble is the same size as the gap between any
  fixed-point rate and 0.1, and far below the noise dropout itself injects.

That shared threshold is the one way in which these statistics differ from
Keras' per-element Bernoulli dropout, which is why the `"dropout"` speed
kernel is only on by default where it was measured to pay (see
`keras_prompt.layers.speed_kernels`). Rates above 255/256 keep Keras' dropout.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

_LEVELS = 256  # one byte of Philox output per element
_BYTES_PER_WORD = 4


def _as_stateless_seed(seed) -> tf.Tensor:
    """A `(2,)` int32 seed, as Keras' TensorFlow backend derives it."""
    seed = tf.convert_to_tensor(seed)
    if seed.dtype != tf.int32:
        seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
    return seed


def _threshold(rate: float, word: tf.Tensor) -> tf.Tensor:
    """`floor(256 rate)`, plus one with probability `frac(256 rate)` (an int32).

    `word` is a uniform uint32 scalar; the comparison is made in int64.
    """
    levels = rate * _LEVELS
    low = math.floor(levels)
    cutoff = min(round((levels - low) * 2**32), 2**32 - 1)
    if cutoff == 0:
        return tf.constant(low, tf.int32)
    bump = tf.cast(tf.cast(word, tf.int64) < cutoff, tf.int32)
    return low + bump


def keep_mask(shape, rate: float, seed, dtype) -> tf.Tensor:
    """`{0, scale}` mask of `shape`: each entry dropped with probability `rate`.

    Four 8-bit uniforms come from every 32-bit Philox word; an entry is kept
    when its uniform is >= the call's threshold `k` (see the module
    docstring), and a kept entry is `256 / (256 - k)`. Needs
    `0 < rate <= 255 / 256`.
    """
    if not 0.0 < rate <= (_LEVELS - 1) / _LEVELS:
        raise ValueError(
            f"`rate` must be in (0, {_LEVELS - 1}/{_LEVELS}] for 8-bit masks; "
            f"got {rate!r}."
        )
    shape = tf.convert_to_tensor(shape, tf.int32)
    size = tf.reduce_prod(shape)
    words = tf.random.stateless_uniform(
        [(size + _BYTES_PER_WORD - 1) // _BYTES_PER_WORD + 1],
        seed=_as_stateless_seed(seed),
        minval=None,
        maxval=None,
        dtype=tf.uint32,
    )
    threshold = _threshold(rate, words[-1])
    # Prefix slices share the buffer (no copy) whenever `size` is a multiple
    # of 4; bitcast to uint8 gives [words, 4].
    uniforms = tf.reshape(tf.bitcast(words[:-1], tf.uint8), [-1])[:size]
    uniforms = tf.reshape(uniforms, shape)
    scale = _LEVELS / (_LEVELS - tf.cast(threshold, tf.float32))
    return tf.where(
        uniforms >= tf.cast(threshold, tf.uint8),
        tf.cast(scale, dtype),
        tf.constant(0.0, dtype),
    )


def fast_dropout(inputs, rate: float, seed) -> tf.Tensor:
    """Inverted dropout of `inputs` at `rate` with a stateless `seed`."""
    if rate <= 0.0:
        return inputs
    if rate >= 1.0:
        return tf.zeros_like(inputs)
    inputs = tf.convert_to_tensor(inputs)
    if rate > (_LEVELS - 1) / _LEVELS:
        return tf.nn.experimental.stateless_dropout(
            inputs, rate, seed=_as_stateless_seed(seed)
        )
    return inputs * keep_mask(tf.shape(inputs), rate, seed, inputs.dtype)


class FastDropout(keras.layers.Dropout):
    """`keras.layers.Dropout` drawing its mask with `fast_dropout`.

    Same constructor, config, seed generator and inference behaviour as
    `keras.layers.Dropout`; layers with a `noise_shape` keep Keras' path.
    """

    def call(self, inputs, training=False):
        if not training or self.rate <= 0 or self.noise_shape is not None:
            return super().call(inputs, training=training)
        return fast_dropout(inputs, self.rate, self.seed_generator.next())
