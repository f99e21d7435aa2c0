"""Import Hugging Face T5 checkpoints into keras-hub's ``T5Backbone``.

keras-hub 0.32 converts many Hugging Face models but not T5, and most T5
checkpoints people want to prompt-tune (T5 1.0, T5 1.1, LM-adapted T5, Flan-T5
and their fine-tunes) only exist in the Hugging Face layout. This module reads
such a checkpoint directory without needing ``torch`` or ``transformers``:

* ``config.json`` decides the architecture. It is interpreted the way
  ``transformers.T5Config`` interprets it (same defaults), so a config means
  the same model here as in ``transformers``.
* Weights come from ``model.safetensors``, a sharded
  ``model.safetensors.index.json`` or the legacy TensorFlow ``tf_model.h5``.
* ``spiece.model`` is the SentencePiece vocabulary.

Everything that keras-hub's T5 cannot represent exactly is refused with a
``HFCheckpointError`` before a single weight is copied, because a silently
approximated import would only show up later as poor prompt-tuning results.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import keras_hub
import numpy as np

from keras_prompt import files
from keras_prompt.models.geometries import GELU_TANH, resolve_activation

__all__ = ["HFCheckpointError", "convert_hf_checkpoint", "load_hf_t5"]

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"
TF_H5_FILE = "tf_model.h5"
SPIECE_FILE = "spiece.model"

# Weight files transformers can write that this importer deliberately does not
# read, so the "no weights" error can say what it found instead.
_UNSUPPORTED_WEIGHT_FILES = {
    "pytorch_model.bin": "a pickled PyTorch state dict",
    "pytorch_model.bin.index.json": "a sharded pickled PyTorch state dict",
    "tf_model.h5.index.json": "a sharded TensorFlow checkpoint",
    "flax_model.msgpack": "a Flax checkpoint",
}

# Encoder-decoder heads whose weights map onto T5Backbone + T5Seq2SeqLM.
# "T5WithLMHeadModel" is the pre-2020 name of T5ForConditionalGeneration,
# still found in old configs.
SUPPORTED_ARCHITECTURES = ("T5ForConditionalGeneration", "T5WithLMHeadModel")

# T5MultiHeadAttention in keras-hub hard-codes its relative position buckets.
KERAS_HUB_RELATIVE_ATTENTION_NUM_BUCKETS = 32
KERAS_HUB_RELATIVE_ATTENTION_MAX_DISTANCE = 128

# transformers.T5Config defaults, so that a field missing from config.json
# means what it means to transformers.
_HF_T5_DEFAULTS = {
    "vocab_size": 32128,
    "d_model": 512,
    "d_kv": 64,
    "d_ff": 2048,
    "num_layers": 6,
    "num_heads": 8,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "dropout_rate": 0.1,
    "layer_norm_epsilon": 1e-6,
    "feed_forward_proj": "relu",
}

# feed_forward_proj -> (gated, activation). transformers maps "gated-gelu" to
# "gelu_new", the tanh approximation, not to the exact erf GELU.
_FEED_FORWARD = {
    "relu": (False, "relu"),
    "gated-gelu": (True, GELU_TANH),
}


class HFCheckpointError(ValueError):
    """A Hugging Face checkpoint that cannot be imported exactly."""


@dataclass(frozen=True)
class _T5Spec:
    """The subset of a Hugging Face T5 config that shapes the Keras model."""

    vocab_size: int
    d_model: int
    d_kv: int
    d_ff: int
    num_heads: int
    num_layers: int
    layer_norm_epsilon: float
    dropout_rate: float
    gated: bool
    activation: str
    # T5 1.0 multiplies decoder outputs by d_model**-0.5 before the LM head.
    scale_logits: bool
    # A transformers 4.x config with tie_word_embeddings=false promises a
    # separate lm_head.weight tensor.
    lm_head_required: bool


@dataclass(frozen=True)
class _StoredTensor:
    """A tensor in a checkpoint, described in PyTorch layout before reading it."""

    shape: tuple[int, ...]
    origin: str
    read: Callable[[], np.ndarray]


def load_hf_t5(
    checkpoint_dir: str | os.PathLike,
    dtype: str | keras.DTypePolicy | None = None,
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

    Returns:
        A ``(backbone, tokenizer)`` tuple.
    """
    checkpoint_dir = _require_dir(checkpoint_dir)
    config_path = checkpoint_dir / CONFIG_FILE
    spec = _parse_config(_read_config(config_path), config_path)
    source, tensors = _index_weights(checkpoint_dir)
    tokenizer = _load_tokenizer(checkpoint_dir / SPIECE_FILE, spec)

    expected = _expected_shapes(spec)
    embedding_name = _check_tensors(tensors, expected, spec, source)
    embedding_matrix = tensors[embedding_name].read()
    tie, head = _resolve_lm_head(tensors, embedding_matrix, spec)

    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=spec.vocab_size,
        num_layers=spec.num_layers,
        num_heads=spec.num_heads,
        hidden_dim=spec.d_model,
        intermediate_dim=spec.d_ff,
        key_value_dim=spec.d_kv,
        dropout=spec.dropout_rate,
        activation=_keras_activation(spec.activation),
        use_gated_activation=spec.gated,
        layer_norm_epsilon=spec.layer_norm_epsilon,
        tie_embedding_weights=tie,
        dtype=dtype,
    )
    embedding = backbone.token_embedding
    _assign(embedding.embeddings, embedding_matrix, embedding_name)
    if head is not None:
        _assign(embedding.reverse_embeddings, head.T, "lm_head.weight")
    for name, variable, transpose in _variable_plan(backbone, spec):
        value = tensors[name].read()
        _assign(variable, value.T if transpose else value, name)
    return backbone, tokenizer


