"""Export a PromptTunedT5 as a TF Serving SavedModel: strings in, strings out.

The SavedModel holds the frozen T5 weights, the SentencePiece vocabulary and a
bank of prompts, and five signatures (see `export_saved_model`). Everything
runs in the graph, tokenization (TF Text's SentencePiece ops, which stock TF
Serving links) and greedy decoding with the decoder's key/value cache
included, so the artifact needs neither keras nor keras-prompt to load: the
stock `tensorflow_model_server` binary serves it.

Design notes (why the code looks the way it does):

* A `tf.Module` tracks the model's variables, the tokenizer resource, the
  prompt bank variable and the task table; the signatures are `tf.function`s
  closing over the Keras model, traced once at export. Keras objects are not
  saved, only the TF graph they trace to.
* keras' TensorFlow backend implements `ops.slice_update` (used by keras-hub's
  attention caches) with `XlaDynamicUpdateSlice`, a tf2xla op outside core
  TF's kernel set. While tracing, `_core_tf_ops()` swaps in an exact core-TF
  equivalent (`tf.pad` + `tf.where`), so the graph holds core TF and TF Text
  ops only (checked by `saved_model_ops`).
* Every input has an unknown-rank spec and is validated in the graph
  (`tf.debugging.Assert` checks run before any other op): a malformed request is refused
  with `InvalidArgument` and a message naming the problem, rather than failing
  somewhere inside the encoder or in the client library.
* Examples of a batch never interact: masks cover the padding of the batch's
  longest input, decoding state is per row, and the verbalizers' token ids are
  constants of fixed shape. So an example's output does not depend on the
  other examples (or tasks) it is batched with.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from keras_prompt import compat, files
from keras_prompt.models import t5_inputs
from keras_prompt.progress import ProgressBar
from keras_prompt.serving import client as serving_client
from keras_prompt.serving.prompt_bank import PromptBank
from keras_prompt.version import __version__

#: Name of the task that holds the model's own prompt when no bank is given.
DEFAULT_TASK = "default"
#: The export's metadata file, next to TF Serving's warmup file.
METADATA_FILE = "prompt_bank.json"
WARMUP_FILE = "tf_serving_warmup_requests"
#: Hidden name prefix of a version directory being written.
_STAGING_PREFIX = ".tmp-"
SIGNATURES = tuple(serving_client.SIGNATURE_INPUTS)
#: The optional signature for model evaluation (TFX Evaluator / TFMA):
#: serialized `tf.Example`s in a task's raw columns -> class `probabilities`.
EVAL_SIGNATURE = "evaluate_tf_examples"


# ----------------------------------------------------------------------
# Core-TF replacement for keras' XLA dynamic_update_slice.
# ----------------------------------------------------------------------
def _dynamic_update_slice(inputs, updates, start_indices):
    """`inputs` with `updates` written at `start_indices`; core TF ops only.

    Same semantics as XLA's DynamicUpdateSlice (start indices are clamped so
    the update fits) and exact: values are selected, never added.
    """
    inputs = tf.convert_to_tensor(inputs)
    updates = tf.cast(tf.convert_to_tensor(updates), inputs.dtype)
    shape = tf.shape(inputs)
    update_shape = tf.shape(updates)
    start = tf.stack([tf.cast(i, tf.int32) for i in start_indices])
    start = tf.clip_by_value(start, 0, shape - update_shape)
    paddings = tf.stack([start, shape - update_shape - start], axis=1)
    placed = tf.pad(updates, paddings)
    where = tf.pad(tf.ones_like(updates, dtype=tf.bool), paddings)
    return tf.ensure_shape(tf.where(where, placed, inputs), inputs.shape)


def _core_tf_ops():
    """Traces keras' `ops.slice_update` to core TF ops instead of an XLA op."""
    return compat.core_tf_slice_update(_dynamic_update_slice)


# ----------------------------------------------------------------------
# In-graph request validation.
# ----------------------------------------------------------------------
def _after(checks, *tensors):
    """`tensors`, made to depend on `checks` so a bad request fails on them."""
    with tf.control_dependencies(checks):
        out = tuple(tf.identity(t) for t in tensors)
    return out if len(out) > 1 else out[0]


def _validate(rules, *tensors, after=()):
    """Asserts `rules` (`(ok, message_parts)`), then returns `tensors`.

    Only the first failing rule fires (each rule is vacuous once an earlier
    one failed), and the asserts only run once the tensors in `after` (earlier
    validated inputs) are computed. So the error names the root problem
    whatever order the executor runs ops in, and no rule evaluates an op that
    could itself fail on a malformed input.
    """
    checks = []
    with tf.control_dependencies(list(after)):
        previous = tf.constant(True)
        for ok, message in rules:
            checks.append(
                tf.debugging.Assert(
                    tf.logical_or(ok, tf.logical_not(previous)), message, summarize=16
                )
            )
            previous = tf.logical_and(previous, ok)
    return _after(checks, *tensors)


