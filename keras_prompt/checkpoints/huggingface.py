"""Hugging Face T5 checkpoints in and out of keras-hub's ``T5Backbone``.

keras-hub 0.32 converts many Hugging Face models but not T5, and most T5
checkpoints people want to prompt-tune (T5 1.0, T5 1.1, LM-adapted T5, Flan-T5
and their fine-tunes) only exist in the Hugging Face layout. This module reads
such a checkpoint directory without needing ``torch`` or ``transformers``, and
writes a backbone back in that layout:

* ``config.json`` decides the architecture, interpreted as
  ``transformers.T5Config`` does (``convert_t5.parse_config``).
* Weights come from ``model.safetensors``, a sharded
  ``model.safetensors.index.json`` or the legacy TensorFlow ``tf_model.h5``
  (``hf_weights.HFWeightLoader``).
* ``spiece.model`` is the SentencePiece vocabulary.

The per-model mapping lives in ``convert_t5`` (import) and ``export_t5``
(export), shaped like keras-hub's converters; this module strings them
together and writes files atomically. Everything keras-hub's T5 cannot
represent exactly is refused with a ``HFCheckpointError`` before a single
weight is copied, because a silently approximated import would only show up
later as poor prompt-tuning results.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import keras
import keras_hub

from keras_prompt.checkpoints import convert_t5, export_t5
from keras_prompt.checkpoints.errors import HFCheckpointError
from keras_prompt.checkpoints.hf_weights import HFWeightLoader
from keras_prompt.checkpoints.safetensors_io import write_safetensors
from keras_prompt.files import require_new_dir, staged_dir
from keras_prompt.progress import ProgressBar

__all__ = [
    "HFCheckpointError",
    "convert_hf_checkpoint",
    "export_hf_checkpoint",
    "load_hf_t5",
]

CONFIG_FILE = convert_t5.CONFIG_FILE
SPIECE_FILE = convert_t5.SPIECE_FILE


def load_hf_t5(
    checkpoint_dir: str | os.PathLike,
    dtype: str | keras.DTypePolicy | None = None,
    verbose: int | str = 0,
) -> tuple[keras_hub.models.T5Backbone, keras_hub.models.T5Tokenizer]:
    """Load a Hugging Face T5 checkpoint as a keras-hub backbone and tokenizer.

    Every name, shape and config field is validated before the backbone is
    built, so a checkpoint that does not match keras-hub's T5 fails fast with
    an error that names the offending file, field or tensor.

    T5 1.0 checkpoints (tied embeddings, logits scaled by ``d_model**-0.5``)
    become ``tie_embedding_weights=True`` backbones, whose
    ``T5Seq2SeqLM`` applies the same scaling. Unscaled checkpoints (T5 1.1,
    LM-adapted, Flan-T5) become untied backbones whose reverse embedding is
    the transposed ``lm_head``, or a copy of the embedding where transformers
    5 stored the head only once. A scaled model with its own ``lm_head`` has
    the scale folded into that head, since keras-hub scales only tied models.

    Args:
        checkpoint_dir: A directory written by ``save_pretrained`` plus the
            model's ``spiece.model``.
        dtype: The Keras dtype policy of the backbone. ``None`` uses the Keras
            default (float32) whatever the checkpoint's storage dtype is, since
            prompt tuning is usually run in full precision.
        verbose: 0 (silent), 1, 2 or ``"auto"``: a Keras progress bar over
            the tensors on stderr (``keras_prompt.progress``).

    Returns:
        A ``(backbone, tokenizer)`` tuple.

    Example:

    ```python
    from keras_prompt.checkpoints import load_hf_t5
    backbone, tokenizer = load_hf_t5("t5-small-lm-adapt")  # a save_pretrained dir
    ```
    """
    checkpoint_dir = _require_dir(checkpoint_dir)
    config_path = checkpoint_dir / CONFIG_FILE
    config = convert_t5.read_config(config_path)
    spec = convert_t5.parse_config(config, config_path)
    loader = HFWeightLoader(checkpoint_dir)
    tokenizer = convert_t5.convert_tokenizer(
        keras_hub.models.T5Tokenizer, checkpoint_dir, vocabulary_size=spec.vocab_size
    )
    embedding_name = convert_t5.check_tensors(
        loader.tensors, convert_t5.expected_shapes(spec), spec, loader.source
    )
    tie, _ = convert_t5.resolve_lm_head(
        loader.tensors, loader.get_tensor(embedding_name), spec
    )
    backbone_config = convert_t5.convert_backbone_config(config, config_path)
    backbone_config["tie_embedding_weights"] = tie
    backbone = convert_t5.backbone_cls(**backbone_config, dtype=dtype)
    with port_progress(backbone, loader, verbose, f"importing {loader.source}"):
        convert_t5.convert_weights(backbone, loader, config)
    return backbone, tokenizer


@contextmanager
def port_progress(backbone, loader, verbose: int | str, label: str):
    """A progress bar over ``convert_weights``' ports into ``backbone``."""
    # The embedding, an untied head (assigned, not ported: the bar closes
    # on exit) and every other weight.
    head = 0 if backbone.tie_embedding_weights else 1
    total = 1 + head + len(convert_t5.weight_plan(backbone))
    with ProgressBar(total, verbose, unit_name="tensor", label=label) as bar:
        loader.progress = bar
        try:
            yield bar
        finally:
            loader.progress = None