def convert_hf_checkpoint(
    checkpoint_dir: str | os.PathLike, preset_dir: str | os.PathLike
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
    preset_dir = Path(preset_dir)
    if preset_dir.exists() and (not preset_dir.is_dir() or any(preset_dir.iterdir())):
        raise FileExistsError(
            f"Preset directory {preset_dir} already exists and is not empty; "
            "expected a new or empty directory, refusing to overwrite it."
        )
    backbone, tokenizer = load_hf_t5(checkpoint_dir)

    with files.staging_directory(preset_dir.parent, f".{preset_dir.name}.") as staging:
        backbone.save_to_preset(str(staging))
        tokenizer.save_to_preset(str(staging))
        if hasattr(keras_hub.models, "T5Seq2SeqLMPreprocessor"):
            # keras-hub < 0.32 (the TFX stack) has no such class to save;
            # PromptTunedT5.from_preset builds its preprocessor itself.
            preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(tokenizer=tokenizer)
            preprocessor.save_to_preset(str(staging))
        if preset_dir.is_dir():
            preset_dir.rmdir()  # Empty, checked above; rename needs it gone.
        staging.rename(preset_dir)
    return preset_dir


# --------------------------------------------------------------------------
# config.json
# --------------------------------------------------------------------------


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


def _read_config(config_path: Path) -> dict:
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{config_path} not found; expected the {CONFIG_FILE} written by "
            "transformers' save_pretrained."
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HFCheckpointError(f"{config_path} is not valid JSON: {error}") from error
    if not isinstance(config, dict):
        raise HFCheckpointError(
            f"{config_path} holds a {type(config).__name__}; expected a JSON object."
        )
    return config


def _field(config: dict, name: str, config_path: Path, kind: type):
    value = config.get(name)
    if value is None:
        value = _HF_T5_DEFAULTS[name]
    valid = isinstance(value, kind) and not isinstance(value, bool)
    if kind is float:
        valid = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not valid or (kind is int and value <= 0):
        expected = "a positive integer" if kind is int else f"a {kind.__name__}"
        raise HFCheckpointError(
            f"{config_path}: field '{name}' is {value!r}; expected {expected}."
        )
    return float(value) if kind is float else value


def _parse_config(config: dict, config_path: Path) -> _T5Spec:
    model_type = config.get("model_type")
    if model_type != "t5":
        raise HFCheckpointError(
            f"{config_path}: field 'model_type' is {model_type!r}; expected 't5'. "
            "Only T5 checkpoints (not mT5, UMT5, LongT5, ...) can be imported."
        )

    architectures = config.get("architectures") or []
    unsupported = [a for a in architectures if a not in SUPPORTED_ARCHITECTURES]
    if unsupported:
        raise HFCheckpointError(
            f"{config_path}: field 'architectures' is {architectures!r}; expected "
            f"one of {list(SUPPORTED_ARCHITECTURES)}. keras-hub's T5Backbone needs "
            "both the encoder and the decoder (with its language-model head), "
            f"which {unsupported[0]} checkpoints do not have."
        )

    feed_forward_proj = _field(config, "feed_forward_proj", config_path, str)
    if feed_forward_proj not in _FEED_FORWARD:
        raise HFCheckpointError(
            f"{config_path}: field 'feed_forward_proj' is {feed_forward_proj!r}; "
            f"expected one of {sorted(_FEED_FORWARD)} (T5 1.0 uses 'relu'; T5 1.1, "
            "LM-adapted T5 and Flan-T5 use 'gated-gelu')."
        )
    gated, activation = _FEED_FORWARD[feed_forward_proj]

    num_layers = _field(config, "num_layers", config_path, int)
    num_decoder_layers = config.get("num_decoder_layers")
    if num_decoder_layers is None:
        num_decoder_layers = num_layers  # transformers' default: symmetric.
    if num_decoder_layers != num_layers:
        raise HFCheckpointError(
            f"{config_path}: field 'num_decoder_layers' is {num_decoder_layers!r} "
            f"but 'num_layers' is {num_layers}; expected them equal, because "
            "keras-hub's T5Backbone uses one layer count for encoder and decoder."
        )

    for name, supported in (
        ("relative_attention_num_buckets", KERAS_HUB_RELATIVE_ATTENTION_NUM_BUCKETS),
        ("relative_attention_max_distance", KERAS_HUB_RELATIVE_ATTENTION_MAX_DISTANCE),
    ):
        value = _field(config, name, config_path, int)
        if value != supported:
            raise HFCheckpointError(
                f"{config_path}: field '{name}' is {value}; expected {supported}, "
                "the value keras-hub's T5MultiHeadAttention hard-codes."
            )

    dropout_rate = _field(config, "dropout_rate", config_path, float)
    if not 0.0 <= dropout_rate < 1.0:
        raise HFCheckpointError(
            f"{config_path}: field 'dropout_rate' is {dropout_rate}; expected a "
            "value in [0, 1)."
        )

    # transformers 4.x wrote tie_word_embeddings=false for T5 1.1-style models
    # and used it to decide the d_model**-0.5 logit scaling. transformers 5
    # always ties, writes tie_word_embeddings=true, and records the scaling as
    # scale_decoder_outputs; read whichever the checkpoint carries.
    tie_word_embeddings = config.get("tie_word_embeddings", True)
    if "scale_decoder_outputs" in config:
        scale_logits = bool(config["scale_decoder_outputs"])
    else:
        scale_logits = tie_word_embeddings is not False

    return _T5Spec(
        vocab_size=_field(config, "vocab_size", config_path, int),
        d_model=_field(config, "d_model", config_path, int),
        d_kv=_field(config, "d_kv", config_path, int),
        d_ff=_field(config, "d_ff", config_path, int),
        num_heads=_field(config, "num_heads", config_path, int),
        num_layers=num_layers,
        layer_norm_epsilon=_field(config, "layer_norm_epsilon", config_path, float),
        dropout_rate=dropout_rate,
        gated=gated,
        activation=activation,
        scale_logits=scale_logits,
        lm_head_required=tie_word_embeddings is False,
    )


def _keras_activation(name: str) -> str | Callable:
    return resolve_activation(name)


# --------------------------------------------------------------------------
# spiece.model
# --------------------------------------------------------------------------


def _load_tokenizer(spiece_path: Path, spec: _T5Spec) -> keras_hub.models.T5Tokenizer:
    if not spiece_path.is_file():
        raise FileNotFoundError(
            f"{spiece_path} not found; expected the model's SentencePiece "
            "vocabulary (transformers' slow T5Tokenizer saves it as "
            f"{SPIECE_FILE})."
        )
    proto = spiece_path.read_bytes()
    try:
        tokenizer = keras_hub.models.T5Tokenizer(proto=proto)
    except Exception as error:  # Any parse failure means the same thing.
        raise HFCheckpointError(
            f"{spiece_path} is not a usable SentencePiece model for T5 (expected a "
            "serialized SentencePiece ModelProto with '<pad>' and '</s>' "
            f"pieces): {type(error).__name__}: {error}"
        ) from error
    if tokenizer.vocabulary_size() > spec.vocab_size:
        raise HFCheckpointError(
            f"{spiece_path} has {tokenizer.vocabulary_size()} pieces but config "
            f"field 'vocab_size' is {spec.vocab_size}; expected the vocabulary to "
            "fit in the embedding table."
        )
    return tokenizer


# --------------------------------------------------------------------------
# Weight files
# --------------------------------------------------------------------------


def _index_weights(checkpoint_dir: Path) -> tuple[str, dict[str, _StoredTensor]]:
    """Find the weights file and describe its tensors without reading them."""
    single = checkpoint_dir / SAFETENSORS_FILE
    index = checkpoint_dir / SAFETENSORS_INDEX_FILE
    h5 = checkpoint_dir / TF_H5_FILE
    if single.is_file():
        return str(single), _index_safetensors(single)
    if index.is_file():
        return str(index), _index_sharded_safetensors(index)
    if h5.is_file():
        return str(h5), _index_tf_h5(h5)
    found = [
        f"{name} ({what})"
        for name, what in _UNSUPPORTED_WEIGHT_FILES.items()
        if (checkpoint_dir / name).exists()
    ]
    found_text = (
        f" Found only {', '.join(found)}, which is not supported; re-save it with "
        "save_pretrained(..., safe_serialization=True)."
        if found
        else ""
    )
    raise FileNotFoundError(
        f"No weights file in {checkpoint_dir}; expected {SAFETENSORS_FILE}, "
        f"{SAFETENSORS_INDEX_FILE} or {TF_H5_FILE}.{found_text}"
    )


def _safetensors_dtype(code: str, name: str, path: Path) -> np.dtype:
    if code == "BF16":
        import ml_dtypes  # A keras dependency; numpy has no bfloat16.

        return np.dtype(ml_dtypes.bfloat16)
    numpy_codes = {"F64": "<f8", "F32": "<f4", "F16": "<f2"}
    if code not in numpy_codes:
        raise HFCheckpointError(
            f"{path}: tensor '{name}' has dtype {code}; expected a floating point "
            "dtype (F32, F16, BF16 or F64). Quantized checkpoints are not supported."
        )
    return np.dtype(numpy_codes[code])


def _index_safetensors(path: Path) -> dict[str, _StoredTensor]:
    """Parse a safetensors header; tensors are read lazily, one at a time.

    The format is an 8-byte little-endian header length, a JSON header mapping
    names to dtype, shape and byte offsets, then the raw data. It is parsed
    here rather than with the ``safetensors`` package because its NumPy
    backend cannot return bfloat16 tensors, the storage dtype of many
    Flan-T5 checkpoints.
    """
    size = path.stat().st_size
    try:
        with open(path, "rb") as file:
            (header_size,) = struct.unpack("<Q", file.read(8))
            if header_size > size - 8:
                raise ValueError(f"header length {header_size} exceeds file size")
            header = json.loads(file.read(header_size))
        if not isinstance(header, dict):
            raise TypeError("header is not a JSON object")
    except (struct.error, TypeError, ValueError, UnicodeDecodeError) as error:
        raise HFCheckpointError(
            f"{path} is not a safetensors file ({error})."
        ) from error
    data_start = 8 + header_size
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _safetensors_dtype(info["dtype"], name, path)
        shape = tuple(int(d) for d in info["shape"])
        begin, end = (int(o) for o in info["data_offsets"])
        if end - begin != int(np.prod(shape)) * dtype.itemsize or (
            data_start + end > size
        ):
            raise HFCheckpointError(
                f"{path}: tensor '{name}' has inconsistent byte offsets "
                f"{[begin, end]} for shape {shape}; the file looks truncated."
            )

        def read(begin=begin, end=end, dtype=dtype, shape=shape) -> np.ndarray:
            with open(path, "rb") as file:
                file.seek(data_start + begin)
                data = file.read(end - begin)
            return np.frombuffer(data, dtype=dtype).reshape(shape).astype(np.float32)

        tensors[name] = _StoredTensor(shape, str(path), read)
    return tensors


def _index_sharded_safetensors(index_path: Path) -> dict[str, _StoredTensor]:
    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise HFCheckpointError(
            f"{index_path} is not a safetensors index (expected a JSON object "
            f"with a 'weight_map'): {error!r}"
        ) from error
    tensors = {}
    for shard_name in sorted(set(weight_map.values())):
        shard = index_path.parent / shard_name
        if not shard.is_file():
            raise FileNotFoundError(f"Shard {shard} listed in {index_path} not found.")
        for name, tensor in _index_safetensors(shard).items():
            tensors.setdefault(name, tensor)
    return tensors


def _h5_string_list(group, name: str) -> list[str]:
    """Read a string-list attribute, which Keras splits into chunks past 64 KB."""
    if name in group.attrs:
        chunks = [group.attrs[name]]
    else:
        chunks = []
        while f"{name}{len(chunks)}" in group.attrs:
            chunks.append(group.attrs[f"{name}{len(chunks)}"])
    return [
        item.decode("utf-8") if isinstance(item, bytes) else str(item)
        for chunk in chunks
        for item in np.atleast_1d(chunk)
    ]


def _tf_to_pt_name(tf_name: str) -> tuple[str, bool]:
    """Map a TF variable name to its PyTorch name, and whether to transpose it.

    This applies transformers 4.x's
    ``modeling_tf_pytorch_utils.convert_tf_weight_name_to_pt_weight_name``,
    the rule transformers itself used to load ``tf_model.h5`` into PyTorch:
    drop ``:0`` and the first scope (the model name), turn ``_._`` list
    separators into levels, rename ``kernel``/``embeddings``/``gamma`` to
    ``weight``, and transpose Dense kernels (Keras stores them
    ``(in, out)``, PyTorch ``(out, in)``).
    """
    name = tf_name.replace(":0", "")
    name = re.sub(r"/[^/]*___([^/]*)/", r"/\1/", name)
    name = name.replace("_._", "/")
    name = re.sub(r"//+", "/", name)
    parts = name.split("/")
    if len(parts) > 1:
        parts = parts[1:]
    transpose = parts[-1] == "kernel"
    if parts[-1] in ("kernel", "embeddings", "gamma"):
        parts[-1] = "weight"
    elif parts[-1] == "beta":
        parts[-1] = "bias"
    return ".".join(parts), transpose


def _index_tf_h5(path: Path) -> dict[str, _StoredTensor]:
    """Describe the tensors of a transformers 4.x ``tf_model.h5``.

    ``TFT5ForConditionalGeneration.save_pretrained`` wrote this file with
    ``tf.keras.Model.save_weights`` in the Keras 2 HDF5 format
    (``keras/saving/legacy/hdf5_format.py``): the root attribute
    ``layer_names`` lists the model's top-level layers (``shared``,
    ``encoder``, ``decoder`` and, when untied, ``lm_head``); each has a group
    whose ``weight_names`` attribute lists full TF variable names such as
    ``tf_t5for_conditional_generation/encoder/block_._0/layer_._0/SelfAttention/q/kernel:0``
    or ``shared/shared/embeddings:0``, stored as nested datasets under that
    group. The ``encoder``/``decoder`` groups may repeat the shared embedding,
    which they track as ``embed_tokens``.
    """
    import h5py

    def reader(layer: str, weight: str, transpose: bool) -> Callable[[], np.ndarray]:
        def read() -> np.ndarray:
            with h5py.File(path, "r") as file:
                value = np.asarray(file[layer][weight], dtype=np.float32)
            return value.T if transpose else value

        return read

    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise HFCheckpointError(f"{path} is not an HDF5 file: {error}") from error
    tensors = {}
    with file:
        layer_names = _h5_string_list(file, "layer_names")
        if not layer_names:
            raise HFCheckpointError(
                f"{path} has no 'layer_names' attribute; expected Keras "
                "save_weights HDF5 output as written by transformers' "
                "TFT5ForConditionalGeneration.save_pretrained."
            )
        for layer in layer_names:
            if layer not in file:
                raise HFCheckpointError(
                    f"{path}: layer '{layer}' is listed in 'layer_names' but has "
                    "no group; the file looks truncated."
                )
            group = file[layer]
            for weight in _h5_string_list(group, "weight_names"):
                pt_name, transpose = _tf_to_pt_name(weight)
                if pt_name in tensors:
                    continue  # The shared embedding, repeated per stack.
                if weight not in group:
                    raise HFCheckpointError(
                        f"{path}: weight '{weight}' is listed in layer '{layer}' "
                        "but has no dataset; the file looks truncated."
                    )
                shape = tuple(group[weight].shape)
                if transpose:
                    shape = shape[::-1]
                tensors[pt_name] = _StoredTensor(
                    shape, f"{path}:{layer}/{weight}", reader(layer, weight, transpose)
                )
    return tensors


# --------------------------------------------------------------------------
# Tensor names, shapes and their Keras counterparts
# --------------------------------------------------------------------------

# The token embedding is one matrix in T5; checkpoints name it by any of these.
_EMBEDDING_NAMES = (
    "shared.weight",
    "encoder.embed_tokens.weight",
    "decoder.embed_tokens.weight",
)
# Present in some old checkpoints, never used by transformers either.
_IGNORED_NAMES = (
    "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",
)


def _feed_forward_names(spec: _T5Spec) -> tuple[str, ...]:
    return ("wi_0", "wi_1", "wo") if spec.gated else ("wi", "wo")


def _block_layers(spec: _T5Spec, stack: str, i: int) -> dict[str, tuple[int, ...]]:
    inner = spec.num_heads * spec.d_kv
    prefix = f"{stack}.block.{i}.layer"
    shapes: dict[str, tuple[int, ...]] = {}
    attentions = [("0", "SelfAttention")]
    if stack == "decoder":
        attentions.append(("1", "EncDecAttention"))
    for index, kind in attentions:
        for projection in ("q", "k", "v"):
            shapes[f"{prefix}.{index}.{kind}.{projection}.weight"] = (
                inner,
                spec.d_model,
            )
        shapes[f"{prefix}.{index}.{kind}.o.weight"] = (spec.d_model, inner)
        shapes[f"{prefix}.{index}.layer_norm.weight"] = (spec.d_model,)
    if i == 0:
        shapes[f"{prefix}.0.SelfAttention.relative_attention_bias.weight"] = (
            KERAS_HUB_RELATIVE_ATTENTION_NUM_BUCKETS,
            spec.num_heads,
        )
    ff = len(attentions)
    for name in _feed_forward_names(spec):
        shape = (spec.d_model, spec.d_ff) if name == "wo" else (spec.d_ff, spec.d_model)
        shapes[f"{prefix}.{ff}.DenseReluDense.{name}.weight"] = shape
    shapes[f"{prefix}.{ff}.layer_norm.weight"] = (spec.d_model,)
    return shapes


def _expected_shapes(spec: _T5Spec) -> dict[str, tuple[int, ...]]:
    """PyTorch-layout shapes of every tensor except the embedding and lm_head."""
    shapes: dict[str, tuple[int, ...]] = {}
    for stack in ("encoder", "decoder"):
        for i in range(spec.num_layers):
            shapes.update(_block_layers(spec, stack, i))
        shapes[f"{stack}.final_layer_norm.weight"] = (spec.d_model,)
    return shapes


def _config_summary(spec: _T5Spec) -> str:
    return (
        f"vocab_size={spec.vocab_size}, d_model={spec.d_model}, d_kv={spec.d_kv}, "
        f"d_ff={spec.d_ff}, num_heads={spec.num_heads}, "
        f"num_layers={spec.num_layers}"
    )


def _check_tensors(
    tensors: dict[str, _StoredTensor],
    expected: dict[str, tuple[int, ...]],
    spec: _T5Spec,
    source: str,
) -> str:
    """Validate names and shapes; return the name of the embedding tensor."""
    embedding_name = next((n for n in _EMBEDDING_NAMES if n in tensors), None)
    missing = [name for name in expected if name not in tensors]
    if embedding_name is None:
        missing.insert(0, _EMBEDDING_NAMES[0])
    if spec.lm_head_required and "lm_head.weight" not in tensors:
        missing.append("lm_head.weight")
    if missing:
        shown = ", ".join(missing[:12]) + (
            f", ... ({len(missing) - 12} more)" if len(missing) > 12 else ""
        )
        raise HFCheckpointError(
            f"{source} is missing {len(missing)} tensor(s) that config.json "
            f"({_config_summary(spec)}) requires: {shown}."
        )

    known = set(expected) | set(_EMBEDDING_NAMES) | set(_IGNORED_NAMES)
    known.add("lm_head.weight")
    unexpected = sorted(name for name in tensors if name not in known)
    if unexpected:
        shown = ", ".join(unexpected[:12]) + (
            f", ... ({len(unexpected) - 12} more)" if len(unexpected) > 12 else ""
        )
        raise HFCheckpointError(
            f"{source} has {len(unexpected)} tensor(s) that a T5 model with "
            f"config.json ({_config_summary(spec)}) does not use: {shown}. "
            "The config probably does not describe these weights."
        )

    matrix = (spec.vocab_size, spec.d_model)
    full = dict(expected)
    for name in _EMBEDDING_NAMES + ("lm_head.weight",):
        if name in tensors:
            full[name] = matrix
    for name, shape in full.items():
        found = tensors[name].shape
        if found != shape:
            raise HFCheckpointError(
                f"Tensor '{name}' in {tensors[name].origin} has shape {found}; "
                f"expected {shape} from config.json ({_config_summary(spec)})."
            )
    return embedding_name


def _resolve_lm_head(
    tensors: dict[str, _StoredTensor], embedding: np.ndarray, spec: _T5Spec
) -> tuple[bool, np.ndarray | None]:
    """Decide whether the Keras embedding is tied, and the untied head if not.

    ``T5Seq2SeqLM`` scales logits by ``d_model**-0.5`` exactly when the
    backbone is tied, so a tied Keras backbone is only right for a scaled
    model whose head is the embedding. Every other combination is untied, and
    a scaled model with its own head gets the scale folded into that head.
    """
    if "lm_head.weight" in tensors:
        head = tensors["lm_head.weight"].read()
        if spec.scale_logits and np.array_equal(head, embedding):
            return True, None
    else:
        head = embedding  # transformers 5 writes a tied head only once.
        if spec.scale_logits:
            return True, None
    if spec.scale_logits:
        head = head * np.float32(spec.d_model**-0.5)
    return False, head


def _variable_plan(backbone: keras_hub.models.T5Backbone, spec: _T5Spec) -> list:
    """(tensor name, Keras variable, transpose) for every non-embedding weight."""
    plan = []
    feed_forward = dict(
        zip(
            _feed_forward_names(spec),
            ("input_projector", "gate_projector", "output_projector")
            if spec.gated
            else ("input_projector", "output_projector"),
        )
    )
    for stack in ("encoder", "decoder"):
        for i in range(spec.num_layers):
            layer = backbone.get_layer(f"transformer_{stack}_layer_{i}")
            prefix = f"{stack}.block.{i}.layer"
            attentions = [("0", "SelfAttention", layer.self_attention, "self")]
            if stack == "decoder":
                attentions.append(
                    ("1", "EncDecAttention", layer.cross_attention, "cross")
                )
            for index, kind, attention, norm in attentions:
                for projection, dense in (
                    ("q", attention.query_projector),
                    ("k", attention.key_projector),
                    ("v", attention.value_projector),
                    ("o", attention.output_projector),
                ):
                    plan.append(
                        (
                            f"{prefix}.{index}.{kind}.{projection}.weight",
                            dense.kernel,
                            True,
                        )
                    )
                layer_norm = getattr(layer, f"{norm}_attention_layer_norm")
                plan.append(
                    (f"{prefix}.{index}.layer_norm.weight", layer_norm.weight, False)
                )
            if i == 0:
                plan.append(
                    (
                        f"{prefix}.0.SelfAttention.relative_attention_bias.weight",
                        layer.self_attention.relative_attention_bias,
                        False,
                    )
                )
            ff = len(attentions)
            for name, attribute in feed_forward.items():
                kernel = getattr(layer, attribute).kernel
                plan.append(
                    (f"{prefix}.{ff}.DenseReluDense.{name}.weight", kernel, True)
                )
            plan.append(
                (f"{prefix}.{ff}.layer_norm.weight", layer.layer_norm.weight, False)
            )
        final_norm = getattr(backbone, f"{stack}_layer_norm")
        plan.append((f"{stack}.final_layer_norm.weight", final_norm.weight, False))
    return plan


def _assign(variable, value: np.ndarray, name: str) -> None:
    if tuple(variable.shape) != tuple(value.shape):
        # Shapes were validated against config.json; this is an importer bug.
        raise AssertionError(
            f"Keras variable {variable.path} has shape {tuple(variable.shape)} but "
            f"tensor '{name}' maps to shape {tuple(value.shape)}."
        )
    variable.assign(value)