def _padded_shape(tensor, rank: int):
    """`tf.shape(tensor)` padded with -1 to at least `rank` entries (never fails)."""
    return tf.concat([tf.shape(tensor), tf.fill([rank], -1)], axis=0)


def _static(tensor, shape):
    """`tensor` with static `shape` (-1: any), for a tensor already validated.

    A reshape rather than `tf.ensure_shape`: Grappler's shape inference
    unifies an EnsureShape's input with its declared shape and would then
    constant-fold the validation's own `tf.rank(input)` to the expected rank,
    silencing the rank check. A reshape's output shape stands alone.
    """
    return tf.reshape(tensor, shape)


def _check_strings(values, name: str, batch=None):
    """Validates a `[B]` string input (B >= 1, matching `batch` if given)."""
    shape = _padded_shape(values, 1)
    rules = [
        (
            tf.equal(tf.rank(values), 1),
            [f"`{name}` must be a 1-D string tensor [batch]; got shape",
             tf.shape(values)],
        ),
        (
            shape[0] > 0,
            [f"`{name}` is empty: a request needs at least one example"],
        ),
    ]
    if batch is not None:
        rules.append(
            (
                tf.equal(shape[0], batch),
                [f"`{name}` and `text` batch sizes differ:", shape[0], "vs", batch],
            )
        )
    after = () if batch is None else (batch,)
    return _static(_validate(rules, values, after=after), [-1])


def _majority_vote(scores, labels, row, batch, num_labels: int):
    """Prompt ensembling: `(label, votes, num_prompts)` per example.

    `scores` `[M, C]` and `labels` `[M]` are the rank-classification results
    of the M (example, prompt) rows, `row` `[M]` their example index. The
    label is the majority vote (paper section 6); a tie goes to the tied
    label with the highest mean log-likelihood over the ensemble, which keeps
    the result deterministic and uses the evidence the vote throws away.
    """
    votes = tf.math.unsorted_segment_sum(
        tf.one_hot(labels, num_labels, dtype=tf.int32), row, batch
    )
    num_prompts = tf.math.unsorted_segment_sum(tf.ones_like(row), row, batch)
    finite = tf.where(tf.math.is_finite(scores), scores, 0.0)
    mean = tf.math.unsorted_segment_sum(finite, row, batch) / tf.cast(
        tf.maximum(num_prompts, 1)[:, None], scores.dtype
    )
    top = tf.reduce_max(votes, axis=-1, keepdims=True)
    label = tf.argmax(
        tf.where(votes == top, mean, -np.inf), axis=-1, output_type=tf.int32
    )
    return label, votes, num_prompts


def _piece_id(sentencepiece, piece: str) -> int:
    """The id of a special piece (`<pad>`, `</s>`) in the SentencePiece model."""
    piece_id = int(sentencepiece.string_to_id(piece).numpy())
    if piece_id == int(sentencepiece.string_to_id("<unk>").numpy()):
        raise ValueError(
            f"The SentencePiece model has no {piece!r} piece; T5 needs <pad> and </s>."
        )
    return piece_id


