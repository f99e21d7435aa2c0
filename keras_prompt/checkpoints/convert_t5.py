"""Hugging Face T5 <-> keras-hub ``T5Backbone``: config, weights, tokenizer.

Shaped like keras-hub's own converters
(``keras_hub/src/utils/transformers/convert_*.py``): ``backbone_cls``,
``convert_backbone_config(transformers_config)``,
``convert_weights(backbone, loader, transformers_config)`` and
``convert_tokenizer(cls, preset)``, so it can be contributed upstream as
``convert_t5.py`` (keras-hub has no T5 converter). Two T5 specifics have no
counterpart there and are extra functions: :func:`check_tensors` validates
every name and shape before anything is built, and :func:`resolve_lm_head`
decides from the weights whether the Keras embedding can be tied.
:func:`weight_plan` is the single tensor-name table, also used by
``export_t5`` in the other direction. docs/interop.md has the mapping.

``config.json`` is interpreted the way ``transformers.T5Config`` interprets
it (same defaults), so a config means the same model here as in
transformers. Everything keras-hub's T5 cannot represent exactly is refused
with an ``HFCheckpointError`` naming the file and field.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import keras_hub
import numpy as np

from keras_prompt.checkpoints.errors import HFCheckpointError
from keras_prompt.checkpoints.relative_position import (
    KERAS_HUB_RELATIVE_ATTENTION_MAX_DISTANCE,
    KERAS_HUB_RELATIVE_ATTENTION_NUM_BUCKETS,
    bucket_mapping,
)
from keras_prompt.checkpoints.safetensors_io import StoredTensor
from keras_prompt.models.geometries import GELU_TANH, resolve_activation

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "backbone_cls",
    "check_tensors",
    "convert_backbone_config",
    "convert_tokenizer",
    "convert_weights",
    "expected_shapes",
    "parse_config",
    "read_config",
    "resolve_lm_head",
    "weight_plan",
]

backbone_cls = keras_hub.models.T5Backbone

CONFIG_FILE = "config.json"
SPIECE_FILE = "spiece.model"

# Encoder-decoder heads whose weights map onto T5Backbone + T5Seq2SeqLM.
# "T5WithLMHeadModel" is the pre-2020 name of T5ForConditionalGeneration,
# still found in old configs.
SUPPORTED_ARCHITECTURES = ("T5ForConditionalGeneration", "T5WithLMHeadModel")


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


@dataclass(frozen=True)
class T5Spec:
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
    num_buckets: int = KERAS_HUB_RELATIVE_ATTENTION_NUM_BUCKETS
    max_distance: int = KERAS_HUB_RELATIVE_ATTENTION_MAX_DISTANCE


def read_config(config_path: Path) -> dict:
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


def parse_config(config: dict, config_path: Path) -> T5Spec:
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

    num_buckets = _field(config, "relative_attention_num_buckets", config_path, int)
    max_distance = _field(config, "relative_attention_max_distance", config_path, int)
    if any(
        bucket_mapping(num_buckets, max_distance, bidirectional) is None
        for bidirectional in (True, False)
    ):
        name, value, supported = (
            ("relative_attention_num_buckets", num_buckets,
             KERAS_HUB_RELATIVE_ATTENTION_NUM_BUCKETS)
            if num_buckets != KERAS_HUB_RELATIVE_ATTENTION_NUM_BUCKETS
            else ("relative_attention_max_distance", max_distance,
                  KERAS_HUB_RELATIVE_ATTENTION_MAX_DISTANCE)
        )
        raise HFCheckpointError(
            f"{config_path}: field '{name}' is {value}; expected {supported}, "
            "the value keras-hub's T5MultiHeadAttention hard-codes ("
            f"{num_buckets} relative-position buckets with max_distance "
            f"{max_distance} cannot be mapped exactly onto its "
            f"{KERAS_HUB_RELATIVE_ATTENTION_NUM_BUCKETS} buckets with max_distance "
            f"{KERAS_HUB_RELATIVE_ATTENTION_MAX_DISTANCE})."
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

    return T5Spec(
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
        num_buckets=num_buckets,
        max_distance=max_distance,
    )


def convert_backbone_config(
    transformers_config: dict, config_path: str | os.PathLike = CONFIG_FILE
) -> dict:
    """``T5Backbone`` constructor arguments for a transformers T5 config.

    ``tie_embedding_weights`` is true exactly for models that scale logits by
    ``d_model**-0.5`` (T5 1.0), since keras-hub's ``T5Seq2SeqLM`` scales
    only tied models; :func:`resolve_lm_head` unties a scaled model whose
    checkpoint has a separate head. ``config_path`` only names the file in
    errors.
    """
    spec = parse_config(transformers_config, Path(config_path))
    return {
        "vocabulary_size": spec.vocab_size,
        "num_layers": spec.num_layers,
        "num_heads": spec.num_heads,
        "hidden_dim": spec.d_model,
        "intermediate_dim": spec.d_ff,
        "key_value_dim": spec.d_kv,
        "dropout": spec.dropout_rate,
        "activation": resolve_activation(spec.activation),
        "use_gated_activation": spec.gated,
        "layer_norm_epsilon": spec.layer_norm_epsilon,
        "tie_embedding_weights": spec.scale_logits,
    }


def _transpose(tensor: np.ndarray, keras_shape: tuple) -> np.ndarray:
    return tensor.T


def convert_weights(
    backbone: keras_hub.models.T5Backbone, loader, transformers_config: dict
) -> None:
    """Port every weight from ``loader`` (``port_weight``) into ``backbone``.

    ``loader`` is a :class:`~keras_prompt.checkpoints.hf_weights.HFWeightLoader`
    (or keras-hub's ``SafetensorLoader``) whose tensors
    :func:`check_tensors` accepted, and ``backbone`` was built with
    :func:`resolve_lm_head`'s tie decision.
    """
    spec = parse_config(transformers_config, Path(CONFIG_FILE))
    embedding_name = next(n for n in _EMBEDDING_NAMES if n in loader.tensors)
    embedding = backbone.token_embedding
    loader.port_weight(embedding.embeddings, embedding_name)
    if not backbone.tie_embedding_weights:
        _, head = resolve_lm_head(
            loader.tensors, loader.get_tensor(embedding_name), spec
        )
        embedding.reverse_embeddings.assign(head.T)
    for name, variable, transpose in weight_plan(backbone):
        hook = _transpose if transpose else None
        if name.endswith("relative_attention_bias.weight"):
            hook = _bucket_hook(spec, bidirectional=name.startswith("encoder."))
        loader.port_weight(variable, name, hook_fn=hook)


def _bucket_hook(spec: T5Spec, bidirectional: bool):
    """Re-index a ``(num_buckets, heads)`` bias table onto keras-hub's buckets."""
    mapping = bucket_mapping(spec.num_buckets, spec.max_distance, bidirectional)

    def hook(tensor: np.ndarray, keras_shape: tuple) -> np.ndarray:
        return tensor[mapping]

    return hook


def convert_tokenizer(
    cls, preset: str | os.PathLike, vocabulary_size: int | None = None, **kwargs
) -> keras_hub.models.T5Tokenizer:
    """The checkpoint's ``spiece.model`` as a ``cls`` (``T5Tokenizer``).

    ``preset`` is the checkpoint directory, or the SentencePiece file itself
    (formats such as T5X keep it apart from the weights).
    ``vocabulary_size`` (the config's ``vocab_size``) is checked to hold
    every piece.
    """
    spiece_path = Path(preset)
    if not spiece_path.is_file():
        spiece_path = spiece_path / SPIECE_FILE
    if not spiece_path.is_file():
        raise FileNotFoundError(
            f"{spiece_path} not found; expected the model's SentencePiece "
            "vocabulary (transformers' slow T5Tokenizer saves it as "
            f"{SPIECE_FILE})."
        )
    proto = spiece_path.read_bytes()
    try:
        tokenizer = cls(proto=proto, **kwargs)
    except Exception as error:  # Any parse failure means the same thing.
        raise HFCheckpointError(
            f"{spiece_path} is not a usable SentencePiece model for T5 (expected a "
            "serialized SentencePiece ModelProto with '<pad>' and '</s>' "
            f"pieces): {type(error).__name__}: {error}"
        ) from error
    if vocabulary_size is not None and tokenizer.vocabulary_size() > vocabulary_size:
        raise HFCheckpointError(
            f"{spiece_path} has {tokenizer.vocabulary_size()} pieces but config "
            f"field 'vocab_size' is {vocabulary_size}; expected the vocabulary to "
            "fit in the embedding table."
        )
    return tokenizer


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


def _feed_forward_names(spec: T5Spec) -> tuple[str, ...]:
    return ("wi_0", "wi_1", "wo") if spec.gated else ("wi", "wo")


def _block_layers(spec: T5Spec, stack: str, i: int) -> dict[str, tuple[int, ...]]:
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
            spec.num_buckets,
            spec.num_heads,
        )
    ff = len(attentions)
    for name in _feed_forward_names(spec):
        shape = (spec.d_model, spec.d_ff) if name == "wo" else (spec.d_ff, spec.d_model)
        shapes[f"{prefix}.{ff}.DenseReluDense.{name}.weight"] = shape
    shapes[f"{prefix}.{ff}.layer_norm.weight"] = (spec.d_model,)
    return shapes


