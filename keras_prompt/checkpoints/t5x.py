"""T5X checkpoints (the framework of Lester et al.) into keras-hub's T5.

A T5X checkpoint directory (``checkpoint_<step>/``) holds a ``checkpoint``
file, the train state serialized with msgpack as ``flax.serialization``
writes it (``{"version": 3, "optimizer": {"target": params, "state": ...}}``;
version 0 has ``target`` at the top), and one zarr directory per large array
(``target.encoder.layers_0.attention.query.kernel/``), written by tensorstore.
In the msgpack tree each such array is replaced by its tensorstore spec
(``{"driver": "zarr", "kvstore": {"driver": "file", "path": "target...."}}``,
the path relative to the checkpoint directory); small arrays (layer norms,
relative position biases) are stored inline. The model config is not stored:
the geometry is read off the array shapes, and T5X's parameter names map onto
Hugging Face T5 names (see :data:`T5X_TO_HF` and docs/interop.md), so the
import then runs through the same validation and weight table as
``load_hf_t5`` (``convert_t5``).

Layouts: T5 1.1 / LM-adapted / Flan-T5 (``mlp/wi_0`` + ``wi_1`` gated GELU,
``decoder/logits_dense``) and T5 1.0 (``mlp/wi`` ReLU, logits through the
scaled embedding), as in ``t5x/examples/t5/network.py`` and flaxformer.
Orbax/OCDBT checkpoints (newer T5X) are refused with a message saying so.

T5X checkpoints carry no vocabulary (gin names it); pass the model's
SentencePiece file. They store the number of relative-position buckets (the
bias tables' width) but not ``max_distance`` (T5's is 128); other settings
than keras-hub's 32 / 128 are mapped as for Hugging Face checkpoints
(``relative_position.bucket_mapping``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import keras_hub
import numpy as np

from keras_prompt.checkpoints import convert_t5
from keras_prompt.checkpoints.errors import HFCheckpointError, T5XCheckpointError
from keras_prompt.checkpoints.hf_weights import TensorLoader
from keras_prompt.checkpoints.huggingface import port_progress
from keras_prompt.checkpoints.safetensors_io import StoredTensor
from keras_prompt.files import require_new_dir, staged_dir

__all__ = [
    "T5XCheckpoint",
    "T5X_TO_HF",
    "convert_t5x_checkpoint",
    "load_t5x_t5",
    "read_t5x_checkpoint",
]

CHECKPOINT_FILE = "checkpoint"
_INSTALL_HINT = "pip install 'keras-prompt[t5x]' (tensorstore and msgpack)"

# flax.serialization's msgpack extension codes.
_NDARRAY_EXT = 1
_NPSCALAR_EXT = 3
_CHUNKED_ARRAY_KEY = "__msgpack_chunked_array__"

#: T5X parameter path (``/``-separated, ``{i}`` a layer) -> (Hugging Face
#: name, how the array maps): "copy", "transpose" (Dense kernels: T5X stores
#: ``(in, out)``, PyTorch ``(out, in)``) or "relpos" (T5X ``(heads,
#: buckets)`` -> HF ``(buckets, heads)``).
T5X_TO_HF: dict[str, tuple[str, str]] = {
    "token_embedder/embedding": ("shared.weight", "copy"),
    "decoder/logits_dense/kernel": ("lm_head.weight", "transpose"),
    "encoder/relpos_bias/rel_embedding": (
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        "relpos",
    ),
    "decoder/relpos_bias/rel_embedding": (
        "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        "relpos",
    ),
    "encoder/encoder_norm/scale": ("encoder.final_layer_norm.weight", "copy"),
    "decoder/decoder_norm/scale": ("decoder.final_layer_norm.weight", "copy"),
}
_ATTENTION = {"query": "q", "key": "k", "value": "v", "out": "o"}
for _t5x, _hf in _ATTENTION.items():
    T5X_TO_HF[f"encoder/layers_{{i}}/attention/{_t5x}/kernel"] = (
        f"encoder.block.{{i}}.layer.0.SelfAttention.{_hf}.weight",
        "transpose",
    )
    T5X_TO_HF[f"decoder/layers_{{i}}/self_attention/{_t5x}/kernel"] = (
        f"decoder.block.{{i}}.layer.0.SelfAttention.{_hf}.weight",
        "transpose",
    )
    T5X_TO_HF[f"decoder/layers_{{i}}/encoder_decoder_attention/{_t5x}/kernel"] = (
        f"decoder.block.{{i}}.layer.1.EncDecAttention.{_hf}.weight",
        "transpose",
    )
for _stack, _ff in (("encoder", 1), ("decoder", 2)):
    for _name in ("wi", "wi_0", "wi_1", "wo"):
        T5X_TO_HF[f"{_stack}/layers_{{i}}/mlp/{_name}/kernel"] = (
            f"{_stack}.block.{{i}}.layer.{_ff}.DenseReluDense.{_name}.weight",
            "transpose",
        )
    T5X_TO_HF[f"{_stack}/layers_{{i}}/pre_mlp_layer_norm/scale"] = (
        f"{_stack}.block.{{i}}.layer.{_ff}.layer_norm.weight",
        "copy",
    )
T5X_TO_HF["encoder/layers_{i}/pre_attention_layer_norm/scale"] = (
    "encoder.block.{i}.layer.0.layer_norm.weight",
    "copy",
)
T5X_TO_HF["decoder/layers_{i}/pre_self_attention_layer_norm/scale"] = (
    "decoder.block.{i}.layer.0.layer_norm.weight",
    "copy",
)
T5X_TO_HF["decoder/layers_{i}/pre_cross_attention_layer_norm/scale"] = (
    "decoder.block.{i}.layer.1.layer_norm.weight",
    "copy",
)

_PATTERNS = [
    (re.compile("^" + re.escape(t5x).replace(r"\{i\}", r"(\d+)") + "$"), hf, how)
    for t5x, (hf, how) in T5X_TO_HF.items()
]


@dataclass(frozen=True)
class T5XCheckpoint:
    """The parameters of a T5X checkpoint, described before reading them.

    Attributes:
        directory: The ``checkpoint_<step>`` directory.
        step: The training step recorded in the train state (or ``None``).
        params: ``{"encoder/layers_0/attention/query/kernel": StoredTensor}``
            in T5X's own layout; ``read()`` returns float32.
    """

    directory: Path
    step: int | None
    params: dict[str, StoredTensor]


def read_t5x_checkpoint(path: str | os.PathLike) -> T5XCheckpoint:
    """Index a T5X checkpoint: its ``checkpoint`` file and zarr arrays.

    Args:
        path: A ``checkpoint_<step>`` directory, its ``checkpoint`` file, or a
            model directory holding ``checkpoint_<step>`` directories (the
            highest step is read).

    Raises:
        FileNotFoundError: no checkpoint there.
        T5XCheckpointError: an unknown layout, or an array the ``checkpoint``
            file refers to that is missing or unreadable.
    """
    msgpack, tensorstore = _require_readers()
    directory = _find_checkpoint_dir(Path(path))
    file = directory / CHECKPOINT_FILE
    try:
        contents = msgpack.unpackb(
            file.read_bytes(), ext_hook=_ext_hook, raw=False, strict_map_key=False
        )
    except Exception as error:  # msgpack raises several unrelated types.
        raise T5XCheckpointError(
            f"{file} is not a T5X msgpack checkpoint file "
            f"({type(error).__name__}: {error})."
        ) from None
    if not isinstance(contents, dict):
        raise T5XCheckpointError(f"{file} holds no train state (a msgpack map).")
    version = contents.get("version", 0)
    state = contents if version == 0 else contents.get("optimizer")
    target = state.get("target") if isinstance(state, dict) else None
    if not isinstance(target, dict):
        raise T5XCheckpointError(
            f"{file}: no parameter tree at "
            f"{'target' if version == 0 else 'optimizer/target'} (version "
            f"{version!r}); expected a T5X train state."
        )
    step = None
    raw_step = (state.get("state") or {}).get("step") if version else None
    if raw_step is not None:
        step = int(np.asarray(raw_step))
    params: dict[str, StoredTensor] = {}
    _flatten(target, "", params, directory, tensorstore)
    return T5XCheckpoint(directory, step, params)


def load_t5x_t5(
    path: str | os.PathLike,
    vocab: str | os.PathLike,
    *,
    relative_attention_max_distance: int = 128,
    dtype: str | keras.DTypePolicy | None = None,
    verbose: int | str = 0,
) -> tuple[keras_hub.models.T5Backbone, keras_hub.models.T5Tokenizer]:
    """Load a T5X T5 checkpoint as a keras-hub backbone and tokenizer.

    Args:
        path: As for :func:`read_t5x_checkpoint`.
        vocab: The model's SentencePiece file (``spiece.model``; T5X
            checkpoints name theirs in gin, e.g. ``cc_all.32000``).
        relative_attention_max_distance: The checkpoint's ``max_distance``
            (not stored in it; T5 uses 128).
        dtype: The backbone's dtype policy (default float32).
        verbose: 0 (silent), 1, 2 or ``"auto"``: a Keras progress bar over
            the arrays read, on stderr.

    Returns:
        ``(backbone, tokenizer)``.

    Example:

    ```python
    from keras_prompt.checkpoints.t5x import load_t5x_t5
    backbone, tokenizer = load_t5x_t5(
        "t5_1_1_lm100k_base/checkpoint_1100000", "spiece.model"
    )
    ```
    """
    checkpoint = read_t5x_checkpoint(path)
    config, tensors = _to_hf(checkpoint, relative_attention_max_distance)
    source = str(checkpoint.directory)
    # The checks are convert_t5's (on the mapped names); their errors are
    # about this T5X checkpoint.
    try:
        spec = convert_t5.parse_config(config, checkpoint.directory / CHECKPOINT_FILE)
        vocab = Path(vocab)
        if not vocab.is_file():
            raise FileNotFoundError(
                f"Vocabulary {vocab} not found; expected the model's SentencePiece "
                "file (T5X checkpoints do not include one)."
            )
        tokenizer = convert_t5.convert_tokenizer(
            keras_hub.models.T5Tokenizer, vocab, vocabulary_size=spec.vocab_size
        )
        embedding_name = convert_t5.check_tensors(
            tensors,
            convert_t5.expected_shapes(spec),
            spec,
            source,
            config_name="the geometry of its embedding and layer-0 arrays",
        )
        loader = TensorLoader(source, tensors)
        tie, _ = convert_t5.resolve_lm_head(
            tensors, loader.get_tensor(embedding_name), spec
        )
        backbone_config = convert_t5.convert_backbone_config(config, source)
        backbone_config["tie_embedding_weights"] = tie
        backbone = convert_t5.backbone_cls(**backbone_config, dtype=dtype)
        label = f"importing {checkpoint.directory}"
        with port_progress(backbone, loader, verbose, label):
            convert_t5.convert_weights(backbone, loader, config)
    except HFCheckpointError as error:
        raise T5XCheckpointError(str(error)) from None
    return backbone, tokenizer


def convert_t5x_checkpoint(
    path: str | os.PathLike,
    preset_dir: str | os.PathLike,
    vocab: str | os.PathLike,
    *,
    relative_attention_max_distance: int = 128,
    verbose: int | str = 0,
) -> Path:
    """Convert a T5X T5 checkpoint into a keras-hub preset directory.

    Written in a temporary directory and renamed into place when complete;
    ``preset_dir`` must be new or empty. The preset loads with keras-hub
    alone (``T5Backbone.from_preset``) and with
    ``PromptTunedT5.from_preset``.
    """
    preset_dir = require_new_dir(preset_dir)
    backbone, tokenizer = load_t5x_t5(
        path,
        vocab,
        relative_attention_max_distance=relative_attention_max_distance,
        verbose=verbose,
    )
    with staged_dir(preset_dir) as staging:
        backbone.save_to_preset(str(staging))
        tokenizer.save_to_preset(str(staging))
    return preset_dir


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def _require_readers():
    try:
        import msgpack
        import tensorstore
    except ImportError as error:
        raise ImportError(
            f"Reading T5X checkpoints needs {error.name}: {_INSTALL_HINT}."
        ) from None
    return msgpack, tensorstore


def _find_checkpoint_dir(path: Path) -> Path:
    if path.is_file() and path.name == CHECKPOINT_FILE:
        return path.parent
    if not path.is_dir():
        raise FileNotFoundError(
            f"T5X checkpoint {path} does not exist; expected a checkpoint_<step> "
            f"directory holding a '{CHECKPOINT_FILE}' file and zarr arrays."
        )
    if (path / CHECKPOINT_FILE).is_file():
        return path
    steps = sorted(
        (int(m.group(1)), child)
        for child in path.iterdir()
        if (m := re.fullmatch(r"checkpoint_(\d+)", child.name))
        and (child / CHECKPOINT_FILE).is_file()
    )
    if steps:
        return steps[-1][1]
    orbax = [
        n
        for n in ("manifest.ocdbt", "_METADATA", "_CHECKPOINT_METADATA")
        if (path / n).exists()
    ]
    if orbax:
        raise T5XCheckpointError(
            f"{path} is an Orbax checkpoint ({', '.join(orbax)}); expected the "
            f"classic T5X layout (a msgpack '{CHECKPOINT_FILE}' file plus "
            "tensorstore zarr arrays), which is what can be read."
        )
    raise FileNotFoundError(
        f"No T5X checkpoint in {path}; expected a '{CHECKPOINT_FILE}' file or "
        "checkpoint_<step> directories holding one."
    )


def _ext_hook(code: int, data: bytes):
    """Decode flax.serialization's msgpack extensions (NumPy arrays)."""
    import msgpack

    if code == _NDARRAY_EXT:
        shape, dtype, buffer = msgpack.unpackb(data, raw=False)
        return np.frombuffer(buffer, dtype=_numpy_dtype(dtype)).reshape(shape)
    if code == _NPSCALAR_EXT:
        dtype, buffer = msgpack.unpackb(data, raw=False)
        return np.frombuffer(buffer, dtype=_numpy_dtype(dtype))[0]
    return msgpack.ExtType(code, data)


