"""T5 pretraining objectives as in-graph ``tf.data`` transforms, with packing.

Both objectives read a stream of fixed-length chunks of corpus tokens (the
corpus is tokenized and concatenated, as T5's ``reduce_concat_tokens`` /
``split_tokens`` do) and emit *packed rows*: each row holds one or more
examples, told apart by segment ids (1, 2, ...; 0 is padding). The model
masks attention across segments (:mod:`keras_prompt.pretraining.model`), so a
packed row trains exactly as its examples would one by one, without the
padding a batch of variable-length examples wastes.

* LM adaptation (Lester et al. 2021, §2.2; T5's ``prefix_lm``): a span of
  natural text is split at a uniformly random point; the encoder reads the
  prefix, the decoder predicts the continuation. A row packs two chunks of
  ``L = sequence_length - 2`` tokens split at complementary points ``k`` and
  ``L - k``, so both the encoder and the decoder side hold exactly
  ``sequence_length`` tokens (``L`` text tokens + two ``</s>``): no padding at
  all, while each example's split point is still uniform on ``1..L-1``.
* Span corruption (Raffel et al. 2020, T5's ``span_corruption``): 15% of a
  chunk's tokens, in spans of mean length 3, are replaced by sentinel ids
  (``<extra_id_0>`` = 32099, then downwards); the decoder emits each sentinel
  followed by the tokens it replaced. The chunk length is chosen so the
  encoder input is at most ``sequence_length`` tokens; one example per row.

Row layout (what :class:`~keras_prompt.pretraining.model.T5Pretrainer`
takes), all int32:

* ``x["encoder_token_ids"]``, ``x["encoder_segment_ids"]``: ``(E,)``
* ``x["decoder_token_ids"]``, ``x["decoder_segment_ids"]``: ``(D,)``; each
  segment starts with ``<pad>`` (T5's decoder start id) followed by its
  targets shifted right.
* ``y``: ``(D,)`` the targets (continuation + ``</s>``).
* ``sample_weight``: ``(D,)`` float32, 1 on real targets.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

PAD_ID = 0
EOS_ID = 1
#: T5's first sentinel, ``<extra_id_0>``; later sentinels count down.
FIRST_SENTINEL_ID = 32099

OBJECTIVES: tuple[str, ...] = ("lm_adaptation", "span_corruption")


@dataclasses.dataclass(frozen=True)
class SpanCorruptionLengths:
    """Static lengths of one span-corruption example (T5's random_spans_helper)."""

    tokens_length: int
    num_noise_tokens: int
    num_noise_spans: int
    inputs_length: int
    targets_length: int


def span_corruption_lengths(
    inputs_length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0
) -> SpanCorruptionLengths:
    """Longest chunk whose corrupted input (+ ``</s>``) fits ``inputs_length``.

    Mirrors ``t5.data.preprocessors.random_spans_helper``: the counts are
    deterministic functions of the chunk length, so every example has the
    same static shapes.
    """
    if inputs_length < 4:
        raise ValueError(
            f"inputs_length must be >= 4 for span corruption; got {inputs_length}."
        )

    def counts(tokens_length: int) -> SpanCorruptionLengths:
        num_noise = int(round(tokens_length * noise_density))
        num_noise = min(max(num_noise, 1), tokens_length - 1)
        num_spans = max(int(round(num_noise / mean_noise_span_length)), 1)
        return SpanCorruptionLengths(
            tokens_length=tokens_length,
            num_noise_tokens=num_noise,
            num_noise_spans=num_spans,
            inputs_length=tokens_length - num_noise + num_spans + 1,
            targets_length=num_noise + num_spans + 1,
        )

    tokens_length = inputs_length
    while counts(tokens_length + 1).inputs_length <= inputs_length:
        tokens_length += 1
    while counts(tokens_length).inputs_length > inputs_length:
        tokens_length -= 1
    return counts(tokens_length)


# ---------------------------------------------------------------------------
# Chunking.
# ---------------------------------------------------------------------------


def token_chunks(
    lines: tf.data.Dataset,
    tokenizer,
    chunk_length: int,
    *,
    lines_per_batch: int = 256,
) -> tf.data.Dataset:
    """Tokenizes lines in-graph and cuts the concatenated ids into chunks.

    Lines are tokenized ``lines_per_batch`` at a time (one SentencePiece call
    per batch) and each batch's ids are concatenated and cut into
    ``chunk_length`` pieces; the sub-chunk remainder of each batch (on
    average ``chunk_length / 2`` of ~10^4 tokens) is dropped, which keeps the
    pipeline stateless.

    Args:
        lines: scalar ``tf.string`` elements.
        tokenizer: an object with ``tokenize`` (``tensorflow_text.
            SentencepieceTokenizer``, keras-hub tokenizers) or a callable,
            mapping a ``(n,)`` string tensor to ragged ``(n, None)`` ids.
    """

    def to_chunks(batch: tf.Tensor) -> tf.Tensor:
        ids = (
            tokenizer.tokenize(batch)
            if hasattr(tokenizer, "tokenize")
            else tokenizer(batch)
        )
        flat = tf.cast(
            ids.flat_values if hasattr(ids, "flat_values") else ids, tf.int32
        )
        flat = tf.reshape(flat, [-1])
        n = tf.size(flat) // chunk_length
        return tf.reshape(flat[: n * chunk_length], [n, chunk_length])

    chunks = lines.batch(lines_per_batch).map(
        to_chunks, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return chunks.unbatch()


# ---------------------------------------------------------------------------
# LM adaptation.
# ---------------------------------------------------------------------------


def lm_adaptation_row(chunk_a: tf.Tensor, chunk_b: tf.Tensor, split: tf.Tensor):
    """Packs two chunks split at ``split`` and ``L - split`` into one row.

    Args:
        chunk_a, chunk_b: ``(L,)`` int32 token ids.
        split: scalar int32 in ``1..L-1``: ``chunk_a``'s prefix length.

    Returns:
        ``(x, y, sample_weight)`` with encoder and decoder length ``L + 2``.
    """
    length = tf.shape(chunk_a)[0]
    split_b = length - split
    eos = tf.constant([EOS_ID], tf.int32)
    start = tf.constant([PAD_ID], tf.int32)
    prefix_a, rest_a = chunk_a[:split], chunk_a[split:]
    prefix_b, rest_b = chunk_b[:split_b], chunk_b[split_b:]
    encoder_ids = tf.concat([prefix_a, eos, prefix_b, eos], 0)
    encoder_segments = tf.concat(
        [tf.fill([split + 1], 1), tf.fill([split_b + 1], 2)], 0
    )
    targets = tf.concat([rest_a, eos, rest_b, eos], 0)
    decoder_ids = tf.concat([start, rest_a, start, rest_b], 0)
    decoder_segments = tf.concat(
        [tf.fill([length - split + 1], 1), tf.fill([length - split_b + 1], 2)], 0
    )
    x = {
        "encoder_token_ids": encoder_ids,
        "encoder_segment_ids": encoder_segments,
        "decoder_token_ids": decoder_ids,
        "decoder_segment_ids": decoder_segments,
    }
    return x, targets, tf.ones_like(targets, tf.float32)


def lm_adaptation_rows(
    chunks: tf.data.Dataset, chunk_length: int, seed: int
) -> tf.data.Dataset:
    """Pairs consecutive chunks into packed LM-adaptation rows.

    Split points come from a seeded stateless stream, so a given seed and
    chunk stream always give the same rows (the held-out set is fixed).
    """
    if chunk_length < 2:
        raise ValueError(
            f"LM adaptation needs chunks of >= 2 tokens; got {chunk_length}."
        )
    pairs = chunks.batch(2, drop_remainder=True)
    seeds = tf.data.Dataset.random(seed=seed).batch(2)

    def make(pair: tf.Tensor, row_seed: tf.Tensor):
        split = tf.random.stateless_uniform(
            [], seed=row_seed, minval=1, maxval=chunk_length, dtype=tf.int32
        )
        x, y, w = lm_adaptation_row(pair[0], pair[1], split)
        row_length = chunk_length + 2
        for value in (*x.values(), y, w):
            value.set_shape([row_length])
        return x, y, w

    return tf.data.Dataset.zip((pairs, seeds)).map(
        make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )


# ---------------------------------------------------------------------------
# Span corruption.
# ---------------------------------------------------------------------------


def _random_segmentation(
    num_items: int, num_segments: int, seed: tf.Tensor
) -> tf.Tensor:
    """Lengths of ``num_segments`` random non-empty parts summing to ``num_items``."""
    first = tf.cast(tf.range(num_items - 1) < num_segments - 1, tf.int32)
    order = tf.argsort(tf.random.stateless_uniform([num_items - 1], seed=seed))
    first = tf.pad(tf.gather(first, order), [[1, 0]])
    segment_id = tf.cumsum(first)
    return tf.math.unsorted_segment_sum(
        tf.ones_like(segment_id), segment_id, num_segments
    )


def random_spans_noise_mask(
    lengths: SpanCorruptionLengths, seed: tf.Tensor
) -> tf.Tensor:
    """T5's noise mask: True on corrupted tokens, in alternating random spans."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    noise_spans = _random_segmentation(
        lengths.num_noise_tokens, lengths.num_noise_spans, seeds[0]
    )
    keep_spans = _random_segmentation(
        lengths.tokens_length - lengths.num_noise_tokens,
        lengths.num_noise_spans,
        seeds[1],
    )
    interleaved = tf.reshape(tf.stack([keep_spans, noise_spans], 1), [-1])
    starts = tf.cumsum(interleaved)[:-1]
    indicator = tf.math.unsorted_segment_sum(
        tf.ones_like(starts), starts, lengths.tokens_length
    )
    return tf.equal(tf.cumsum(indicator) % 2, 1)


def _sentinelize(tokens: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
    """Replaces each span of ``noise`` tokens with one sentinel id."""
    previous = tf.pad(noise[:-1], [[1, 0]])
    first = tf.logical_and(noise, tf.logical_not(previous))
    later = tf.logical_and(noise, previous)
    sentinels = FIRST_SENTINEL_ID + 1 - tf.cumsum(tf.cast(first, tf.int32))
    tokens = tf.where(first, sentinels, tokens)
    return tf.boolean_mask(tokens, tf.logical_not(later))


def span_corruption_example(
    chunk: tf.Tensor, lengths: SpanCorruptionLengths, seed: tf.Tensor
):
    """``(inputs, targets)`` of one chunk, each ending in ``</s>``."""
    noise = random_spans_noise_mask(lengths, seed)
    eos = tf.constant([EOS_ID], tf.int32)
    inputs = tf.concat([_sentinelize(chunk, noise), eos], 0)
    targets = tf.concat([_sentinelize(chunk, tf.logical_not(noise)), eos], 0)
    inputs.set_shape([lengths.inputs_length])
    targets.set_shape([lengths.targets_length])
    return inputs, targets


def span_corruption_rows(
    chunks: tf.data.Dataset, lengths: SpanCorruptionLengths, seed: int
) -> tf.data.Dataset:
    """One span-corruption example per row (its shapes are already exact)."""
    seeds = tf.data.Dataset.random(seed=seed).batch(2)

    def make(chunk: tf.Tensor, row_seed: tf.Tensor):
        inputs, targets = span_corruption_example(chunk, lengths, row_seed)
        start = tf.constant([PAD_ID], tf.int32)
        x = {
            "encoder_token_ids": inputs,
            "encoder_segment_ids": tf.ones_like(inputs),
            "decoder_token_ids": tf.concat([start, targets[:-1]], 0),
            "decoder_segment_ids": tf.ones_like(targets),
        }
        return x, targets, tf.ones_like(targets, tf.float32)

    return tf.data.Dataset.zip((chunks, seeds)).map(
        make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