def expected_shapes(spec: T5Spec) -> dict[str, tuple[int, ...]]:
    """PyTorch-layout shapes of every tensor except the embedding and lm_head."""
    shapes: dict[str, tuple[int, ...]] = {}
    for stack in ("encoder", "decoder"):
        for i in range(spec.num_layers):
            shapes.update(_block_layers(spec, stack, i))
        shapes[f"{stack}.final_layer_norm.weight"] = (spec.d_model,)
    return shapes


def _config_summary(spec: T5Spec) -> str:
    return (
        f"vocab_size={spec.vocab_size}, d_model={spec.d_model}, d_kv={spec.d_kv}, "
        f"d_ff={spec.d_ff}, num_heads={spec.num_heads}, "
        f"num_layers={spec.num_layers}"
    )


def check_tensors(
    tensors: dict[str, StoredTensor],
    expected: dict[str, tuple[int, ...]],
    spec: T5Spec,
    source: str,
    config_name: str = CONFIG_FILE,
) -> str:
    """Validate names and shapes; return the name of the embedding tensor.

    ``config_name`` names what the geometry came from, in errors.
    """
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
            f"{source} is missing {len(missing)} tensor(s) that {config_name} "
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
            f"{config_name} ({_config_summary(spec)}) does not use: {shown}. "
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
                f"expected {shape} from {config_name} ({_config_summary(spec)})."
            )
    return embedding_name