# ----------------------------------------------------------------------
# The serving graph.
# ----------------------------------------------------------------------
class _ServingGraph:
    """Builds the signature functions; holds the model only while tracing."""

    def __init__(
        self,
        model,
        module: tf.Module,
        sentencepiece,
        vocabulary_size: int,
        bank: PromptBank,
        max_input_length: int,
        max_decode_length: int,
        default_task: str,
    ):
        self.model = model
        self.module = module
        self.sp = sentencepiece
        self.prompt_length, self.hidden_dim = model.prompt_shape
        self.max_input_length = max_input_length
        self.max_decode_length = max_decode_length
        self.default_task = default_task
        # Greedy decoding only picks ids the SentencePiece model can
        # detokenize: not T5's sentinels (<extra_id_N>, ids 32000-32099) nor
        # the embedding's padding rows, which have no text.
        self.num_choices = min(vocabulary_size, model.backbone.vocabulary_size)
        # T5 pads with <pad>, which is also the decoder's start token.
        self.pad_id, self.eos_id = (
            _piece_id(sentencepiece, piece) for piece in ("<pad>", "</s>")
        )

        stacked, indices = bank.stacked()
        self.tasks = bank.tasks
        self.max_prompts = max(len(v) for v in indices.values())
        ensemble_table = np.full((len(self.tasks), self.max_prompts), -1, "int32")
        for t, task in enumerate(self.tasks):
            ensemble_table[t, : len(indices[task])] = indices[task]
        self.first_prompt = tf.constant(ensemble_table[:, 0])
        self.ensemble_table = tf.constant(ensemble_table)

        # The verbalizers of every task, tokenized once at export: fixed
        # shapes keep an example's scores independent of its batch.
        self.max_labels = max([len(bank.verbalizers[t]) for t in self.tasks] + [1])
        words = np.full((len(self.tasks), self.max_labels), b"", dtype=object)
        counts = np.zeros(len(self.tasks), "int32")
        for t, task in enumerate(self.tasks):
            for c, word in enumerate(bank.verbalizers[task]):
                words[t, c] = word.encode("utf-8")
            counts[t] = len(bank.verbalizers[task])
        pieces = self.sp.tokenize(tf.constant(words.reshape(-1)))
        self._check_verbalizers(bank, pieces.row_lengths().numpy())
        ids, mask = self._targets(pieces)
        length = int(ids.shape[-1])
        shape = (len(self.tasks), self.max_labels, length)
        self.label_ids = tf.constant(tf.reshape(ids, shape).numpy())
        self.label_mask = tf.constant(tf.reshape(mask, shape).numpy())
        self.label_words = tf.constant(words)
        self.label_counts = tf.constant(counts)
        self.task_names = tf.constant(self.tasks)

        module.prompt_bank = tf.Variable(
            stacked, trainable=False, name="prompt_bank"
        )
        module.task_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(self.tasks),
                tf.range(len(self.tasks), dtype=tf.int64),
            ),
            default_value=-1,
        )

    def _check_verbalizers(self, bank: PromptBank, lengths: np.ndarray) -> None:
        """Refuses verbalizers that tokenize to nothing or would be truncated."""
        most = self.max_decode_length - 1
        lengths = lengths.reshape(len(self.tasks), self.max_labels)
        for t, task in enumerate(self.tasks):
            for c, word in enumerate(bank.verbalizers[task]):
                if not 1 <= lengths[t, c] <= most:
                    raise ValueError(
                        f"Verbalizer {word!r} of task {task!r} has {lengths[t, c]} "
                        f"tokens; rank classification needs 1 to {most} "
                        f"(max_decode_length {self.max_decode_length} minus </s>)."
                    )

    # -- tokenization ---------------------------------------------------
    def _tokenize(self, text):
        """`[B]` strings -> `[B, L]` ids + mask: tokens (truncated) + `</s>`.

        Same as training's preprocessing (`T5Seq2SeqLMPreprocessor`): at most
        `max_input_length - 1` tokens, then `</s>`, padded to the batch's
        longest row.
        """
        return t5_inputs.pack_inputs(
            self.sp.tokenize(text),
            end_id=self.eos_id,
            pad_id=self.pad_id,
            max_length=self.max_input_length,
        )

    def _targets(self, pieces):
        """Ragged `[M, (n)]` target pieces -> `[M, T]` decoder ids + mask."""
        return t5_inputs.pack_targets(
            pieces,
            end_id=self.eos_id,
            pad_id=self.pad_id,
            max_length=self.max_decode_length,
        )

    # -- model pieces ---------------------------------------------------
    def _check_prompt(self, prompt, batch):
        length, width = self.prompt_length, self.hidden_dim
        shape = _padded_shape(prompt, 3)
        rules = [
            (
                tf.equal(tf.rank(prompt), 3),
                [f"`prompt` must be float32 [batch, prompt_length={length}, "
                 f"hidden_dim={width}]; got shape", tf.shape(prompt)],
            ),
            (
                tf.equal(shape[1], length),
                ["prompt length", shape[1],
                 f"does not match prompt_length {length} of the model"],
            ),
            (
                tf.equal(shape[2], width),
                ["prompt width", shape[2],
                 f"does not match hidden size {width} of the model"],
            ),
            (
                tf.equal(shape[0], batch),
                ["`text` and `prompt` batch sizes differ:", batch, "vs", shape[0]],
            ),
            (
                tf.reduce_all(tf.math.is_finite(prompt)),
                ["`prompt` holds NaN or Inf values"],
            ),
        ]
        checked = _validate(rules, prompt, after=(batch,))
        return _static(checked, [-1, length, width])

    def _task_ids(self, task, batch):
        """`(task, ids)`: the validated `[B]` names and their bank task ids."""
        task = _check_strings(task, "task", batch)
        ids = tf.cast(self.module.task_table.lookup(task), tf.int32)
        rules = [
            (
                tf.reduce_all(ids >= 0),
                ["Unknown task(s):", tf.boolean_mask(task, ids < 0),
                 "; this export serves:", self.task_names],
            )
        ]
        return _validate(rules, task, ids, after=(task,))

    def _encode(self, token_ids, mask, prompts):
        return self.model.encode(token_ids, mask, prompts)

    def _generate(self, encoded, encoder_mask):
        """Greedy decoding with the key/value caches; per-row stopping at `</s>`.

        Returns the decoded strings and the log-probability of the decoded
        ids (including `</s>` when it was produced).
        """
        model = self.model
        steps = self.max_decode_length
        batch = tf.shape(encoded)[0]
        self_cache, cross_cache = model.initial_cache(
            batch, tf.shape(encoder_mask)[1], steps
        )
        positions = tf.range(steps)[None, :]

        def pick(logits, t, tokens, score, length, finished):
            log_probs = tf.nn.log_softmax(tf.cast(logits[:, 0, :], tf.float32))
            choice = tf.argmax(
                log_probs[:, : self.num_choices], axis=-1, output_type=tf.int32
            )
            choice = tf.where(finished, self.pad_id, choice)
            gained = tf.gather(log_probs, choice, batch_dims=1)
            score = score + tf.where(finished, 0.0, gained)
            length = length + tf.cast(~finished, tf.int32)
            tokens = tf.where(positions == t, choice[:, None], tokens)
            finished = finished | tf.equal(choice, self.eos_id)
            return choice, tokens, score, length, finished

        # Step 0 also fills the cross-attention cache over prompt + input.
        start = tf.fill([batch, 1], self.pad_id)
        logits, _, self_cache, cross_cache = model.decode_with_cache(
            start, encoded, encoder_mask, self_cache, 0, cross_cache, 0
        )
        state = pick(
            logits,
            0,
            tf.zeros([batch, steps], tf.int32),
            tf.zeros([batch], tf.float32),
            tf.zeros([batch], tf.int32),
            tf.zeros([batch], tf.bool),
        )

        def cond(t, cache, last, tokens, score, length, finished):
            return tf.logical_and(t < steps, ~tf.reduce_all(finished))

        def body(t, cache, last, tokens, score, length, finished):
            logits, _, cache, _ = model.decode_with_cache(
                last[:, None], encoded, encoder_mask, cache, t, cross_cache, None
            )
            state = pick(logits, t, tokens, score, length, finished)
            return (t + 1, cache, *state)

        _, _, _, tokens, score, length, finished = tf.while_loop(
            cond, body, (tf.constant(1), self_cache, *state)
        )
        # Text stops before `</s>`.
        text_length = length - tf.cast(finished, tf.int32)
        ragged = tf.RaggedTensor.from_tensor(tokens, lengths=text_length)
        text = self.sp.detokenize(ragged)
        return tf.ensure_shape(text, [None]), tf.ensure_shape(score, [None])

    def _score(self, encoded, encoder_mask, target_ids, target_mask):
        """Summed log-probabilities `[B, C]` of `[B, C, T]` decoder targets.

        The encoder output of each example is shared by its C candidates:
        rank classification as in `PromptTunedT5.score`.
        """
        return self.model.score_targets(encoded, encoder_mask, target_ids, target_mask)

    def _label_scores(self, encoded, encoder_mask, task_ids):
        """Scores `[B, Cmax]` of each row's task verbalizers (-inf = no label)."""
        scores = self._score(
            encoded,
            encoder_mask,
            tf.gather(self.label_ids, task_ids),
            tf.gather(self.label_mask, task_ids),
        )
        counts = tf.gather(self.label_counts, task_ids)
        valid = tf.range(self.max_labels)[None, :] < counts[:, None]
        return tf.where(valid, scores, -np.inf), counts

    # -- signatures -------------------------------------------------------
    def serving_default(self, text, prompt):
        text = _check_strings(text, "text")
        batch = tf.shape(text)[0]
        prompt = self._check_prompt(prompt, batch)
        token_ids, mask = self._tokenize(text)
        encoded, encoder_mask = self._encode(token_ids, mask, prompt)
        output_text, output_score = self._generate(encoded, encoder_mask)
        return {"output_text": output_text, "output_score": output_score}

    def classify(self, text, prompt, candidates):
        text = _check_strings(text, "text")
        batch = tf.shape(text)[0]
        prompt = self._check_prompt(prompt, batch)
        shape = _padded_shape(candidates, 2)
        rank = tf.rank(candidates)
        rows = tf.where(tf.equal(rank, 2), shape[0], 1)
        num = tf.where(tf.equal(rank, 2), shape[1], shape[0])
        candidates = _validate(
            [
                (
                    tf.logical_or(tf.equal(rank, 1), tf.equal(rank, 2)),
                    ["`candidates` must be strings [C] (shared) or [batch, C]; "
                     "got shape", tf.shape(candidates)],
                ),
                (num > 0, ["`candidates` is empty"]),
                (
                    tf.logical_or(tf.equal(rows, batch), tf.equal(rows, 1)),
                    ["`candidates` [batch, C] and `text` batch sizes differ:",
                     rows, "vs", batch],
                ),
            ],
            candidates,
            after=(batch, prompt),
        )
        table = tf.reshape(candidates, [rows, num])
        table = tf.broadcast_to(table, [batch, num])
        pieces = self.sp.tokenize(tf.reshape(table, [-1]))
        lengths = pieces.row_lengths()
        most = self.max_decode_length - 1
        checked = _validate(
            [
                (
                    tf.reduce_all(lengths > 0),
                    [
                        "`candidates` holds an empty candidate (no tokens); rank "
                        "classification needs non-empty labels"
                    ],
                ),
                (
                    tf.reduce_all(lengths <= most),
                    [
                        "`candidates` holds a candidate of",
                        tf.reduce_max(lengths),
                        f"tokens; at most {most} fit max_decode_length "
                        f"{self.max_decode_length} (with </s>), and truncating "
                        "would make different candidates tie",
                    ],
                ),
            ],
            pieces.flat_values,
            after=(table,),
        )
        pieces = pieces.with_flat_values(checked)
        token_ids, mask = self._tokenize(text)
        encoded, encoder_mask = self._encode(token_ids, mask, prompt)
        target_ids, target_mask = self._targets(pieces)
        target_ids = tf.reshape(target_ids, [batch, num, -1])
        target_mask = tf.reshape(target_mask, [batch, num, -1])
        scores = self._score(encoded, encoder_mask, target_ids, target_mask)
        label = tf.argmax(scores, axis=-1, output_type=tf.int32)
        return {
            "scores": tf.ensure_shape(scores, [None, None]),
            "label": tf.ensure_shape(label, [None]),
            "label_text": tf.ensure_shape(
                tf.gather(table, label, batch_dims=1), [None]
            ),
        }

    def by_task(self, text, task):
        text = _check_strings(text, "text")
        batch = tf.shape(text)[0]
        task, task_ids = self._task_ids(task, batch)
        prompt_ids = tf.gather(self.first_prompt, task_ids)
        prompt = tf.gather(self.module.prompt_bank, prompt_ids)
        token_ids, mask = self._tokenize(text)
        encoded, encoder_mask = self._encode(token_ids, mask, prompt)
        output_text, output_score = self._generate(encoded, encoder_mask)
        scores, counts = self._label_scores(encoded, encoder_mask, task_ids)
        label = tf.argmax(scores, axis=-1, output_type=tf.int32)
        has_labels = counts > 0
        words = tf.gather(tf.gather(self.label_words, task_ids), label, batch_dims=1)
        return {
            "output_text": output_text,
            "output_score": output_score,
            "label": tf.ensure_shape(tf.where(has_labels, label, -1), [None]),
            "label_text": tf.ensure_shape(tf.where(has_labels, words, ""), [None]),
        }

    def ensemble(self, text, task):
        text = _check_strings(text, "text")
        batch = tf.shape(text)[0]
        task, task_ids = self._task_ids(task, batch)
        counts = tf.gather(self.label_counts, task_ids)
        task_ids = _validate(
            [
                (
                    tf.reduce_all(counts > 0),
                    ["`ensemble` needs tasks with verbalizers; these have none:",
                     tf.boolean_mask(task, counts <= 0)],
                )
            ],
            task_ids,
            after=(task_ids,),
        )
        token_ids, mask = self._tokenize(text)
        # All K prompts of every example go through the model as one batch.
        table = tf.gather(self.ensemble_table, task_ids)  # [B, K]
        where = tf.where(table >= 0)  # [M, 2] (example, prompt slot)
        row = tf.cast(where[:, 0], tf.int32)
        prompt_ids = tf.gather_nd(table, where)
        row_tasks = tf.gather(task_ids, row)
        encoded, encoder_mask = self._encode(
            tf.gather(token_ids, row),
            tf.gather(mask, row),
            tf.gather(self.module.prompt_bank, prompt_ids),
        )
        scores, _ = self._label_scores(encoded, encoder_mask, row_tasks)
        labels = tf.argmax(scores, axis=-1, output_type=tf.int32)  # [M]
        prompt_labels = tf.tensor_scatter_nd_update(
            tf.fill([batch, self.max_prompts], -1), where, labels
        )
        label, votes, num_prompts = _majority_vote(
            scores, labels, row, batch, self.max_labels
        )
        words = tf.gather(tf.gather(self.label_words, task_ids), label, batch_dims=1)
        return {
            "label": tf.ensure_shape(label, [None]),
            "label_text": tf.ensure_shape(words, [None]),
            "prompt_labels": tf.ensure_shape(
                prompt_labels, [None, self.max_prompts]
            ),
            "votes": tf.ensure_shape(votes, [None, self.max_labels]),
            "num_prompts": tf.ensure_shape(num_prompts, [None]),
        }

    def serve_tf_examples(self, examples):
        examples = _check_strings(examples, "examples")
        features = tf.io.parse_example(
            examples,
            {
                "text": tf.io.FixedLenFeature([], tf.string),
                "task": tf.io.FixedLenFeature(
                    [], tf.string, default_value=self.default_task
                ),
            },
        )
        return self.by_task(features["text"], features["task"])

    def evaluate_tf_examples(self, examples, task):
        """Class probabilities of `task` examples in their raw columns.

        The examples are `tf.Example`s with the task's own feature columns
        (`sentence` for SST-2, ...), as TFX's CsvExampleGen writes them from a
        task CSV; the T5 input is built in-graph exactly as
        `Task.format_input` does, then rank-classified with the task's
        prompt. The softmax over the verbalizers' log-likelihoods is what
        TFMA's `SparseCategoricalAccuracy` (and TFX's Evaluator) reads.
        """
        examples = _check_strings(examples, "examples")
        features = tf.io.parse_example(
            examples,
            {
                feature: tf.io.FixedLenFeature([], tf.string)
                for _, feature in task.input_fields
            },
        )
        pieces = [task.name]
        for key, feature in task.input_fields:
            pieces.append(
                tf.strings.join([f"{key}: ", tf.strings.strip(features[feature])])
            )
        text = tf.strings.join(pieces, separator=" ")
        batch = tf.shape(text)[0]
        _, task_ids = self._task_ids(tf.fill([batch], task.name), batch)
        prompt = tf.gather(
            self.module.prompt_bank, tf.gather(self.first_prompt, task_ids)
        )
        token_ids, mask = self._tokenize(text)
        encoded, encoder_mask = self._encode(token_ids, mask, prompt)
        scores, _ = self._label_scores(encoded, encoder_mask, task_ids)
        scores = scores[:, : task.num_classes]
        return {
            "probabilities": tf.ensure_shape(
                tf.nn.softmax(scores, axis=-1), [None, task.num_classes]
            ),
            "label": tf.ensure_shape(
                tf.argmax(scores, axis=-1, output_type=tf.int32), [None]
            ),
        }

    def signatures(self, on_traced=None, eval_task=None) -> dict[str, Any]:
        """The concrete functions by signature name; ``on_traced()`` is
        called after each (tracing is most of an export's time)."""
        def spec(name, dtype):
            return tf.TensorSpec(shape=None, dtype=dtype, name=name)

        text = spec("text", tf.string)
        prompt = spec("prompt", tf.float32)
        task = spec("task", tf.string)
        functions = {
            "serving_default": (self.serving_default, [text, prompt]),
            "classify": (
                self.classify,
                [text, prompt, spec("candidates", tf.string)],
            ),
            "by_task": (self.by_task, [text, task]),
            "ensemble": (self.ensemble, [text, task]),
            "serve_tf_examples": (
                self.serve_tf_examples,
                [spec("examples", tf.string)],
            ),
        }
        if eval_task is not None:
            functions[EVAL_SIGNATURE] = (
                lambda examples: self.evaluate_tf_examples(examples, eval_task),
                [spec("examples", tf.string)],
            )
        traced = {}
        for name, (fn, specs) in functions.items():
            function = tf.function(fn, input_signature=specs)
            traced[name] = function.get_concrete_function()
            if on_traced is not None:
                on_traced()
        return traced


