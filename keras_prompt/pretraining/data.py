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
    """Corpus tokens per chunk so rows are ``sequence_length`` long (encoder)."""
    if objective == "lm_adaptation":
        if sequence_length < 4:
            raise ValueError(f"sequence_length must be >= 4; got {sequence_length}.")
        return sequence_length - 2
    if objective == "span_corruption":
        return objectives.span_corruption_lengths(sequence_length).tokens_length
    raise ValueError(
        f"Unknown objective {objective!r}; use one of {objectives.OBJECTIVES}."
    )


def corpus_tokens_per_row(objective: str, sequence_length: int) -> int:
    """Corpus tokens one packed row consumes (for tokens/s and tokens seen)."""
    length = chunk_length(objective, sequence_length)
    return 2 * length if objective == "lm_adaptation" else length


def _rows(chunks: tf.data.Dataset, objective: str, sequence_length: int, seed: int):
    length = chunk_length(objective, sequence_length)
    if objective == "lm_adaptation":
        return objectives.lm_adaptation_rows(chunks, length, seed)
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
) -> tf.data.Dataset:
    """An infinite, shuffled stream of ``(x, y, sample_weight)`` batches."""
    lines = text_lines(
        files,
        heldout=False,
        heldout_fraction=heldout_fraction,
        min_chars=min_chars,
        shuffle=True,
        seed=seed,
        repeat=True,
    )
    chunks = objectives.token_chunks(
        lines, sentencepiece_tokenizer(proto), chunk_length(objective, sequence_length)
    )
    rows = _rows(chunks, objective, sequence_length, seed)
    # Chunks cut from one batch of lines are neighbours in the text: shuffle
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
) -> tuple[tf.data.Dataset, int]:
    """A fixed, cached set of held-out LM-adaptation batches.

    Always the LM-adaptation objective (the one the model is for), with fixed
    split points, so held-out loss / perplexity are comparable across
    evaluations, stages and resumed runs.

    Returns:
        ``(dataset, num_target_tokens)``.

    Raises:
        CorpusError: the held-out text is shorter than one chunk.
    """
    length = chunk_length("lm_adaptation", sequence_length)
    lines = text_lines(
        files,
        heldout=True,
        heldout_fraction=heldout_fraction,
        min_chars=min_chars,
        shuffle=False,
        seed=seed,
        repeat=False,
    )
    wanted = 2 * batch_size * num_batches
    chunks = objectives.token_chunks(
        lines, sentencepiece_tokenizer(proto), length, lines_per_batch=4096
    ).take(wanted)
    array = np.array([c.numpy() for c in chunks], dtype="int32").reshape(-1, length)
    rows = len(array) // 2
    if rows == 0:
        raise CorpusError(
            f"The held-out partition (heldout_fraction={heldout_fraction}) holds "
            f"fewer than {2 * length} tokens, too few for one {sequence_length}-token "
            "evaluation row; add text or raise the held-out fraction."
        )
    eval_batch = min(batch_size, rows)
    dataset = objectives.lm_adaptation_rows(
        tf.data.Dataset.from_tensor_slices(array), length, seed
    )
    dataset = dataset.batch(eval_batch, drop_remainder=True)
    num_rows = (rows // eval_batch) * eval_batch
    return dataset, num_rows * (length + 2)