def resolve_lm_head(
    tensors: dict[str, StoredTensor], embedding: np.ndarray, spec: T5Spec
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


def _backbone_spec(backbone: keras_hub.models.T5Backbone) -> T5Spec:
    """The :class:`T5Spec` of a Keras backbone (for names and shapes)."""
    return T5Spec(
        vocab_size=backbone.vocabulary_size,
        d_model=backbone.hidden_dim,
        d_kv=backbone.key_value_dim or backbone.hidden_dim // backbone.num_heads,
        d_ff=backbone.intermediate_dim,
        num_heads=backbone.num_heads,
        num_layers=backbone.num_layers,
        layer_norm_epsilon=backbone.layer_norm_epsilon,
        dropout_rate=backbone.dropout,
        gated=backbone.use_gated_activation,
        activation="",
        scale_logits=backbone.tie_embedding_weights,
        lm_head_required=False,
    )


def weight_plan(backbone: keras_hub.models.T5Backbone) -> list:
    """``(hf_weight_key, keras_variable, transpose)`` for every non-embedding
    weight of ``backbone``; the one name table both directions use.

    ``transpose`` is true for Dense kernels: PyTorch's ``nn.Linear`` stores
    ``(out, in)``, Keras ``(in, out)``.
    """
    spec = _backbone_spec(backbone)
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