# ----------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------
def _sentencepiece_proto(model, tokenizer) -> bytes:
    if tokenizer is None:
        tokenizer = getattr(getattr(model, "preprocessor", None), "tokenizer", None)
        if tokenizer is None:
            raise ValueError(
                "The model has no preprocessor, so its vocabulary is unknown; pass "
                "`tokenizer=` (a keras-hub T5Tokenizer, spiece.model bytes or path)."
            )
    if isinstance(tokenizer, (bytes, bytearray)):
        return bytes(tokenizer)
    if isinstance(tokenizer, (str, os.PathLike)):
        return Path(tokenizer).read_bytes()
    proto = getattr(tokenizer, "proto", None)
    if not proto:
        raise ValueError(
            f"{type(tokenizer).__name__} has no SentencePiece proto; the export "
            "needs a SentencePiece vocabulary (T5Tokenizer)."
        )
    return bytes(proto)


def _tf_variables(model) -> list[tf.Variable]:
    """The `tf.Variable`s behind the model's Keras variables.

    The module tracks these rather than the Keras variables: a Keras variable
    exports as a second `tf.Variable` wrapping the first, so the checkpoint
    restore op fills one copy while the signatures read the other. TF2's
    object-based loader copes, but TF Serving's C++ loader (restore op, then
    `Session::Run`) would fail with "Could not find variable".
    """
    variables = []
    for weight in model.weights:
        value = weight.value
        if not isinstance(value, tf.Variable):
            raise TypeError(
                f"Weight {weight.path} is not backed by a tf.Variable "
                f"({type(value).__name__}); export needs the TensorFlow backend."
            )
        variables.append(value)
    return variables