def _numpy_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _flatten(tree: Any, prefix: str, out: dict, directory: Path, tensorstore) -> None:
    if isinstance(tree, dict) and tree.get(_CHUNKED_ARRAY_KEY):
        # flax splits arrays over its msgpack chunk size into flat pieces.
        flat = np.concatenate([np.ravel(c) for c in tree["chunks"].values()])
        array = flat.reshape(tuple(tree["shape"]))
        out[prefix] = StoredTensor(array.shape, str(directory), _constant(array))
    elif isinstance(tree, dict) and "driver" in tree:
        out[prefix] = _zarr_tensor(tree, prefix, directory, tensorstore)
    elif isinstance(tree, dict):
        for key, value in tree.items():
            _flatten(
                value,
                f"{prefix}/{key}" if prefix else str(key),
                out,
                directory,
                tensorstore,
            )
    elif isinstance(tree, np.ndarray):
        out[prefix] = StoredTensor(tree.shape, str(directory), _constant(tree))
    # Scalars and None (e.g. unused optimizer slots) are not parameters.


def _constant(array: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: np.asarray(array, dtype=np.float32)


def _zarr_tensor(spec: dict, name: str, directory: Path, tensorstore) -> StoredTensor:
    kvstore = spec.get("kvstore") or {}
    relative = kvstore.get("path") or spec.get("path")
    if spec.get("driver") != "zarr" or not relative:
        raise T5XCheckpointError(
            f"{directory / CHECKPOINT_FILE}: parameter '{name}' has tensorstore "
            f"spec {spec}; expected a zarr array with a kvstore path."
        )
    # T5X writes paths relative to the checkpoint directory, with the "file",
    # "gfile" or (for bucket copies) "gcs" driver; all are read locally.
    array_dir = directory / Path(relative).name
    if not (array_dir / ".zarray").is_file():
        raise T5XCheckpointError(
            f"{array_dir} is missing (no .zarray); the checkpoint file "
            f"{directory / CHECKPOINT_FILE} stores parameter '{name}' there."
        )
    metadata = spec.get("metadata") or {}
    shape = tuple(int(d) for d in metadata.get("shape", ()))
    opened = {}

    def handle():
        if "store" not in opened:
            try:
                opened["store"] = tensorstore.open(
                    {
                        "driver": "zarr",
                        "kvstore": {"driver": "file", "path": str(array_dir)},
                    },
                    read=True,
                ).result()
            except Exception as error:  # tensorstore raises ValueError et al.
                raise T5XCheckpointError(
                    f"{array_dir}: cannot open the zarr array of '{name}': {error}"
                ) from None
        return opened["store"]

    if not shape:
        shape = tuple(int(d) for d in handle().shape)

    def read() -> np.ndarray:
        try:
            array = handle().read().result()
        except T5XCheckpointError:
            raise
        except Exception as error:
            raise T5XCheckpointError(
                f"{array_dir}: cannot read '{name}' (missing or corrupt chunk?): "
                f"{error}"
            ) from None
        return np.asarray(array, dtype=np.float32)

    return StoredTensor(shape, str(array_dir), read)


# --------------------------------------------------------------------------
# T5X layout -> Hugging Face names and config
# --------------------------------------------------------------------------


def _to_hf(
    checkpoint: T5XCheckpoint, max_distance: int
) -> tuple[dict, dict[str, StoredTensor]]:
    """A transformers T5 config and HF-named tensors for a T5X checkpoint."""
    file = checkpoint.directory / CHECKPOINT_FILE
    params = checkpoint.params
    tensors: dict[str, StoredTensor] = {}
    unknown = []
    for name, tensor in params.items():
        for pattern, hf, how in _PATTERNS:
            match = pattern.match(name)
            if match:
                hf_name = hf.format(i=match.group(1)) if match.groups() else hf
                tensors[hf_name] = (name, how, tensor)
                break
        else:
            unknown.append(name)
    if unknown:
        shown = ", ".join(sorted(unknown)[:8])
        raise T5XCheckpointError(
            f"{file}: unknown T5X parameter(s) {shown}"
            f"{' ...' if len(unknown) > 8 else ''}; expected the T5 1.0 / 1.1 "
            "layout of t5x/examples/t5 and flaxformer (token_embedder, "
            "encoder/layers_<i>/attention, mlp, relpos_bias, ...)."
        )
    for required in ("token_embedder/embedding", "encoder/relpos_bias/rel_embedding"):
        if required not in params:
            raise T5XCheckpointError(
                f"{file}: parameter '{required}' is missing; expected a T5 "
                "encoder-decoder in T5X's layout."
            )
    vocab_size, d_model = params["token_embedder/embedding"].shape
    num_heads, num_buckets = params["encoder/relpos_bias/rel_embedding"].shape
    layers = {
        stack: len(
            {n.split("/")[1] for n in params if n.startswith(f"{stack}/layers_")}
        )
        for stack in ("encoder", "decoder")
    }
    if layers["encoder"] != layers["decoder"]:
        raise T5XCheckpointError(
            f"{file}: {layers['encoder']} encoder layers but "
            f"{layers['decoder']} decoder layers; expected a T5 encoder-decoder "
            "with as many of each (keras-hub's T5Backbone has one layer count)."
        )
    gated = "encoder/layers_0/mlp/wi_0/kernel" in params
    query = params.get("encoder/layers_0/attention/query/kernel")
    ffn = params.get(f"encoder/layers_0/mlp/{'wi_0' if gated else 'wi'}/kernel")
    if query is None or ffn is None:
        raise T5XCheckpointError(
            f"{file}: encoder layer 0 lacks attention/query or mlp kernels; "
            "expected a T5 encoder-decoder in T5X's layout."
        )
    inner = int(np.prod(query.shape[1:]))
    config = {
        "model_type": "t5",
        "architectures": ["T5ForConditionalGeneration"],
        "vocab_size": int(vocab_size),
        "d_model": int(d_model),
        "d_kv": inner // int(num_heads),
        "d_ff": int(ffn.shape[-1]),
        "num_layers": layers["encoder"],
        "num_decoder_layers": layers["decoder"],
        "num_heads": int(num_heads),
        "feed_forward_proj": "gated-gelu" if gated else "relu",
        # T5X's T5 1.1 has a separate logits_dense (unscaled); T5 1.0 reuses
        # the embedding and scales by d_model**-0.5, as transformers' tied T5.
        "tie_word_embeddings": "decoder/logits_dense/kernel" not in params,
        "relative_attention_num_buckets": int(num_buckets),
        "relative_attention_max_distance": int(max_distance),
    }
    hf_tensors = {}
    for hf_name, (name, how, tensor) in tensors.items():
        hf_tensors[hf_name] = _mapped(tensor, how, name)
    return config, hf_tensors


def _mapped(tensor: StoredTensor, how: str, name: str) -> StoredTensor:
    if how == "copy":
        return tensor
    if how == "transpose":
        # flaxformer may store attention kernels split per head, (in, heads,
        # head_dim) / (heads, head_dim, out); T5's matrices are their merges.
        shape = tensor.shape
        if len(shape) == 3:
            merged = (
                (shape[0], shape[1] * shape[2])
                if name.endswith(("query/kernel", "key/kernel", "value/kernel"))
                else (shape[0] * shape[1], shape[2])
            )
        else:
            merged = shape

        def read() -> np.ndarray:
            return tensor.read().reshape(merged).T

        return StoredTensor(merged[::-1], tensor.origin, read)
    # relpos: T5X (heads, buckets) -> HF (buckets, heads); convert_t5
    # re-indexes other bucket settings onto keras-hub's.
    return StoredTensor(tensor.shape[::-1], tensor.origin, lambda: tensor.read().T)
