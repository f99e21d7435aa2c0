"""T5 pretraining objectives as in-graph ``tf.data`` transforms, with packing.

Both objectives read a stream of fixed-length chunks of corpus tokens (the
corpus is tokenized and concatenated, as T5's ``reduce_concat_tokens`` /
``split_tokens`` do) and emit *packed rows*: each row holds one or more
examples, told apart by segment ids (1, 2, ...; 0 is padding). The model
masks attention across segments (:mod:`keras_prompt.pretraining.model`), so a
packed row trains exactly as its examples would one by one, without the
padding a batch of variable-length examples wastes.

* LM adaptation (Lester et al. 2021, §2.2; T5's ``prefix_lm``): a text
  (one corpus line, cut into pieces of at most ``sequence_length`` tokens) is
  split at a uniformly random point; the encoder reads the prefix, the
  decoder predicts the continuation of *the same text*. Examples are packed
  greedily into rows of ``sequence_length`` on each side. (Cutting the
  concatenated corpus into fixed chunks instead, as T5 does for long C4
  documents, would make most continuations of this corpus's short lines a
  different, unrelated line.)
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


def line_pieces(
    lines: tf.data.Dataset,
    tokenizer,
    max_length: int,
    *,
    lines_per_batch: int = 256,
) -> tf.data.Dataset:
    """Tokenizes lines in-graph; yields each line's ids in pieces of <= max_length.

    A line (one paragraph or dictionary entry of the corpus) is a document:
    LM-adaptation examples are cut from one piece, so a prefix and its
    continuation always come from the same text. Pieces shorter than 2
    tokens are dropped (no prefix/continuation split exists).
    """

    def to_pieces(batch: tf.Tensor) -> tf.RaggedTensor:
        ids = (
            tokenizer.tokenize(batch)
            if hasattr(tokenizer, "tokenize")
            else tokenizer(batch)
        )
        ids = tf.cast(ids, tf.int32)
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        # Each line splits into ceil(n / max_length) pieces: a piece of
        # max_length per full block, then the remainder.
        counts = (lengths + max_length - 1) // max_length
        starts = tf.repeat(tf.cast(ids.row_starts(), tf.int32), counts)
        first = tf.repeat(tf.cumsum(counts, exclusive=True), counts)
        index = tf.range(tf.reduce_sum(counts)) - first
        piece_starts = starts + index * max_length
        line_ends = tf.repeat(tf.cast(ids.row_limits(), tf.int32), counts)
        piece_lengths = tf.minimum(line_ends - piece_starts, max_length)
        keep = piece_lengths >= 2
        piece_starts = tf.boolean_mask(piece_starts, keep)
        piece_lengths = tf.boolean_mask(piece_lengths, keep)
        positions = tf.ragged.range(piece_starts, piece_starts + piece_lengths)
        return tf.gather(ids.flat_values, positions)

    pieces = lines.batch(lines_per_batch).map(
        to_pieces, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return pieces.unbatch()


def prefix_lm_examples(pieces: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    """``(inputs, targets)``: each piece split at a uniform point in ``1..n-1``.

    The encoder reads the prefix + ``</s>``; the decoder predicts the rest +
    ``</s>`` (T5's ``prefix_lm``, Lester et al.'s LM adaptation). Split points
    come from a seeded stateless stream.
    """
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    eos = tf.constant([EOS_ID], tf.int32)

    def split(piece: tf.Tensor, row_seed: tf.Tensor):
        n = tf.shape(piece)[0]
        k = tf.random.stateless_uniform(
            [], seed=row_seed, minval=1, maxval=n, dtype=tf.int32
        )
        return tf.concat([piece[:k], eos], 0), tf.concat([piece[k:], eos], 0)

    return tf.data.Dataset.zip((pieces, seeds)).map(
        split, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )


def pack_examples(
    examples: tf.data.Dataset, encoder_length: int, decoder_length: int
) -> tf.data.Dataset:
    """Greedily packs ``(inputs, targets)`` examples into fixed-length rows.

    Examples are appended to the current row, with segment ids 1, 2, ...,
    until the next one does not fit on the encoder or the decoder side; the
    row is then emitted (zero-padded) and a new one started (T5's
    ``trim_and_pack_dataset``, in order). Every example must fit in an
    empty row. The partial row at the end of a finite stream is dropped.

    Returns:
        ``(x, y, sample_weight)`` rows in the layout of this module's
        docstring.
    """
    enc_len, dec_len = encoder_length, decoder_length
    zeros_e = tf.zeros([enc_len], tf.int32)
    zeros_d = tf.zeros([dec_len], tf.int32)
    start = tf.constant([PAD_ID], tf.int32)
    initial = (zeros_e, zeros_e, zeros_d, zeros_d, zeros_d, 0, 0, 0)

    def write(buffer, offset, values):
        index = offset + tf.range(tf.shape(values)[0])
        return tf.tensor_scatter_nd_update(buffer, index[:, None], values)

    def step(state, example):
        inputs, targets = example
        enc_ids, enc_seg, dec_ids, dec_seg, dec_tgt, used_e, used_d, count = state
        n_in, n_tgt = tf.shape(inputs)[0], tf.shape(targets)[0]
        full = tf.logical_or(used_e + n_in > enc_len, used_d + n_tgt > dec_len)
        emit = tf.logical_and(full, count > 0)
        row = (enc_ids, enc_seg, dec_ids, dec_seg, dec_tgt)
        enc_ids, enc_seg, dec_ids, dec_seg, dec_tgt = (
            tf.where(full, tf.zeros_like(t), t) for t in row
        )
        used_e, used_d, count = (
            tf.where(full, 0, v) for v in (used_e, used_d, count)
        )
        count += 1
        enc_ids = write(enc_ids, used_e, inputs)
        enc_seg = write(enc_seg, used_e, tf.fill([n_in], count))
        dec_ids = write(dec_ids, used_d, tf.concat([start, targets[:-1]], 0))
        dec_seg = write(dec_seg, used_d, tf.fill([n_tgt], count))
        dec_tgt = write(dec_tgt, used_d, targets)
        state = (enc_ids, enc_seg, dec_ids, dec_seg, dec_tgt)
        state += (used_e + n_in, used_d + n_tgt, count)
        return state, (emit, row)

    def to_row(emit, row):
        enc_ids, enc_seg, dec_ids, dec_seg, dec_tgt = row
        x = {
            "encoder_token_ids": enc_ids,
            "encoder_segment_ids": enc_seg,
            "decoder_token_ids": dec_ids,
            "decoder_segment_ids": dec_seg,
        }
        return x, dec_tgt, tf.cast(dec_seg > 0, tf.float32)

    packed = examples.scan(initial, step).filter(lambda emit, row: emit)
    return packed.map(to_row, num_parallel_calls=tf.data.AUTOTUNE)


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