def _resolve_bank(model, prompt_bank) -> PromptBank:
    if prompt_bank is None:
        return PromptBank({DEFAULT_TASK: [model.get_prompt()]})
    if isinstance(prompt_bank, PromptBank):
        bank = prompt_bank
    elif isinstance(prompt_bank, Mapping):
        bank = PromptBank.from_files(prompt_bank)
    else:
        raise TypeError(
            "`prompt_bank` must be a PromptBank or a dict task -> prompt file(s) "
            f"or array(s); got {type(prompt_bank).__name__}."
        )
    bank.check_shape(model.prompt_shape)
    from keras_prompt.models.identity import backbone_fingerprint

    bank.check_backbone(backbone_fingerprint(model.backbone), model.backbone.hidden_dim)
    return bank


def _next_version(export_dir: Path) -> int:
    versions = [int(p.name) for p in export_dir.glob("*") if p.name.isdigit()]
    return max(versions, default=0) + 1


def saved_model_ops(path: str | os.PathLike) -> set[str]:
    """Names of every op in a SavedModel's graph and function library.

    Used to check that an export holds only ops the stock model server has
    kernels for (core TF and TF Text).
    """
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    ops = set()
    for meta_graph in proto.meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    functions = {
        f.signature.name
        for m in proto.meta_graphs
        for f in m.graph_def.library.function
    }
    return ops - functions


