"""Loading a T5 backbone and tokenizer from a preset name, directory or checkpoint.

`load_backbone` takes what `PromptTunedT5.from_preset` takes: a keras-hub
preset name, a keras-hub preset directory, a Hugging Face T5 checkpoint
directory, or an `hf://owner/name` handle, and checks local directories
before keras-hub would try them as preset names, so a typo gets a clear
error instead of a download attempt.

Example:

```python
from keras_prompt.models.loading import load_backbone
backbone, tokenizer = load_backbone("presets/t5", dropout=0.0)
```
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras_hub


def load_backbone(
    preset: str | os.PathLike,
    *,
    load_weights: bool = True,
    dtype=None,
    dropout: float | None = None,
) -> tuple[keras_hub.models.T5Backbone, keras_hub.models.T5Tokenizer]:
    """The `T5Backbone` and `T5Tokenizer` of a preset name or directory.

    Takes what `PromptTunedT5.from_preset` takes: a keras-hub preset name, a
    keras-hub preset directory, a Hugging Face T5 checkpoint directory, or an
    `hf://owner/name` handle, resolved through the local Hugging Face cache
    (`HF_HUB_OFFLINE=1` reads only the cache; see
    `keras_prompt.checkpoints.hf_hub`).
    `dropout`, when given, replaces the checkpoint's dropout rate.
    """
    preset_str = os.fspath(preset)
    if preset_str.startswith("hf://"):
        from keras_prompt.checkpoints.hf_hub import resolve_hf_handle

        preset_str = str(resolve_hf_handle(preset_str))
    _check_local_model_dir(preset_str)
    if dropout is not None and not 0 <= dropout < 1:
        raise ValueError(f"`dropout` must be in [0, 1); got {dropout!r}.")
    if _is_hf_checkpoint_dir(preset_str):
        from keras_prompt.checkpoints import load_hf_t5

        backbone, tokenizer = load_hf_t5(preset_str, dtype=dtype)
    else:
        backbone = keras_hub.models.T5Backbone.from_preset(
            preset_str, load_weights=load_weights, dtype=dtype
        )
        tokenizer = keras_hub.models.T5Tokenizer.from_preset(preset_str)
    if dropout is not None and dropout != backbone.get_config()["dropout"]:
        # keras-hub's preset loader forwards only `dtype` to the config.
        rebuilt = keras_hub.models.T5Backbone.from_config(
            {**backbone.get_config(), "dropout": dropout}
        )
        rebuilt.set_weights(backbone.get_weights())
        backbone = rebuilt
    return backbone, tokenizer


def _check_local_model_dir(path: str) -> None:
    """Clear errors for local paths before keras-hub tries them as preset names."""
    looks_local = os.sep in path or path.startswith(".") or Path(path).exists()
    if not looks_local:
        return  # a keras-hub preset name, resolved (and downloaded) by keras-hub
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"Model directory {directory} does not exist.")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"Model directory {directory} has no config.json: expected a keras-hub "
            "preset (config.json, model.weights.h5, tokenizer.json, assets/) or a "
            "Hugging Face T5 checkpoint (config.json, model.safetensors or "
            "tf_model.h5, spiece.model)."
        )
    if _is_hf_checkpoint_dir(path):
        return  # the HF importer validates the rest
    try:
        config = json.loads(config_path.read_text("utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{config_path} is not valid JSON: {e}") from e
    class_name = config.get("class_name") if isinstance(config, dict) else None
    if class_name != "T5Backbone":
        raise ValueError(
            f"{config_path} describes a {class_name!r} backbone; PromptTunedT5 needs "
            "a T5Backbone preset."
        )
    if not (directory / "model.weights.h5").is_file() and not any(
        directory.glob("model*.weights.h5")
    ):
        raise FileNotFoundError(
            f"Model directory {directory} has no weights file (model.weights.h5)."
        )


def _is_hf_checkpoint_dir(path: str) -> bool:
    """True for a directory holding a Hugging Face (not keras-hub) checkpoint."""
    config_path = Path(path) / "config.json"
    if not config_path.is_file() or (Path(path) / "metadata.json").is_file():
        return False
    try:
        config = json.loads(config_path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return "model_type" in config and "class_name" not in config
