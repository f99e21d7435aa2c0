"""Hugging Face PEFT prompt-tuning adapters in and out of keras-prompt prompts.

A PEFT prompt-tuning adapter is a directory with ``adapter_config.json``
(``peft_type: "PROMPT_TUNING"``, ``num_virtual_tokens``, ``token_dim``,
``num_transformer_submodules``, ...) and ``adapter_model.safetensors``
holding one tensor, ``prompt_embeddings``, of shape
``(num_virtual_tokens * num_transformer_submodules, token_dim)``.

For a seq2seq model PEFT prepends the first ``num_virtual_tokens`` rows to the
embedded encoder input, which is exactly keras-prompt's soft prompt (Lester et
al.), so such a prompt moves between the two libraries unchanged and scores
the same on the same backbone weights. PEFT's seq2seq default
(``num_transformer_submodules=2``) also prepends a second prompt to the
*decoder* input; keras-prompt's decoder takes no prompt, so those adapters are
refused rather than silently half-applied. Adapters written here set
``num_transformer_submodules=1``.

keras-prompt's own prompt metadata (task, verbalizers, backbone fingerprint)
travels in the safetensors header's ``__metadata__`` under ``keras_prompt``,
which PEFT ignores.

Example:

```python
from keras_prompt import PromptTunedT5
from keras_prompt.peft_prompts import load_peft_prompt, save_peft_prompt

prompt, metadata = load_peft_prompt("adapters/sst2")   # PEFT's save_pretrained dir
model = PromptTunedT5.from_preset("presets/t5", prompt_length=prompt.shape[0])
model.set_prompt(prompt)
save_peft_prompt(model.get_prompt(), "adapters/sst2_again", model=model)
```
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from keras_prompt import prompts as prompt_files
from keras_prompt.checkpoints.errors import HFCheckpointError
from keras_prompt.checkpoints.safetensors_io import (
    index_safetensors,
    write_safetensors,
)
from keras_prompt.files import require_new_dir, staged_dir

__all__ = [
    "ADAPTER_CONFIG_FILE",
    "ADAPTER_WEIGHTS_FILE",
    "PeftAdapterError",
    "load_peft_prompt",
    "save_peft_prompt",
]

ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
PROMPT_KEY = "prompt_embeddings"
_METADATA_KEY = "keras_prompt"


class PeftAdapterError(HFCheckpointError):
    """A PEFT adapter that is not an encoder-only seq2seq prompt for this model."""


def load_peft_prompt(
    adapter_dir: str | os.PathLike, hidden_dim: int | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a PEFT prompt-tuning adapter as a ``(num_virtual_tokens, token_dim)``
    float32 prompt and keras-prompt metadata.

    Args:
        adapter_dir: A directory written by PEFT's ``save_pretrained`` (or
            :func:`save_peft_prompt`).
        hidden_dim: The target model's embedding width; a different
            ``token_dim`` is refused.

    Returns:
        ``(prompt, metadata)``: ``metadata`` is the keras-prompt metadata the
        adapter carries (if written by keras-prompt), plus ``"peft"``, the
        adapter config, and ``"source"``, the adapter directory.

    Raises:
        FileNotFoundError: the directory or one of its two files is missing.
        PeftAdapterError: not a seq2seq prompt-tuning adapter, a prompt on the
            decoder too, a width other than ``hidden_dim``, or a weights file
            whose tensor does not match the config.
    """
    directory = Path(adapter_dir)
    config_path = directory / ADAPTER_CONFIG_FILE
    if not directory.is_dir():
        raise FileNotFoundError(
            f"PEFT adapter directory {directory} does not exist; expected a "
            f"directory holding {ADAPTER_CONFIG_FILE} and {ADAPTER_WEIGHTS_FILE}."
        )
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{config_path} not found; expected the {ADAPTER_CONFIG_FILE} PEFT's "
            "save_pretrained writes."
        )
    try:
        config = json.loads(config_path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PeftAdapterError(f"{config_path} is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise PeftAdapterError(f"{config_path} holds no JSON object.")
    length, width = _check_config(config, config_path, hidden_dim)

    weights_path = directory / ADAPTER_WEIGHTS_FILE
    if not weights_path.is_file():
        pickled = directory / "adapter_model.bin"
        found = (
            f"; found only {pickled.name} (a pickled PyTorch state dict, not "
            "read: re-save with safe_serialization=True)"
            if pickled.is_file()
            else ""
        )
        raise FileNotFoundError(
            f"{weights_path} not found; expected the prompt in safetensors "
            f"format{found}."
        )
    tensors = index_safetensors(weights_path)
    if PROMPT_KEY not in tensors:
        raise PeftAdapterError(
            f"{weights_path} has no '{PROMPT_KEY}' tensor (found "
            f"{sorted(tensors)[:5]}); expected a prompt-tuning adapter's weights."
        )
    if tensors[PROMPT_KEY].shape != (length, width):
        raise PeftAdapterError(
            f"{weights_path}: '{PROMPT_KEY}' has shape {tensors[PROMPT_KEY].shape}; "
            f"expected ({length}, {width}) from {ADAPTER_CONFIG_FILE} "
            "(num_virtual_tokens, token_dim)."
        )
    prompt = prompt_files.check_prompt_array(tensors[PROMPT_KEY].read())
    metadata = _read_metadata(weights_path)
    metadata.update({"peft": config, "source": str(directory)})
    return prompt, metadata


def save_peft_prompt(
    prompt,
    adapter_dir: str | os.PathLike,
    *,
    model=None,
    base_model_name_or_path: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a prompt as a PEFT prompt-tuning adapter directory.

    ``PeftModel.from_pretrained(T5ForConditionalGeneration, adapter_dir)``
    loads it as an encoder-only seq2seq prompt (``task_type
    "SEQ_2_SEQ_LM"``, ``num_transformer_submodules=1``); the backbone may be
    this model exported with ``keras-prompt export-hf``.

    Args:
        prompt: A ``(prompt_length, hidden_dim)`` array.
        adapter_dir: A new or empty directory; written in a temporary
            directory beside it and renamed into place when complete.
        model: Optional ``PromptTunedT5`` (or its ``T5Backbone``) the prompt
            belongs to; its width is checked and its depth and head count
            recorded, as PEFT records them.
        base_model_name_or_path: Recorded for PEFT (``None`` when unknown:
            pass the base model to ``PeftModel.from_pretrained`` yourself).
        metadata: keras-prompt metadata to carry along (task, verbalizers,
            ...), e.g. a prompt file's ``.json``.

    Returns:
        ``adapter_dir`` as a ``Path``.
    """
    values = prompt_files.check_prompt_array(prompt)
    length, width = values.shape
    num_layers = num_heads = None
    if model is not None:
        backbone = getattr(model, "backbone", model)
        if backbone.hidden_dim != width:
            raise PeftAdapterError(
                f"Prompt width {width} does not match the model's hidden size "
                f"{backbone.hidden_dim}; expected a prompt of this model."
            )
        num_layers, num_heads = backbone.num_layers, backbone.num_heads
        if base_model_name_or_path is None:
            base_model_name_or_path = getattr(model, "preset", None)
    config = {
        "peft_type": "PROMPT_TUNING",
        "task_type": "SEQ_2_SEQ_LM",
        "num_virtual_tokens": int(length),
        "token_dim": int(width),
        "num_transformer_submodules": 1,
        "num_attention_heads": num_heads,
        "num_layers": num_layers,
        "prompt_tuning_init": "RANDOM",
        "prompt_tuning_init_text": None,
        "tokenizer_name_or_path": None,
        "tokenizer_kwargs": None,
        "base_model_name_or_path": base_model_name_or_path,
        "revision": None,
        "inference_mode": True,
        "modules_to_save": None,
    }
    directory = require_new_dir(Path(adapter_dir))
    header = {
        "format": "pt",
        _METADATA_KEY: json.dumps(metadata or {}, sort_keys=True, default=str),
    }
    with staged_dir(directory) as staging:
        (staging / ADAPTER_CONFIG_FILE).write_text(
            json.dumps(config, indent=2, sort_keys=True) + "\n", "utf-8"
        )
        write_safetensors(staging / ADAPTER_WEIGHTS_FILE, {PROMPT_KEY: values}, header)
    return directory


def _check_config(
    config: dict, config_path: Path, hidden_dim: int | None
) -> tuple[int, int]:
    """Validate a PEFT adapter config; return (num_virtual_tokens, token_dim)."""
    peft_type = config.get("peft_type")
    if peft_type != "PROMPT_TUNING":
        raise PeftAdapterError(
            f"{config_path}: 'peft_type' is {peft_type!r}; expected 'PROMPT_TUNING'. "
            "Only prompt-tuning adapters are soft prompts (LoRA, prefix tuning "
            "and P-tuning change or extend the backbone itself)."
        )
    task_type = config.get("task_type")
    if task_type != "SEQ_2_SEQ_LM":
        raise PeftAdapterError(
            f"{config_path}: 'task_type' is {task_type!r}; expected 'SEQ_2_SEQ_LM', "
            "an adapter for an encoder-decoder model such as T5."
        )
    submodules = config.get("num_transformer_submodules")
    if submodules is None:
        submodules = 2  # PEFT's default for SEQ_2_SEQ_LM.
    if submodules != 1:
        raise PeftAdapterError(
            f"{config_path}: 'num_transformer_submodules' is {submodules!r}; "
            "expected 1. With 2 (PEFT's seq2seq default) PEFT prepends a prompt "
            "to the decoder input too, which keras-prompt's prompt tuning "
            "(Lester et al.: encoder input only) cannot apply; train the "
            "adapter with PromptTuningConfig(num_transformer_submodules=1)."
        )
    values = {}
    for name in ("num_virtual_tokens", "token_dim"):
        value = config.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise PeftAdapterError(
                f"{config_path}: '{name}' is {value!r}; expected a positive integer."
            )
        values[name] = value
    width = values["token_dim"]
    if hidden_dim is not None and width != hidden_dim:
        raise PeftAdapterError(
            f"{config_path}: 'token_dim' is {width}; expected {hidden_dim}, the "
            "model's hidden size (the adapter was trained for another model)."
        )
    return values["num_virtual_tokens"], width


def _read_metadata(weights_path: Path) -> dict[str, Any]:
    """keras-prompt metadata from the safetensors header, if there is any."""
    with open(weights_path, "rb") as file:
        (size,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(size))
    text = (header.get("__metadata__") or {}).get(_METADATA_KEY)
    if not text:
        return {}
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return metadata if isinstance(metadata, dict) else {}