def export_saved_model(
    model,
    export_dir: str | os.PathLike,
    version: int | None = 1,
    prompt_bank: PromptBank | Mapping[str, Any] | None = None,
    *,
    max_input_length: int | None = None,
    max_decode_length: int | None = None,
    tokenizer: Any = None,
    default_task: str | None = None,
    warmup: bool = True,
    overwrite: bool = False,
    verbose: int | str = 0,
    eval_task: Any = None,
) -> Path:
    """Writes `export_dir/<version>/`, a SavedModel TF Serving loads as is.

    Signatures (inputs -> outputs; `B` is the batch, `P, H` the prompt shape):

    * `serving_default`: `text` string `[B]`, `prompt` float32 `[B, P, H]` ->
      `output_text` string `[B]` (greedy decoding, up to `max_decode_length`
      tokens, stopping at `</s>`), `output_score` float32 `[B]` (the decoded
      ids' log-probability, `</s>` included).
    * `classify`: `text`, `prompt`, `candidates` string `[C]` or `[B, C]` ->
      `scores` float32 `[B, C]` (summed log-likelihood of each candidate),
      `label` int32 `[B]` (argmax index), `label_text` string `[B]`.
    * `by_task`: `text`, `task` string `[B]` -> `output_text`, `output_score`,
      and rank classification over the task's verbalizers: `label` (-1 for
      tasks without verbalizers) and `label_text`. Tasks may mix in a batch.
    * `ensemble`: `text`, `task` -> `label`, `label_text` (majority vote over
      the task's K bank prompts, ties to the best mean log-likelihood),
      `prompt_labels` int32 `[B, Kmax]` (-1 pads), `votes` int32 `[B, Cmax]`,
      `num_prompts` int32 `[B]`. All `B x K` rows run as one batch.
    * `serve_tf_examples`: `examples` (serialized `tf.Example`s with bytes
      features `text` and optional `task`) -> the outputs of `by_task`.

    Text longer than `max_input_length - 1` SentencePiece tokens is truncated
    (then `</s>` is appended), as in training; empty text is valid. Malformed
    requests fail with `InvalidArgument` and a message saying what is wrong.

    The version directory is written under a temporary name and renamed when
    complete, so a server polling `export_dir` never loads half an export. Its
    files and directories get the permissions a plain `open()`/`mkdir` gives
    under the caller's umask (the server may run as another user). A failed
    export leaves nothing behind, and the next export removes what a killed
    one left.

    Args:
        model: a `PromptTunedT5`; its weights are copied into the export.
        export_dir: the model's base path (TF Serving's `base_path`).
        version: the version directory; `None` picks the next free number.
        prompt_bank: a `PromptBank`, a dict task -> prompt file(s) (see
            `PromptBank.from_files`), or `None` for a bank holding the model's
            own prompt under the task name `"default"`.
        max_input_length: encoder tokens per example, `</s>` included; default
            the preprocessor's `encoder_sequence_length`, else 512.
        max_decode_length: most decoded tokens, `</s>` included; a `classify`
            candidate or verbalizer may have up to `max_decode_length - 1`
            tokens (longer ones are refused rather than truncated into ties);
            default the preprocessor's `decoder_sequence_length`, else 32.
        tokenizer: the SentencePiece vocabulary when the model has no
            preprocessor (keras-hub T5Tokenizer, `spiece.model` path or bytes).
        default_task: `serve_tf_examples`'s task for examples without one;
            default the bank's first task.
        warmup: write `assets.extra/tf_serving_warmup_requests` (one small
            request per signature), which the server replays at load time so
            the first real request does not pay for graph initialisation.
        overwrite: replace an existing version directory.
        verbose: 0 (silent), 1, 2 or `"auto"`: a Keras progress bar on stderr
            over the signatures traced and the files written
            (`keras_prompt.progress`).
        eval_task: a task (name or `keras_prompt.data.Task`) in the bank: adds
            the signature `evaluate_tf_examples` (serialized `tf.Example`s in
            the task's raw columns, e.g. `sentence` -> `probabilities [B, C]`,
            `label [B]`), which TFX's Evaluator scores with TFMA.

    Returns:
        The path of the written version directory.
    """
    preprocessor = getattr(model, "preprocessor", None)
    if max_input_length is None:
        max_input_length = getattr(preprocessor, "encoder_sequence_length", None) or 512
    if max_decode_length is None:
        max_decode_length = (
            getattr(preprocessor, "decoder_sequence_length", None) or 32
        )
    for name, value in (
        ("max_input_length", max_input_length),
        ("max_decode_length", max_decode_length),
    ):
        if not isinstance(value, (int, np.integer)) or value < 2:
            raise ValueError(f"`{name}` must be an integer >= 2; got {value!r}.")
    bank = _resolve_bank(model, prompt_bank)
    if default_task is None:
        default_task = bank.tasks[0]
    elif default_task not in bank.prompts:
        raise ValueError(
            f"`default_task` {default_task!r} is not in the bank ({bank.tasks})."
        )
    if version is not None and (
        not isinstance(version, (int, np.integer))
        or isinstance(version, bool)
        or version < 0
    ):
        raise ValueError(f"`version` must be an integer >= 0; got {version!r}.")
    export_dir = Path(export_dir)
    if export_dir.exists() and not export_dir.is_dir():
        raise FileExistsError(f"{export_dir} exists and is not a directory.")
    if version is not None:
        _check_free(export_dir / str(int(version)), overwrite)

    import tensorflow_text as tf_text

    proto = _sentencepiece_proto(model, tokenizer)
    module = tf.Module(name="keras_prompt_serving")
    module.model_variables = _tf_variables(model)
    module.tokenizer = tf_text.SentencepieceTokenizer(model=proto, out_type=tf.int32)
    vocabulary_size = int(module.tokenizer.vocab_size().numpy())
    graph = _ServingGraph(
        model,
        module,
        module.tokenizer,
        vocabulary_size,
        bank,
        int(max_input_length),
        int(max_decode_length),
        default_task,
    )
    if eval_task is not None:
        from keras_prompt.data import get_task

        eval_task = get_task(eval_task)
        if eval_task.name not in bank.prompts or not bank.verbalizers.get(
            eval_task.name
        ):
            raise ValueError(
                f"`eval_task` {eval_task.name!r} needs a prompt with verbalizers "
                f"in the bank; the bank has {bank.tasks}."
            )
    bar = ProgressBar(
        len(SIGNATURES) + 1 + (eval_task is not None),
        verbose,
        unit_name="stage",
        label=f"exporting to {export_dir}",
    )
    with _core_tf_ops(), warnings.catch_warnings():
        # keras-hub's attention layers warn that they drop Keras masks; the
        # masks are passed explicitly, so the warning is noise here.
        warnings.filterwarnings("ignore", message=".*does not support masking.*")
        signatures = graph.signatures(on_traced=bar.add, eval_task=eval_task)

    metadata = {
        "format_version": 1,
        "keras_prompt_version": __version__,
        "prompt_shape": list(model.prompt_shape),
        "max_input_length": int(max_input_length),
        "max_decode_length": int(max_decode_length),
        "default_task": default_task,
        "tasks": bank.metadata(),
        "signatures": {
            name: {
                "inputs": list(serving_client.SIGNATURE_INPUTS[name]),
                "outputs": list(serving_client.SIGNATURE_OUTPUTS[name]),
            }
            for name in SIGNATURES
        },
        "model": model.prompt_metadata()["backbone"],
    }
    if eval_task is not None:
        metadata["signatures"][EVAL_SIGNATURE] = {
            "inputs": ["examples"],
            "outputs": ["probabilities", "label"],
            "task": eval_task.name,
            "features": [feature for _, feature in eval_task.input_fields],
        }

    created = _missing_directories(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    try:
        # Versions a killed export left half-written (nobody holds their lock).
        files.remove_stale(export_dir, [f"{_STAGING_PREFIX}*"])
        if version is None:
            version = _next_version(export_dir)
        target = export_dir / str(int(version))
        _check_free(target, overwrite)
        with files.staging_directory(
            export_dir, f"{_STAGING_PREFIX}{int(version)}-"
        ) as temp:
            tf.saved_model.save(module, str(temp), signatures=signatures)
            extra = temp / "assets.extra"
            extra.mkdir(exist_ok=True)
            (extra / METADATA_FILE).write_text(
                json.dumps(metadata, indent=2, sort_keys=True) + "\n",
                encoding="utf-8",
            )
            if warmup:
                _write_warmup(extra / WARMUP_FILE, bank, default_task)
            if target.exists():
                shutil.rmtree(target)
            os.replace(temp, target)
        with bar:
            bar.add(1)
    except BaseException:
        # A failed export leaves nothing behind, not even the base directory.
        for directory in created:
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    files.sync_directory(export_dir)
    return target


def _check_free(target: Path, overwrite: bool) -> None:
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"{target} already exists; pick another `version` (TF Serving "
            "versions are immutable) or pass `overwrite=True`."
        )


def _missing_directories(path: Path) -> list[Path]:
    """The directories `path.mkdir(parents=True)` would create, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _write_warmup(path: Path, bank: PromptBank, task: str) -> None:
    """One batch-1 request per signature, in TF Serving's warmup format."""
    from tensorflow_serving.apis import prediction_log_pb2

    prompt = bank.prompts[task][0]
    labelled = [t for t in bank.tasks if bank.verbalizers[t]]
    requests = {
        "serving_default": dict(text=["warmup"], prompt=prompt),
        "classify": dict(text=["warmup"], prompt=prompt, candidates=["yes", "no"]),
        "by_task": dict(text=["warmup"], task=[task]),
        "serve_tf_examples": dict(text=["warmup"], task=[task]),
    }
    if labelled:
        requests["ensemble"] = dict(text=["warmup"], task=[labelled[0]])
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in requests.items():
            request = serving_client.predict_request("warmup", signature, **inputs)
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
