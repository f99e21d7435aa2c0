"""T5's packing of tokenized text, in-graph: the one copy scoring and serving use.

Encoder inputs are `tokens </s>` (tokens truncated to leave room for
`</s>`), decoder targets `<pad> tokens </s>` (`<pad>` is T5's decoder start),
both padded with `<pad>` to the batch's longest row, as keras-hub's
`T5Seq2SeqLMPreprocessor` packs them (up to trailing padding).
`keras_prompt.data.make_dataset` packs training examples the same way, one
example at a time inside `tf.data`.

Example:

```python
import tensorflow as tf
from keras_prompt.models.t5_inputs import pack_inputs
pieces = tf.ragged.constant([[5, 6, 7], [8]])
ids, mask = pack_inputs(pieces, end_id=1, pad_id=0, max_length=3)
ids.numpy().tolist()  # [[5, 6, 1], [8, 1, 0]]
```
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf


def _pack(pieces, end_id, pad_id, max_length, start_id=None):
    if max_length is not None:
        pieces = pieces[:, : max_length - 1]
    pieces = tf.cast(pieces, tf.int32)
    count = pieces.nrows(out_type=tf.int32)

    def column(value):
        return tf.RaggedTensor.from_tensor(tf.fill([count, 1], value))

    start = [] if start_id is None else [column(start_id)]
    rows = tf.concat([*start, pieces, column(end_id)], axis=1)
    ids = rows.to_tensor(default_value=pad_id)
    mask = tf.sequence_mask(rows.row_lengths(), tf.shape(ids)[1], dtype=tf.int32)
    return ids, mask


def pack_inputs(
    pieces: tf.RaggedTensor, *, end_id: int, pad_id: int, max_length: int | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """Ragged `[B, (n)]` token ids -> `[B, L]` ids `tokens </s>` and int32 mask.

    With `max_length`, at most `max_length - 1` tokens are kept.
    """
    return _pack(pieces, end_id, pad_id, max_length)


def pack_targets(
    pieces: tf.RaggedTensor, *, end_id: int, pad_id: int, max_length: int | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """Ragged `[M, (n)]` token ids -> `[M, T]` ids `<pad> tokens </s>` and mask.

    With `max_length`, at most `max_length - 1` tokens are kept; `<pad>` is
    T5's decoder start.
    """
    return _pack(pieces, end_id, pad_id, max_length, start_id=pad_id)


def token_lists(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Each text's token ids as a Python list (a keras-hub tokenizer's output)."""
    ids = tokenizer(tf.constant(list(texts), tf.string))
    if hasattr(ids, "to_list"):
        ids = ids.to_list()
    return [[int(i) for i in row] for row in ids]


def ragged_tokens(tokenizer, texts: Sequence[str]) -> tf.RaggedTensor:
    """`token_lists` as an int32 ragged `[B, (n)]` tensor, for `pack_*`."""
    rows = token_lists(tokenizer, texts)
    values = tf.constant([i for row in rows for i in row], tf.int32)
    return tf.RaggedTensor.from_row_lengths(values, [len(row) for row in rows])
