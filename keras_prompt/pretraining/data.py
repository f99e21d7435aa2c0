"""Training and held-out ``tf.data`` pipelines for pretraining.

Text lines -> in-graph SentencePiece -> fixed-length chunks -> packed rows of
one objective -> batches. Everything after reading the files runs inside
``tf.data`` (parallel, no Python per token), so the input pipeline keeps up
with training on a few CPU cores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from keras_prompt.pretraining import objectives
from keras_prompt.pretraining.corpus import CorpusError, text_lines


def sentencepiece_tokenizer(proto: bytes):
    """An in-graph tokenizer (``tensorflow_text``) for a serialized model."""
    import tensorflow_text as tf_text

    return tf_text.SentencepieceTokenizer(model=proto, out_type=tf.int32)


def chunk_length(objective: str, sequence_length: int) -> int:
    """Longest text piece one example takes (LM adaptation: the encoder
    prefix and decoder continuation of a piece each fit ``sequence_length``)."""
    if objective == "lm_adaptation":
        if sequence_length < 4:
            raise ValueError(f"sequence_length must be >= 4; got {sequence_length}.")
        return sequence_length
    if objective == "span_corruption":
        return objectives.span_corruption_lengths(sequence_length).tokens_length
    raise ValueError(
        f"Unknown objective {objective!r}; use one of {objectives.OBJECTIVES}."
    )


def corpus_tokens_per_row(objective: str, sequence_length: int) -> int:
    """Corpus tokens a span-corruption row consumes; an upper bound for LM
    adaptation rows, whose packing density varies (see `packing_density`)."""
    if objective == "lm_adaptation":
        return 2 * (sequence_length - 1)
    return chunk_length(objective, sequence_length)


def packing_density(dataset: tf.data.Dataset) -> float:
    """Corpus tokens per row of packed ``(x, y, w)`` batches, ``</s>`` excluded."""
    tokens = rows = 0
    for x, _, weights in dataset:
        segments = x["encoder_segment_ids"].numpy()
        examples = sum(len(set(row[row > 0])) for row in segments)
        tokens += int((segments > 0).sum() + weights.numpy().sum()) - 2 * examples
        rows += len(segments)
    return tokens / max(rows, 1)


def supervised_examples(
    inputs: Sequence[str],
    targets: Sequence[str],
    proto: bytes,
    *,
    max_length: int,
    seed: int,
) -> tf.data.Dataset:
    """An endless, shuffled stream of labelled ``(inputs, targets)`` id pairs.

    For T5 1.0-style multi-task pretraining: text-to-text task examples
    (``"sst2 sentence: ..."`` -> ``"positive"``), each side cut to
    ``max_length - 1`` tokens + ``</s>``, in the layout of
    `objectives.prefix_lm_examples`, so they pack into the same rows.
    """
    tokenizer = sentencepiece_tokenizer(proto)
    eos = tf.constant([objectives.EOS_ID], tf.int32)
    pairs = tf.data.Dataset.from_tensor_slices(
        (tf.constant(list(inputs), tf.string), tf.constant(list(targets), tf.string))
    )

    def encode(text, target):
        def ids(value):
            tokens = tf.cast(tokenizer.tokenize(value), tf.int32)
            return tf.concat([tokens[: max_length - 1], eos], 0)

        return ids(text), ids(target)

    pairs = pairs.shuffle(len(inputs), seed=seed, reshuffle_each_iteration=True)
    return pairs.repeat().map(
        encode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )


def _rows(
    lines: tf.data.Dataset,
    proto: bytes,
    objective: str,
    sequence_length: int,
    seed: int,
    supervised: tf.data.Dataset | None = None,
    supervised_rate: float = 0.0,
):
    tokenizer = sentencepiece_tokenizer(proto)
    length = chunk_length(objective, sequence_length)
    if objective == "lm_adaptation":
        pieces = objectives.line_pieces(lines, tokenizer, length)
        examples = objectives.prefix_lm_examples(pieces, seed)
        if supervised is not None and supervised_rate > 0:
            examples = tf.data.Dataset.sample_from_datasets(
                [examples, supervised],
                weights=[1 - supervised_rate, supervised_rate],
                seed=seed,
            )
        return objectives.pack_examples(examples, sequence_length, sequence_length)
    chunks = objectives.token_chunks(lines, tokenizer, length)
    lengths = objectives.span_corruption_lengths(sequence_length)
    return objectives.span_corruption_rows(chunks, lengths, seed)


def training_dataset(
    files: Sequence[str],
    proto: bytes,
    *,
    objective: str,
    sequence_length: int,
    batch_size: int,
    seed: int,
    heldout_fraction: float,
    min_chars: int,
    supervised: tuple[Sequence[str], Sequence[str]] | None = None,
    supervised_rate: float = 0.0,
) -> tf.data.Dataset:
    """An infinite, shuffled stream of ``(x, y, sample_weight)`` batches.

    With ``supervised`` (task inputs, targets), a ``supervised_rate`` share of
    the LM-adaptation examples are those labelled task examples instead (T5
    1.0-style multi-task pretraining); span corruption ignores them.
    """
    lines = text_lines(
        files,
        heldout=False,
        heldout_fraction=heldout_fraction,
        min_chars=min_chars,
        shuffle=True,
        seed=seed,
        repeat=True,
    )
    task_examples = None
    if supervised is not None:
        task_examples = supervised_examples(
            *supervised, proto, max_length=sequence_length, seed=seed
        )
    rows = _rows(
        lines, proto, objective, sequence_length, seed, task_examples, supervised_rate
    )
    # Rows cut from one batch of lines are neighbours in the stream: shuffle
    # rows so a batch mixes many places of the corpus.
    rows = rows.shuffle(2048, seed=seed, reshuffle_each_iteration=True)
    return rows.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def heldout_dataset(
    files: Sequence[str],
    proto: bytes,
    *,
    sequence_length: int,
    batch_size: int,
    num_batches: int,
    heldout_fraction: float,
    min_chars: int,
    seed: int = 0,
    objective: str = "lm_adaptation",
) -> tuple[tf.data.Dataset, int]:
    """A fixed set of held-out batches of one objective, held in memory.

    LM adaptation by default (the objective the model is for), with fixed
    split points (and, for span corruption, fixed noise spans), so held-out
    losses are comparable across evaluations, stages and resumed runs.

    Returns:
        ``(dataset, num_target_tokens)``.

    Raises:
        CorpusError: the held-out text is shorter than one row.
    """
    lines = text_lines(
        files,
        heldout=True,
        heldout_fraction=heldout_fraction,
        min_chars=min_chars,
        shuffle=False,
        seed=seed,
        repeat=False,
    )
    rows = list(
        _rows(lines, proto, objective, sequence_length, seed).take(
            batch_size * num_batches
        )
    )
    if not rows:
        raise CorpusError(
            f"The held-out partition (heldout_fraction={heldout_fraction}) is "
            f"too small for one {sequence_length}-token {objective} evaluation "
            "row; add text or raise the held-out fraction."
        )
    eval_batch = min(batch_size, len(rows))
    rows = rows[: len(rows) // eval_batch * eval_batch]
    x = {key: np.stack([r[0][key].numpy() for r in rows]) for key in rows[0][0]}
    y = np.stack([r[1].numpy() for r in rows])
    weights = np.stack([r[2].numpy() for r in rows])
    dataset = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(eval_batch)
    return dataset, int(weights.sum())
