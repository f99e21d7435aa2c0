"""``hf://owner/name`` model handles, resolved through the Hugging Face cache.

``PromptTunedT5.from_preset("hf://google/t5-small-lm-adapt")`` (and the CLI's
``--model``) resolve the handle to a local snapshot directory of the Hugging
Face hub cache (``HF_HUB_CACHE``, by default ``~/.cache/huggingface/hub``),
downloading only the files keras-prompt reads, and only when online. With
``HF_HUB_OFFLINE=1`` (or no network) a cached snapshot is used as it is and
nothing is fetched. The directory then loads like any local one: a Hugging
Face T5 checkpoint through ``load_hf_t5``, a keras-hub preset uploaded to the
hub through keras-hub.
"""

from __future__ import annotations

import os
from pathlib import Path

from keras_prompt.checkpoints.errors import HFCheckpointError

__all__ = ["HF_PREFIX", "is_hf_handle", "resolve_hf_handle"]

HF_PREFIX = "hf://"

# What keras-prompt reads from a repository: a transformers T5 checkpoint
# (config, safetensors or shards, legacy TF weights, vocabulary) or a
# keras-hub preset (config, metadata, weights, tokenizer and its assets).
ALLOW_PATTERNS = [
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*.safetensors",
    "tf_model.h5",
    "spiece.model",
    "metadata.json",
    "tokenizer.json",
    "preprocessor.json",
    "model.weights.h5",
    "assets/**",
]


def is_hf_handle(preset: str | os.PathLike) -> bool:
    """Whether ``preset`` is an ``hf://owner/name`` handle."""
    return isinstance(preset, str) and preset.startswith(HF_PREFIX)


def _offline() -> bool:
    # Read at call time (huggingface_hub reads it once, at import).
    value = os.environ.get("HF_HUB_OFFLINE", "")
    return value.strip().upper() in ("1", "ON", "YES", "TRUE")


def resolve_hf_handle(handle: str) -> Path:
    """The local snapshot directory of ``hf://owner/name``.

    Online, missing files are downloaded into the cache first; offline
    (``HF_HUB_OFFLINE=1``) only the cache is read.

    Raises:
        HFCheckpointError: a malformed handle, or (offline) a repository the
            cache does not hold; the message names the cache directory and the
            files expected there.

    Example:

    ```python
    from keras_prompt.checkpoints.hf_hub import resolve_hf_handle
    resolve_hf_handle("hf://google/t5-small-lm-adapt")
    # .../hub/models--google--t5-small-lm-adapt/snapshots/<commit>
    ```
    """
    repo_id = handle[len(HF_PREFIX) :].strip("/")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise HFCheckpointError(
            f"{handle!r} is not a Hugging Face model handle; expected "
            "'hf://owner/name', e.g. 'hf://google/t5-small-lm-adapt'."
        )
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError(
            f"{handle} needs huggingface_hub: pip install 'keras-prompt[hf]'."
        ) from None
    cache_dir = os.environ.get("HF_HUB_CACHE") or None
    offline = _offline()
    try:
        path = huggingface_hub.snapshot_download(
            repo_id,
            allow_patterns=ALLOW_PATTERNS,
            cache_dir=cache_dir,
            local_files_only=offline,
        )
    except Exception as error:  # Offline misses, network and auth errors.
        cache = cache_dir or huggingface_hub.constants.HF_HUB_CACHE
        folder = Path(cache) / f"models--{repo_id.replace('/', '--')}"
        why = (
            "HF_HUB_OFFLINE=1 and the cache does not hold it"
            if offline
            else f"it could not be downloaded ({type(error).__name__})"
        )
        raise HFCheckpointError(
            f"{handle}: {why}; expected {folder}/snapshots/<commit>/ with "
            "config.json, model.safetensors (or tf_model.h5) and spiece.model "
            "(fill the cache once online, e.g. `hf download "
            f"{repo_id}`)."
        ) from None
    return Path(path)
