"""Export a PromptTunedT5 as a TF Serving SavedModel: strings in, strings out.

The SavedModel holds the frozen T5 weights, the SentencePiece vocabulary and a
bank of prompts, and the signatures of `keras_prompt.serving.graph` (see
`export_saved_model`). Everything runs in the graph, so the artifact needs
neither keras nor keras-prompt to load: the stock `tensorflow_model_server`
binary serves it.

This module is the writer: it checks the arguments, has the graph traced,
and writes the version directory atomically. A `tf.Module` tracks the
model's variables, the tokenizer resource, the prompt bank variable and the
task table.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from keras_prompt import files
from keras_prompt.progress import ProgressBar
from keras_prompt.serving import client as serving_client
from keras_prompt.serving.graph import EVAL_SIGNATURE, ServingGraph
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
        max_decode_length = getattr(preprocessor, "decoder_sequence_length", None) or 32
    lengths = _check_lengths(max_input_length, max_decode_length)
    bank = _resolve_bank(model, prompt_bank)
    default_task = _check_default_task(bank, default_task)
    export_dir = _check_target(export_dir, version, overwrite)
    module, graph = _serving_module(model, tokenizer, bank, lengths, default_task)
    if eval_task is not None:
        eval_task = _check_eval_task(eval_task, bank)
    bar = ProgressBar(
        len(SIGNATURES) + 1 + (eval_task is not None),
        verbose,
        unit_name="stage",
        label=f"exporting to {export_dir}",
    )
    signatures = graph.signatures(on_traced=bar.add, eval_task=eval_task)
    metadata = _metadata(model, bank, lengths, default_task, eval_task)
    created = _missing_directories(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    try:
        target = _write_version(
            export_dir,
            version,
            overwrite,
            module,
            signatures,
            metadata,
            bank if warmup else None,
            default_task,
        )
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


def _check_lengths(max_input_length, max_decode_length) -> tuple[int, int]:
    for name, value in (
        ("max_input_length", max_input_length),
        ("max_decode_length", max_decode_length),
    ):
        if not isinstance(value, (int, np.integer)) or value < 2:
            raise ValueError(f"`{name}` must be an integer >= 2; got {value!r}.")
    return int(max_input_length), int(max_decode_length)


def _check_default_task(bank: PromptBank, default_task: str | None) -> str:
    if default_task is None:
        return bank.tasks[0]
    if default_task not in bank.prompts:
        raise ValueError(
            f"`default_task` {default_task!r} is not in the bank ({bank.tasks})."
        )
    return default_task


def _check_target(export_dir, version, overwrite: bool) -> Path:
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
    return export_dir


def _check_eval_task(eval_task, bank: PromptBank):
    from keras_prompt.data import get_task

    eval_task = get_task(eval_task)
    if eval_task.name not in bank.prompts or not bank.verbalizers.get(eval_task.name):
        raise ValueError(
            f"`eval_task` {eval_task.name!r} needs a prompt with verbalizers "
            f"in the bank; the bank has {bank.tasks}."
        )
    return eval_task


def _serving_module(model, tokenizer, bank, lengths, default_task):
    """The `tf.Module` to save, and the graph whose signatures it serves."""
    import tensorflow_text as tf_text

    proto = _sentencepiece_proto(model, tokenizer)
    module = tf.Module(name="keras_prompt_serving")
    module.model_variables = _tf_variables(model)
    module.tokenizer = tf_text.SentencepieceTokenizer(model=proto, out_type=tf.int32)
    vocabulary_size = int(module.tokenizer.vocab_size().numpy())
    graph = ServingGraph(
        model, module, module.tokenizer, vocabulary_size, bank, *lengths, default_task
    )
    return module, graph


def _metadata(model, bank, lengths, default_task, eval_task) -> dict[str, Any]:
    """`assets.extra/prompt_bank.json`: what the export serves, and how."""
    metadata = {
        "format_version": 1,
        "keras_prompt_version": __version__,
        "prompt_shape": list(model.prompt_shape),
        "max_input_length": lengths[0],
        "max_decode_length": lengths[1],
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
    return metadata


def _write_version(
    export_dir, version, overwrite, module, signatures, metadata, warmup_bank, task
) -> Path:
    """Writes the version directory under a temporary name, then renames it."""
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
            json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        if warmup_bank is not None:
            _write_warmup(extra / WARMUP_FILE, warmup_bank, task)
        if target.exists():
            shutil.rmtree(target)
        os.replace(temp, target)
    return target


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
