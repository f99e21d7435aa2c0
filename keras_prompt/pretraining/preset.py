"""A pretrained backbone as a keras-hub preset: float32 config, compact weights."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import keras
import keras_hub
import numpy as np


def save_preset(
    backbone: keras_hub.models.T5Backbone,
    vocab: str | os.PathLike,
    out: str | os.PathLike,
    *,
    weights_dtype: str = "float16",
    dropout: float = 0.1,
    model_card: str | None = None,
) -> Path:
    """Writes ``backbone`` + T5 tokenizer as a keras-hub preset directory.

    The preset's config is float32 (so it loads as a normal full-precision
    model, or under whatever ``dtype`` the caller passes), while the weights
    file may store float16/bfloat16 values to halve its size; Keras casts
    them to the variables' dtype on load.
    """
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    config = backbone.get_config()
    config.update(dtype="float32", dropout=dropout)
    export = keras_hub.models.T5Backbone.from_config(config)
    export.set_weights(
        [np.asarray(keras.ops.convert_to_numpy(w), "float32") for w in backbone.weights]
    )
    export.save_to_preset(out)
    keras_hub.models.T5Tokenizer(proto=str(vocab)).save_to_preset(out)
    if weights_dtype != "float32":
        _cast_weights_file(out / "model.weights.h5", weights_dtype)
    if model_card:
        (out / "MODEL_CARD.md").write_text(model_card)
    return out


def _cast_weights_file(path: Path, dtype: str) -> None:
    """Rewrites every float32 array of a Keras ``.weights.h5`` file as ``dtype``."""
    import h5py

    target = (
        np.float16
        if dtype == "float16"
        else keras.ops.convert_to_numpy(keras.ops.zeros((), "bfloat16")).dtype
    )
    tmp = path.with_suffix(".tmp")
    with h5py.File(path, "r") as source, h5py.File(tmp, "w") as dest:

        def copy(name: str, item) -> None:
            if isinstance(item, h5py.Dataset):
                values = item[()]
                if values.dtype == np.float32:
                    values = values.astype(target)
                dest.create_dataset(name, data=values)
                for key, value in item.attrs.items():
                    dest[name].attrs[key] = value
            else:
                group = dest.require_group(name)
                for key, value in item.attrs.items():
                    group.attrs[key] = value

        for key, value in source.attrs.items():
            dest.attrs[key] = value
        source.visititems(copy)
    os.replace(tmp, path)
