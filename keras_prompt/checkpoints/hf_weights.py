"""Hugging Face weight files: find them, describe their tensors, port them.

A checkpoint's weights are ``model.safetensors``, a sharded
``model.safetensors.index.json`` or the legacy TensorFlow ``tf_model.h5``.
:class:`HFWeightLoader` indexes whichever is present without reading any
tensor, and ports tensors into Keras variables one at a time, like keras-hub's
``keras_hub.src.utils.transformers.safetensor_utils.SafetensorLoader``
(``port_weight(keras_variable, hf_weight_key, hook_fn)``), so a converter
written against one runs against the other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from keras_prompt.checkpoints.errors import HFCheckpointError
from keras_prompt.checkpoints.safetensors_io import StoredTensor, index_safetensors

__all__ = ["HFWeightLoader", "TensorLoader", "index_weights"]

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"
TF_H5_FILE = "tf_model.h5"

# Weight files transformers can write that this importer deliberately does not
# read, so the "no weights" error can say what it found instead.
_UNSUPPORTED_WEIGHT_FILES = {
    "pytorch_model.bin": "a pickled PyTorch state dict",
    "pytorch_model.bin.index.json": "a sharded pickled PyTorch state dict",
    "tf_model.h5.index.json": "a sharded TensorFlow checkpoint",
    "flax_model.msgpack": "a Flax checkpoint",
}


class TensorLoader:
    """Named tensors in Hugging Face (PyTorch) layout, read on demand.

    Args:
        source: What the tensors come from (a file or directory), for errors.
        tensors: ``{hf_weight_key: StoredTensor}``.
    """

    def __init__(self, source: str, tensors: dict[str, StoredTensor]):
        self.source = source
        self.tensors = tensors
        # Advanced once per ported tensor when set (a keras_prompt.progress
        # ProgressBar), so long imports show progress.
        self.progress = None

    def get_tensor(self, hf_weight_key: str) -> np.ndarray:
        """The tensor ``hf_weight_key`` as float32, PyTorch layout."""
        return self.tensors[hf_weight_key].read()

    def port_weight(
        self,
        keras_variable,
        hf_weight_key: str,
        hook_fn: Callable[[np.ndarray, tuple], np.ndarray] | None = None,
    ) -> None:
        """Assign tensor ``hf_weight_key`` (through ``hook_fn``) to a variable.

        ``hook_fn(tensor, keras_shape)`` maps the PyTorch-layout tensor to
        the variable's layout, as in keras-hub's ``SafetensorLoader``.
        """
        value = self.get_tensor(hf_weight_key)
        shape = tuple(keras_variable.shape)
        if hook_fn is not None:
            value = hook_fn(value, shape)
        if tuple(value.shape) != shape:
            # Shapes were validated against config.json; this is a converter bug.
            raise AssertionError(
                f"Keras variable {keras_variable.path} has shape {shape} but "
                f"tensor '{hf_weight_key}' maps to shape {tuple(value.shape)}."
            )
        keras_variable.assign(value)
        if self.progress is not None:
            self.progress.add(1)


class HFWeightLoader(TensorLoader):
    """The tensors of a Hugging Face checkpoint directory, read on demand.

    Args:
        checkpoint_dir: The directory ``save_pretrained`` wrote.

    Attributes:
        source: The weights file (or shard index) the tensors come from.
        tensors: ``{name: StoredTensor}``, shapes in PyTorch layout.
    """

    def __init__(self, checkpoint_dir: str | Path):
        super().__init__(*index_weights(Path(checkpoint_dir)))


def index_weights(checkpoint_dir: Path) -> tuple[str, dict[str, StoredTensor]]:
    """Find the weights file and describe its tensors without reading them."""
    single = checkpoint_dir / SAFETENSORS_FILE
    index = checkpoint_dir / SAFETENSORS_INDEX_FILE
    h5 = checkpoint_dir / TF_H5_FILE
    if single.is_file():
        return str(single), index_safetensors(single)
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


def _index_sharded_safetensors(index_path: Path) -> dict[str, StoredTensor]:
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
        for name, tensor in index_safetensors(shard).items():
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


def _index_tf_h5(path: Path) -> dict[str, StoredTensor]:
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
                tensors[pt_name] = StoredTensor(
                    shape, f"{path}:{layer}/{weight}", reader(layer, weight, transpose)
                )
    return tensors