def convert_hf_checkpoint(
    checkpoint_dir: str | os.PathLike,
    preset_dir: str | os.PathLike,
    verbose: int | str = 0,
) -> Path:
    """Convert a Hugging Face T5 checkpoint into a keras-hub preset directory.

    The preset is assembled in a temporary directory beside ``preset_dir`` and
    renamed into place only once complete, so an interrupted or failed
    conversion never leaves a half-written preset that ``from_preset`` would
    later half-load.

    The result loads with ``keras_hub.models.T5Backbone.from_preset``,
    ``T5Tokenizer.from_preset``, ``T5Seq2SeqLMPreprocessor.from_preset`` and
    ``T5Seq2SeqLM.from_preset``, with only keras-hub installed.

    Args:
        checkpoint_dir: The Hugging Face checkpoint directory, as for
            ``load_hf_t5``.
        preset_dir: Where to write the preset. It must not exist, or be an
            empty directory, so an existing preset is never overwritten.

    Returns:
        ``preset_dir`` as a ``Path``.
    """
    preset_dir = require_new_dir(Path(preset_dir))
    backbone, tokenizer = load_hf_t5(checkpoint_dir, verbose=verbose)

    with staged_dir(preset_dir) as staging:
        backbone.save_to_preset(str(staging))
        tokenizer.save_to_preset(str(staging))
        if hasattr(keras_hub.models, "T5Seq2SeqLMPreprocessor"):
            # keras-hub < 0.32 (the TFX stack) has no such class to save;
            # PromptTunedT5.from_preset builds its preprocessor itself.
            preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(tokenizer=tokenizer)
            preprocessor.save_to_preset(str(staging))
    return preset_dir


def export_hf_checkpoint(
    preset: str | os.PathLike,
    out_dir: str | os.PathLike,
    dtype: str = "float32",
    verbose: int | str = 0,
) -> Path:
    """Write a T5 as a Hugging Face checkpoint directory.

    ``out_dir`` gets ``config.json``, ``model.safetensors``, ``spiece.model``
    and ``tokenizer_config.json``, which
    ``transformers.T5ForConditionalGeneration.from_pretrained(out_dir)`` and
    ``T5Tokenizer.from_pretrained(out_dir)`` load, and which
    :func:`load_hf_t5` imports back to identical weights. Tied keras-hub
    backbones are written as T5 1.0 (tied, logits scaled by
    ``d_model**-0.5``), untied ones as T5 1.1 (separate ``lm_head``,
    unscaled).

    Args:
        preset: What ``PromptTunedT5.from_preset`` takes: a keras-hub preset
            name or directory (e.g. a ``train --tune model`` output or the
            embedded checkpoint), or a Hugging Face checkpoint directory.
        out_dir: A new or empty directory; it is written in a temporary
            directory beside it and renamed into place when complete.
        dtype: Storage dtype of the weights: ``"float32"`` (exact),
            ``"bfloat16"`` or ``"float16"``.
        verbose: 0 (silent), 1, 2 or ``"auto"``: a Keras progress bar over
            the tensors written, on stderr.

    Returns:
        ``out_dir`` as a ``Path``.

    Example:

    ```python
    from keras_prompt.checkpoints import export_hf_checkpoint
    export_hf_checkpoint("keras_prompt/presets/t5_1_1_mini_lm", "/tmp/mini_hf")
    # transformers.T5ForConditionalGeneration.from_pretrained("/tmp/mini_hf")
    ```
    """
    from keras_prompt.models.loading import load_backbone

    out_dir = require_new_dir(Path(out_dir))
    backbone, tokenizer = load_backbone(os.fspath(preset))
    config = export_t5.get_t5_config(backbone, tokenizer)
    weights = export_t5.get_t5_weights_map(backbone, include_lm_head=True)
    config["torch_dtype"] = dtype
    with staged_dir(out_dir) as staging:
        export_t5.write_json(staging / CONFIG_FILE, config)
        with ProgressBar(
            len(weights), verbose, unit_name="tensor", label=f"writing {out_dir}"
        ) as bar:
            write_safetensors(
                staging / "model.safetensors",
                weights,
                dtype=dtype,
                on_tensor=lambda name: bar.add(1),
            )
        (staging / SPIECE_FILE).write_bytes(export_t5.get_t5_spiece_model(tokenizer))
        export_t5.write_json(
            staging / "tokenizer_config.json",
            export_t5.get_t5_tokenizer_config(tokenizer),
        )
    return out_dir


def _require_dir(checkpoint_dir: str | os.PathLike) -> Path:
    path = Path(checkpoint_dir)
    if not path.exists():
        raise FileNotFoundError(
            f"Checkpoint directory {path} does not exist; expected a directory "
            f"holding {CONFIG_FILE}, weights and {SPIECE_FILE}."
        )
    if not path.is_dir():
        raise NotADirectoryError(
            f"Checkpoint path {path} is a file; expected a directory holding "
            f"{CONFIG_FILE}, weights and {SPIECE_FILE}."
        )
    return path
