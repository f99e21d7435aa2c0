"""The serving graph: the signature functions an export traces.

`ServingGraph` turns a `PromptTunedT5` and a `PromptBank` into the
`tf.function`s of the export's signatures (see
`keras_prompt.serving.export_saved_model`): in-graph tokenization (TF Text's
SentencePiece ops, which stock TF Serving links), prompts looked up by task,
rank classification over verbalizers, majority votes over ensembles and
greedy decoding with the decoder's key/value caches, all through the model's
public forward pass (`encode`, `score_targets`, `initial_cache`,
`call_decoder_with_cache`).

Design notes (why the code looks the way it does):

* The signatures are `tf.function`s closing over the Keras model, traced once
  at export; Keras objects are not saved, only the TF graph they trace to.
* keras' TensorFlow backend implements `ops.slice_update` (used by keras-hub's
  attention caches) with `XlaDynamicUpdateSlice`, a tf2xla op outside core
  TF's kernel set. While tracing, `dynamic_update_slice` stands in (an exact
  core-TF equivalent: `tf.pad` + `tf.where`), so the graph holds core TF and
  TF Text ops only (checked by `saved_model_ops`).
* Examples of a batch never interact: masks cover the padding of the batch's
  longest input, decoding state is per row, and the verbalizers' token ids are
  constants of fixed shape. So an example's output does not depend on the
  other examples (or tasks) it is batched with.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import tensorflow as tf

from keras_prompt import compat
from keras_prompt.ensemble import vote as majority_vote
from keras_prompt.models import t5_inputs
from keras_prompt.serving.prompt_bank import PromptBank
from keras_prompt.serving.validation import (
    check_strings,
    padded_shape,
    static_shape,
    validate,
)

#: The optional signature for model evaluation (TFX Evaluator / TFMA):
#: serialized `tf.Example`s in a task's raw columns -> class `probabilities`.
EVAL_SIGNATURE = "evaluate_tf_examples"


# ----------------------------------------------------------------------
# Core-TF replacement for keras' XLA dynamic_update_slice.
# ----------------------------------------------------------------------
def dynamic_update_slice(inputs, updates, start_indices):
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


def piece_id(sentencepiece, piece: str) -> int:
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
class ServingGraph:
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
            piece_id(sentencepiece, piece) for piece in ("<pad>", "</s>")
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
        shape = padded_shape(prompt, 3)
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
        checked = validate(rules, prompt, after=(batch,))
        return static_shape(checked, [-1, length, width])

    def _task_ids(self, task, batch):
        """`(task, ids)`: the validated `[B]` names and their bank task ids."""
        task = check_strings(task, "task", batch)
        ids = tf.cast(self.module.task_table.lookup(task), tf.int32)
        rules = [
            (
                tf.reduce_all(ids >= 0),
                ["Unknown task(s):", tf.boolean_mask(task, ids < 0),
                 "; this export serves:", self.task_names],
            )
        ]
        return validate(rules, task, ids, after=(task,))

    def _encode(self, token_ids, mask, prompts):
        return self.model.encode(token_ids, mask, prompts)

    def _generate(self, encoded, token_mask):
        """Greedy decoding with the key/value caches; per-row stopping at `</s>`.

        Returns the decoded strings and the log-probability of the decoded
        ids (including `</s>` when it was produced).
        """
        model = self.model
        steps = self.max_decode_length
        batch = tf.shape(encoded)[0]
        # The cross-attention cache spans prompt + input.
        self_cache, cross_cache = model.initial_cache(
            batch, tf.shape(encoded)[1], steps
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
        logits, _, self_cache, cross_cache = model.call_decoder_with_cache(
            encoder_hidden_states=encoded,
            encoder_padding_mask=token_mask,
            decoder_token_ids=start,
            self_attention_cache=self_cache,
            self_attention_cache_update_index=0,
            cross_attention_cache=cross_cache,
            cross_attention_cache_update_index=0,
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
            logits, _, cache, _ = model.call_decoder_with_cache(
                encoder_hidden_states=encoded,
                encoder_padding_mask=token_mask,
                decoder_token_ids=last[:, None],
                self_attention_cache=cache,
                self_attention_cache_update_index=t,
                cross_attention_cache=cross_cache,
                cross_attention_cache_update_index=None,
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
        text = check_strings(text, "text")
        batch = tf.shape(text)[0]
        prompt = self._check_prompt(prompt, batch)
        token_ids, mask = self._tokenize(text)
        encoded, _ = self._encode(token_ids, mask, prompt)
        output_text, output_score = self._generate(encoded, mask)
        return {"output_text": output_text, "output_score": output_score}

    def classify(self, text, prompt, candidates):
        text = check_strings(text, "text")
        batch = tf.shape(text)[0]
        prompt = self._check_prompt(prompt, batch)
        shape = padded_shape(candidates, 2)
        rank = tf.rank(candidates)
        rows = tf.where(tf.equal(rank, 2), shape[0], 1)
        num = tf.where(tf.equal(rank, 2), shape[1], shape[0])
        candidates = validate(
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
        checked = validate(
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
        text = check_strings(text, "text")
        batch = tf.shape(text)[0]
        task, task_ids = self._task_ids(task, batch)
        prompt_ids = tf.gather(self.first_prompt, task_ids)
        prompt = tf.gather(self.module.prompt_bank, prompt_ids)
        token_ids, mask = self._tokenize(text)
        encoded, encoder_mask = self._encode(token_ids, mask, prompt)
        output_text, output_score = self._generate(encoded, mask)
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
        text = check_strings(text, "text")
        batch = tf.shape(text)[0]
        task, task_ids = self._task_ids(task, batch)
        counts = tf.gather(self.label_counts, task_ids)
        task_ids = validate(
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
        label, votes, num_prompts = majority_vote(
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
        examples = check_strings(examples, "examples")
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
        examples = check_strings(examples, "examples")
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
        with compat.core_tf_slice_update(dynamic_update_slice):
            with warnings.catch_warnings():
                # keras-hub's attention layers warn that they drop Keras
                # masks; the masks are passed explicitly.
                warnings.filterwarnings(
                    "ignore", message=".*does not support masking.*"
                )
                for name, (fn, specs) in functions.items():
                    function = tf.function(fn, input_signature=specs)
                    traced[name] = function.get_concrete_function()
                    if on_traced is not None:
                        on_traced()
        return traced
