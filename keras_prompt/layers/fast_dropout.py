"""Dropout whose random mask costs a fraction of `tf.nn.stateless_dropout`'s.

Why this exists: with a `mixed_bfloat16` policy, Keras' TensorFlow dropout
(`tf.nn.experimental.stateless_dropout`) draws one *bfloat16* uniform number
per element, and TensorFlow's bfloat16 Philox/uniform kernel is slow on CPU.
In a prompt-tuning step of t5-small (batch 32, 148 encoder positions) the
backbone's dropout layers draw about 135 million numbers, and the profiler
showed them taking more time (1.3 s of StatelessRandomUniformV2 + 0.4 s of
compare/select) than all the encoder matmuls; the same graph under XLA on CPU
was slower still (3 s for one attention-weights mask).

`fast_dropout` draws raw Philox bits instead (`StatelessRandomUniformFullInt`,
no float conversion), splits each 32-bit word into two 16-bit uniforms, and
compares them with an integer threshold: half the Philox work of one uint32 per
element, a quarter of the float path's, and no bfloat16 arithmetic on the
random numbers. The keep mask becomes a `{0, 1/(1-rate)}` tensor in the input
dtype, so the forward pass is one multiply and so is its gradient.

The rate is quantized to multiples of 1/65536 (0.1 becomes 0.100006), far below
the sampling noise of any batch.
"""

from __future__ import annotations

import keras
import tensorflow as tf

_RESOLUTION = 1 << 16


def _as_stateless_seed(seed) -> tf.Tensor:
    """A `(2,)` int32 seed, as Keras' TensorFlow backend derives it."""
    seed = tf.convert_to_tensor(seed)
    if seed.dtype != tf.int32:
        seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
    return seed


def keep_mask(shape, rate: float, seed, dtype) -> tf.Tensor:
    """`{0, 1/(1-rate)}` mask of `shape`: each entry dropped with prob `rate`.

    Two 16-bit uniforms come from every 32-bit Philox word; an entry is kept
    when its uniform is >= `round(rate * 65536)`.
    """
    shape = tf.convert_to_tensor(shape, tf.int32)
    size = tf.reduce_prod(shape)
    words = tf.random.stateless_uniform(
        [(size + 1) // 2],
        seed=_as_stateless_seed(seed),
        minval=None,
        maxval=None,
        dtype=tf.uint32,
    )
    # bitcast to uint16 gives [words, 2]; the slice is a no-op (TensorFlow
    # forwards the buffer) whenever `size` is even.
    bits = tf.reshape(tf.bitcast(words, tf.uint16), [-1])[:size]
    bits = tf.reshape(bits, shape)
    threshold = tf.constant(round(rate * _RESOLUTION), tf.int32)
    threshold = tf.cast(threshold, tf.uint16)
    return tf.where(
        bits >= threshold,
        tf.constant(1.0 / (1.0 - rate), dtype),
        tf.constant(0.0, dtype),
    )


def fast_dropout(inputs, rate: float, seed) -> tf.Tensor:
    """Inverted dropout of `inputs` at `rate` with a stateless `seed`."""
    if rate <= 0.0:
        return inputs
    if rate >= 1.0:
        return tf.zeros_like(inputs)
    inputs = tf.convert_to_tensor(inputs)
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


def use_fast_dropout(layer: keras.layers.Layer) -> int:
    """Switches every plain `keras.layers.Dropout` inside `layer` to `FastDropout`.

    Used on keras-hub backbones whose dropout layers are created internally.
    Only the class changes (the object, its rate, seed generator and tracking
    stay), so weights, configs and saved models are unaffected. Does nothing
    unless the Keras backend is TensorFlow. Returns the number switched.
    """
    if keras.config.backend() != "tensorflow":
        return 0
    switched = 0
    for sublayer in layer._flatten_layers(include_self=True, recursive=True):
        if type(sublayer) is keras.layers.Dropout:
            sublayer.__class__ = FastDropout
            switched += 1
    return switched
