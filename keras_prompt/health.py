"""Backbone health: can a prompt steer this frozen T5 at all?

A soft prompt only acts through the encoder, so prompt tuning needs a
backbone whose token embeddings are distinct, whose encoder tells tokens
apart, and whose decoder reads the encoder. Three figures measure that:

* **embedding collapse**: ``|mean row| / mean |row|`` of the token embedding
  table. About ``1/sqrt(rows)`` for a healthy table; near 1 when every token is
  the same vector (what keras-hub's ``T5Backbone`` initialiser produces,
  docs/keras_hub_t5_init.md).
* **encoder similarity**: mean cosine between the encoder's output vectors
  at different positions of the same text. Near 1 means the encoder outputs
  one vector whatever the tokens.
* **encoder use**: held-out LM-adaptation loss (prefix in the encoder,
  continuation from the decoder) with each row's encoder input replaced by
  another row's, minus the loss with its own, in nats per target token. A
  seq2seq model that reads its input gains a lot; ~0 means the decoder is an
  unconditional language model that no prompt can steer.

`keras-prompt check-backbone PRESET` prints these; `lm-adapt` logs them at
every evaluation; `keras-prompt train` warns when they say a prompt cannot
work.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_prompt.pretraining import objectives as pretraining_objectives
from keras_prompt.pretraining.model import T5Pretrainer
from keras_prompt.pretraining.objectives import (
    EOS_ID,
    PAD_ID,
    span_corruption_lengths,
)

#: Above this embedding-collapse ratio the token embeddings are one vector.
COLLAPSE_LIMIT = 0.5
#: Above this mean cosine the encoder outputs one vector for every token.
SIMILARITY_LIMIT = 0.98
#: Below this many nats/token the decoder ignores the encoder.
ENCODER_USE_LIMIT = 0.05
#: Above this share of log(vocabulary) the LM loss is that of a random model.
UNTRAINED_LOSS_SHARE = 0.8


def embedding_collapse(backbone) -> float:
    """``|mean row| / mean |row|`` of the token embedding table."""
    table = np.asarray(
        keras.ops.convert_to_numpy(backbone.token_embedding.embeddings), "float64"
    )
    return float(
        np.linalg.norm(table.mean(axis=0)) / np.linalg.norm(table, axis=1).mean()
    )


def shuffle_encoder_inputs(x, y, sample_weight):
    """Gives each row the encoder input of the next row in its batch."""
    x = dict(x)
    for key in ("encoder_token_ids", "encoder_segment_ids"):
        x[key] = tf.roll(x[key], shift=1, axis=0)
    return x, y, sample_weight


def encoder_use(model: T5Pretrainer, dataset: tf.data.Dataset) -> dict[str, float]:
    """Held-out loss with own and with shuffled encoder inputs (nats/token).

    Args:
        model: a compiled `T5Pretrainer` (its loss averages target tokens).
        dataset: ``(x, y, sample_weight)`` batches of at least 2 rows, e.g.
            `keras_prompt.pretraining.heldout_dataset` or `text_rows`.

    Returns:
        ``lm_adaptation_loss``, ``shuffled_encoder_loss`` and their
        difference ``encoder_use``.
    """
    own = model.evaluate(dataset, verbose=0, return_dict=True)["loss"]
    shuffled = model.evaluate(
        dataset.map(shuffle_encoder_inputs), verbose=0, return_dict=True
    )["loss"]
    return {
        "lm_adaptation_loss": float(own),
        "shuffled_encoder_loss": float(shuffled),
        "encoder_use": float(shuffled - own),
    }


def encoder_similarity(model: T5Pretrainer, x: dict[str, Any]) -> float:
    """Mean cosine between encoder outputs at different positions of a row.

    Positions are compared only within one segment (one text); padding is
    ignored.
    """
    segments = np.asarray(x["encoder_segment_ids"])
    outputs = keras.ops.convert_to_numpy(
        model.encode(x["encoder_token_ids"], segments, training=False)
    ).astype("float64")
    cosines = []
    for row, row_segments in zip(outputs, segments):
        for segment in np.unique(row_segments[row_segments > 0]):
            vectors = row[row_segments == segment]
            if len(vectors) < 2:
                continue
            unit = vectors / np.maximum(
                np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12
            )
            gram = unit @ unit.T
            n = len(unit)
            cosines.append((gram.sum() - n) / (n * (n - 1)))
    if not cosines:
        raise ValueError("encoder_similarity needs texts of at least 2 tokens.")
    return float(np.mean(cosines))


def text_rows(
    token_ids: Iterable[Sequence[int]],
    *,
    batch_size: int = 32,
    max_length: int = 64,
) -> tuple[tf.data.Dataset, dict[str, np.ndarray]]:
    """LM-adaptation rows from tokenized texts, one text per row.

    Each text (at most ``max_length`` tokens) is split in the middle: the
    first half + ``</s>`` is the encoder input, the rest + ``</s>`` the
    target. Texts shorter than 4 tokens are skipped.

    Returns:
        ``(dataset, x)``: batches for `encoder_use` (the last incomplete batch
        dropped) and all rows' inputs, for `encoder_similarity`.
    """
    pairs = []
    for ids in token_ids:
        ids = [int(i) for i in ids][:max_length]
        if len(ids) >= 4:
            half = len(ids) // 2
            pairs.append((ids[:half] + [EOS_ID], ids[half:] + [EOS_ID]))
    if len(pairs) < 2:
        raise ValueError(
            f"Need at least 2 texts of 4 or more tokens; got {len(pairs)}."
        )
    enc_len = max(len(p) for p, _ in pairs)
    dec_len = max(len(t) for _, t in pairs)
    n = len(pairs)
    arrays = {
        "encoder_token_ids": np.full((n, enc_len), PAD_ID, "int32"),
        "encoder_segment_ids": np.zeros((n, enc_len), "int32"),
        "decoder_token_ids": np.full((n, dec_len), PAD_ID, "int32"),
        "decoder_segment_ids": np.zeros((n, dec_len), "int32"),
    }
    targets = np.full((n, dec_len), PAD_ID, "int32")
    weights = np.zeros((n, dec_len), "float32")
    for i, (prefix, target) in enumerate(pairs):
        arrays["encoder_token_ids"][i, : len(prefix)] = prefix
        arrays["encoder_segment_ids"][i, : len(prefix)] = 1
        decoder = [PAD_ID] + target[:-1]
        arrays["decoder_token_ids"][i, : len(decoder)] = decoder
        arrays["decoder_segment_ids"][i, : len(decoder)] = 1
        targets[i, : len(target)] = target
        weights[i, : len(target)] = 1.0
    batch = min(batch_size, n)
    dataset = tf.data.Dataset.from_tensor_slices((arrays, targets, weights)).batch(
        batch, drop_remainder=True
    )
    return dataset, arrays


def span_corruption_rows(
    token_ids: Iterable[Sequence[int]],
    *,
    sequence_length: int = 64,
    batch_size: int = 32,
    seed: int = 0,
) -> tf.data.Dataset | None:
    """T5 span-corruption batches cut from the concatenated texts.

    As in pretraining (15% noise, mean span 3), with fixed noise positions;
    `None` when the texts hold fewer tokens than one example needs.
    """
    lengths = span_corruption_lengths(sequence_length)
    flat = np.concatenate([np.asarray(ids, "int32") for ids in token_ids])
    count = len(flat) // lengths.tokens_length
    if count == 0:
        return None
    chunks = tf.data.Dataset.from_tensor_slices(
        flat[: count * lengths.tokens_length].reshape(count, -1)
    )
    rows = pretraining_objectives.span_corruption_rows(chunks, lengths, seed)
    return rows.batch(min(batch_size, count))


def check_backbone(
    backbone, token_ids: Iterable[Sequence[int]] | None = None, *, max_texts: int = 256
) -> dict[str, Any]:
    """The health figures of a backbone, on texts when given.

    Args:
        backbone: a `keras_hub.models.T5Backbone` (not modified).
        token_ids: tokenized texts (e.g. task inputs or corpus lines); without
            them only the embedding collapse is measured.
        max_texts: use at most this many texts.

    Returns:
        ``embedding_collapse``, and with texts ``encoder_similarity``,
        ``lm_adaptation_loss``, ``shuffled_encoder_loss``, ``encoder_use``,
        ``span_corruption_loss`` (``None`` for too little text),
        ``uniform_loss`` (log of the vocabulary size) and ``num_texts``.
    """
    report: dict[str, Any] = {"embedding_collapse": embedding_collapse(backbone)}
    if token_ids is None:
        return report
    texts = list(token_ids)[:max_texts]
    dataset, x = text_rows(texts)
    model = T5Pretrainer(backbone)
    model.compile(optimizer="sgd")
    report["encoder_similarity"] = encoder_similarity(model, x)
    report.update(encoder_use(model, dataset))
    span_rows = span_corruption_rows(texts)
    report["span_corruption_loss"] = (
        None
        if span_rows is None
        else float(model.evaluate(span_rows, verbose=0, return_dict=True)["loss"])
    )
    report["uniform_loss"] = math.log(backbone.vocabulary_size)
    report["num_texts"] = int(len(x["encoder_token_ids"]))
    return report


def health_warnings(report: dict[str, Any]) -> list[str]:
    """One message per figure that says a prompt cannot steer this backbone."""
    messages = []
    collapse = report.get("embedding_collapse")
    if collapse is not None and collapse > COLLAPSE_LIMIT:
        messages.append(
            f"token embeddings are collapsed (mean-row norm / row norm "
            f"{collapse:.3f} > {COLLAPSE_LIMIT}): every token is nearly the same "
            "vector (keras-hub's T5 initialiser, docs/keras_hub_t5_init.md)"
        )
    similarity = report.get("encoder_similarity")
    if similarity is not None and similarity > SIMILARITY_LIMIT:
        messages.append(
            f"the encoder outputs the same vector for every token (mean cosine "
            f"{similarity:.3f} > {SIMILARITY_LIMIT})"
        )
    loss, uniform = report.get("lm_adaptation_loss"), report.get("uniform_loss")
    if loss is not None and uniform and loss > UNTRAINED_LOSS_SHARE * uniform:
        messages.append(
            f"the backbone looks untrained: LM loss {loss:.2f} nats/token, "
            f"uniform guessing is {uniform:.2f}"
        )
    use = report.get("encoder_use")
    if use is not None and use < ENCODER_USE_LIMIT:
        messages.append(
            f"the decoder ignores the encoder: encoder use {use:.3f} nats/token "
            f"< {ENCODER_USE_LIMIT} (loss with shuffled encoder inputs minus "
            "loss with its own)"
        )
    return messages


def health_report(backbone, tokenizer, texts: Sequence[str] | None = None) -> dict:
    """`check_backbone` on `texts` (tokenized with `tokenizer`), plus its `warnings`."""
    from keras_prompt.models.t5_inputs import token_lists

    report = check_backbone(backbone, token_lists(tokenizer, texts) if texts else None)
    report["warnings"] = health_warnings(report)
    return report
