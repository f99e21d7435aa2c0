"""Turn examples into batched ``tf.data`` pipelines for ``Seq2SeqLM.fit``.

The batches have exactly the layout of keras-hub's
``T5Seq2SeqLMPreprocessor`` (so a model built for keras-hub's pipeline trains
on ours unchanged) but are padded per batch rather than to a fixed length:
classification inputs are mostly short, and padding SST-2 sentences (median
~10 tokens) to 256 would waste >90% of the encoder's compute. Tokenization runs
in-graph inside ``Dataset.map`` so the pipeline is parallel and never holds the
GIL.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from keras_prompt.data.readers import Example


def default_bucket_boundaries(max_input_length: int) -> tuple[int, ...]:
    """Inclusive upper bounds of the encoder-length buckets.

    Powers of two from 16 below ``max_input_length``, then ``max_input_length``
    itself (e.g. 256 -> ``(16, 32, 64, 128, 256)``). Above the first bucket every
    example is more than half as long as its batch is wide, so padding wastes
    under half the encoder's work, while the number of distinct batch shapes
    stays small.
    """
    bounds = []
    bound = 16
    while bound < max_input_length:
        bounds.append(bound)
        bound *= 2
    bounds.append(max_input_length)
    return tuple(bounds)


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def make_dataset(
    examples: Sequence[Example],
    tokenizer: Any,
    *,
    batch_size: int,
    max_input_length: int = 256,
    max_target_length: int = 16,
    shuffle: bool = False,
    seed: int = 0,
    repeat: bool = False,
    bucket_boundaries: Sequence[int] | None = None,
    fixed_shape: bool = False,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Build a ``(x, y, sample_weight)`` dataset from examples.

    Layout (identical to ``keras_hub.models.T5Seq2SeqLMPreprocessor`` with
    ``encoder_sequence_length=max_input_length`` and
    ``decoder_sequence_length=max_target_length``, up to trailing padding):

    * ``x["encoder_token_ids"]``: input tokens, truncated to
      ``max_input_length - 1``, then ``</s>``; padded with ``<pad>`` (0).
    * ``x["decoder_token_ids"]``: ``<pad>`` (T5's decoder start), target
      tokens, ``</s>``, cut to ``max_target_length``.
    * ``y``: the decoder sequence shifted left by one (the next token).
    * ``sample_weight``: True where ``y`` is a real token.
    * ``x["*_padding_mask"]``: True on non-padding positions.

    Token ids are int32, masks and ``sample_weight`` bool, as keras-hub's.

    Batching: by default examples are grouped into encoder-length buckets
    (``bucket_boundaries``: inclusive upper bounds, default
    :func:`default_bucket_boundaries`) and each batch is padded only to its
    longest member, encoder and decoder alike. With ``fixed_shape=True`` every
    batch is exactly ``(batch_size, max_input_length)`` /
    ``(batch_size, max_target_length)`` and incomplete batches are dropped, so
    XLA / TPUs compile a single program.

    Order: shuffling (full-buffer, reshuffled every epoch) happens before
    tokenization and batching and is deterministic given ``seed`` (and TF's
    global seed, if one is set). ``repeat=True`` repeats before batching so no
    short batch appears at epoch boundaries.

    Args:
        examples: Examples from :func:`~keras_prompt.data.load_examples`.
        tokenizer: A ``keras_hub.models.T5Tokenizer`` (anything callable on a
            scalar string tensor returning int token ids, with
            ``pad_token_id`` and ``end_token_id``).
        batch_size: Examples per batch.
        max_input_length: Encoder length cap, including ``</s>``.
        max_target_length: Decoder length cap (keras-hub's
            ``decoder_sequence_length``).
        shuffle: Shuffle examples (use for training).
        seed: Shuffle seed.
        repeat: Repeat indefinitely.
        bucket_boundaries: Inclusive upper bounds on encoder length per bucket.
        fixed_shape: Pad every batch to the maximum lengths (drops the last
            incomplete batch).
        drop_remainder: Drop incomplete batches (always on with
            ``fixed_shape``).

    Returns:
        A ``tf.data.Dataset`` of ``(x, y, sample_weight)``.
    """
    if len(examples) == 0:
        raise ValueError("make_dataset got no examples.")
    _check_positive("batch_size", batch_size)
    _check_positive("max_input_length", max_input_length)
    _check_positive("max_target_length", max_target_length)
    if fixed_shape and bucket_boundaries is not None:
        raise ValueError(
            "bucket_boundaries has no effect with fixed_shape=True (every batch is "
            "padded to max_input_length); pass one or the other."
        )
    ds = tf.data.Dataset.from_tensor_slices(
        (
            tf.constant([e.inputs for e in examples], tf.string),
            tf.constant([e.targets for e in examples], tf.string),
        )
    )
    if shuffle:
        ds = ds.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    pack = _packer(tokenizer, max_input_length, max_target_length)
    ds = ds.map(pack, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    padding_values = _padding_values(int(tokenizer.pad_token_id))
    if fixed_shape:
        ds = _fixed_shape_batches(
            ds, batch_size, max_input_length, max_target_length, padding_values
        )
    else:
        boundaries = _check_boundaries(
            default_bucket_boundaries(max_input_length)
            if bucket_boundaries is None
            else bucket_boundaries
        )
        ds = ds.bucket_by_sequence_length(
            element_length_func=lambda x, y, w: tf.shape(x["encoder_token_ids"])[0],
            # tf.data's boundaries are exclusive upper bounds.
            bucket_boundaries=[b + 1 for b in boundaries],
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            padding_values=padding_values,
            drop_remainder=drop_remainder,
        )
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _check_boundaries(bucket_boundaries: Sequence[int]) -> tuple[int, ...]:
    bucket_boundaries = tuple(bucket_boundaries)
    if (
        not bucket_boundaries
        or any(not isinstance(b, int) or b < 1 for b in bucket_boundaries)
        or any(a >= b for a, b in itertools.pairwise(bucket_boundaries))
    ):
        raise ValueError(
            "bucket_boundaries must be strictly increasing positive integers, got "
            f"{bucket_boundaries!r}."
        )
    return bucket_boundaries


def _packer(tokenizer, max_input_length: int, max_target_length: int):
    """The per-example map: strings -> `(x, labels, weights)` as keras-hub packs."""
    pad_id = int(tokenizer.pad_token_id)
    end_id = int(tokenizer.end_token_id)

    def pack(inputs: tf.Tensor, targets: tf.Tensor):
        encoder = tf.cast(tokenizer(inputs), tf.int32)[: max_input_length - 1]
        encoder = tf.concat([encoder, [end_id]], axis=0)
        target = tf.cast(tokenizer(targets), tf.int32)[: max_target_length - 1]
        # [<pad> (decoder start), target..., </s>]: length m <= max_target + 1.
        # Like keras-hub, feed the first min(m, max_target) positions and
        # predict each one's successor (<pad> with weight 0 after </s>).
        full = tf.concat([[pad_id], target, [end_id]], axis=0)
        length = tf.minimum(tf.size(full), max_target_length)
        decoder = full[:length]
        labels = tf.concat([full[1:], [pad_id]], axis=0)[:length]
        weights = tf.concat([tf.ones(tf.size(full) - 1, tf.bool), [False]], axis=0)[
            :length
        ]
        x = {
            "encoder_token_ids": encoder,
            "encoder_padding_mask": tf.ones_like(encoder, tf.bool),
            "decoder_token_ids": decoder,
            "decoder_padding_mask": tf.ones_like(decoder, tf.bool),
        }
        return x, labels, weights

    return pack


def _padding_values(pad_id: int):
    return (
        {
            "encoder_token_ids": tf.constant(pad_id, tf.int32),
            "encoder_padding_mask": tf.constant(False),
            "decoder_token_ids": tf.constant(pad_id, tf.int32),
            "decoder_padding_mask": tf.constant(False),
        },
        tf.constant(pad_id, tf.int32),
        tf.constant(False),
    )


def _fixed_shape_batches(ds, batch_size, max_input_length, max_target_length, pad):
    """Every batch `(batch_size, max lengths)`; incomplete batches dropped."""
    enc, dec = [max_input_length], [max_target_length]
    padded_shapes = (
        {
            "encoder_token_ids": enc,
            "encoder_padding_mask": enc,
            "decoder_token_ids": dec,
            "decoder_padding_mask": dec,
        },
        dec,
        dec,
    )
    return ds.padded_batch(
        batch_size,
        padded_shapes=padded_shapes,
        padding_values=pad,
        drop_remainder=True,
    )
