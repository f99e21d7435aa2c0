"""Prompt-only training state: KBs instead of the backbone's MBs, written atomically.

Prompt tuning trains one `(prompt_length, hidden_dim)` matrix; everything
else is the frozen backbone, which the preset already holds. So the state
worth saving is the prompt, the optimizer's slots for it, the step counter
and the dropout RNG states, which `save_prompt_state` writes as one small
`.npz` file: atomically (temp file, fsync, rename), so a kill at any moment
leaves either the previous file or the new one, never half of one.
`keras_prompt.callbacks` writes and reads these files during `fit`.

Example:

```python
save_prompt_state(model, "run/state.npz", epoch=3)
load_prompt_state(model, "run/state.npz")  # same prompt shape and backbone
```
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from keras import ops

from keras_prompt import compat, files
from keras_prompt.steps import optimizer_step
from keras_prompt.version import __version__

STATE_FORMAT_VERSION = 1
STATE_KIND = "keras_prompt.prompt_state"


# ----------------------------------------------------------------------
# State files
# ----------------------------------------------------------------------
def _optimizer_slots(model) -> list:
    """The optimizer's variables except the learning rate.

    The learning rate comes from `compile()`, so a resumed run may change it;
    everything else (step counter, moments) is state.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return []
    if not optimizer.built:
        with model.distribute_strategy.scope():
            optimizer.build(model.trainable_variables)
    learning_rate = compat.learning_rate_variable(optimizer)
    return [v for v in optimizer.variables if v is not learning_rate]


def _rng_states(model) -> list:
    """Dropout seed-generator states, so a resumed run draws the same masks."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def _geometry(model) -> dict[str, Any]:
    from keras_prompt.models.identity import backbone_summary

    summary = backbone_summary(model.backbone)
    return {
        "prompt_shape": [int(model.prompt_length), summary["hidden_dim"]],
        "backbone_fingerprint": summary["fingerprint"],
        "num_layers": summary["num_layers"],
        "vocabulary_size": summary["vocabulary_size"],
    }


def _numpy(variable) -> np.ndarray:
    return np.array(ops.convert_to_numpy(variable))


def save_prompt_state(model, path: str | os.PathLike, **metadata) -> Path:
    """Writes the prompt, optimizer state and RNG states to one `.npz`, atomically.

    `metadata` (JSON-serialisable) is stored alongside: callers record the
    epoch, the run configuration, the monitored metric. Returns the path.
    """
    path = Path(path)
    slots = _optimizer_slots(model)
    rngs = _rng_states(model)
    arrays = {"prompt": model.get_prompt()}
    for i, variable in enumerate(slots):
        arrays[f"optimizer_{i:03d}"] = _numpy(variable)
    for i, variable in enumerate(rngs):
        arrays[f"rng_{i:03d}"] = _numpy(variable)
    optimizer = getattr(model, "optimizer", None)
    meta = {
        "kind": STATE_KIND,
        "format_version": STATE_FORMAT_VERSION,
        "keras_prompt_version": __version__,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "step": optimizer_step(model),
        "optimizer": type(optimizer).__name__ if optimizer is not None else None,
        "optimizer_variables": [[v.path, list(map(int, v.shape))] for v in slots],
        "rng_variables": [v.path for v in rngs],
        **_geometry(model),
        **metadata,
    }
    text = json.dumps(meta, sort_keys=True, default=str)
    arrays["metadata"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    files.atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


def read_prompt_state(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and metadata of a state file; `ValueError` if unreadable."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        meta = json.loads(arrays.pop("metadata").tobytes().decode("utf-8"))
    except FileNotFoundError:
        raise
    except Exception as e:  # zipfile, KeyError, JSON, pickle refusal...
        raise ValueError(
            f"{path} is not a readable keras-prompt state file: {e}"
        ) from e
    if meta.get("kind") != STATE_KIND:
        raise ValueError(f"{path} is not a keras-prompt state file.")
    if meta.get("format_version", 0) > STATE_FORMAT_VERSION:
        raise ValueError(
            f"{path} has state format {meta['format_version']}; this keras-prompt "
            f"({__version__}) reads up to {STATE_FORMAT_VERSION}."
        )
    return arrays, meta


def check_state_compatible(model, meta: dict, path: str | os.PathLike) -> None:
    """Refuses state written for another prompt shape or backbone, naming both."""
    here = _geometry(model)
    theirs_shape = tuple(meta.get("prompt_shape", ()))
    ours_shape = tuple(here["prompt_shape"])
    if (
        theirs_shape != ours_shape
        or meta.get("backbone_fingerprint") != here["backbone_fingerprint"]
    ):
        raise ValueError(
            f"{path} was saved for a prompt of shape {theirs_shape} on backbone "
            f"{meta.get('backbone_fingerprint')} ({meta.get('num_layers')} layers), "
            f"but this model's prompt has shape {ours_shape} on backbone "
            f"{here['backbone_fingerprint']} ({here['num_layers']} layers). Resume "
            "with the same model and --prompt-length, or use a fresh directory."
        )


def load_prompt_state(
    model,
    path: str | os.PathLike,
    *,
    restore_optimizer: bool = True,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Restores a `save_prompt_state` file into `model`; returns its metadata.

    Everything is validated before anything is assigned: the prompt shape
    and backbone must match (`ValueError` naming both shapes otherwise), and
    so must the optimizer's class and slot shapes.
    """
    arrays, meta = read_prompt_state(path)
    check_state_compatible(model, meta, path)
    assignments = [(model.soft_prompt.prompt, arrays["prompt"])]
    if restore_optimizer and getattr(model, "optimizer", None) is not None:
        slots = _optimizer_slots(model)
        saved = meta.get("optimizer_variables", [])
        if meta.get("optimizer") != type(model.optimizer).__name__ or [
            list(map(int, v.shape)) for v in slots
        ] != [shape for _, shape in saved]:
            raise ValueError(
                f"{path} holds {meta.get('optimizer')} state "
                f"{[tuple(s) for _, s in saved]}, but this model is compiled "
                f"with {type(model.optimizer).__name__} "
                f"{[tuple(v.shape) for v in slots]}."
            )
        assignments += [(v, arrays[f"optimizer_{i:03d}"]) for i, v in enumerate(slots)]
    if restore_rng:
        rngs = _rng_states(model)
        if [v.path for v in rngs] == meta.get("rng_variables"):
            assignments += [(v, arrays[f"rng_{i:03d}"]) for i, v in enumerate(rngs)]
        elif rngs:
            warnings.warn(
                f"{path}: dropout RNG states do not match this model's; dropout "
                "masks after resuming will differ from an uninterrupted run.",
                stacklevel=2,
            )
    with model.distribute_strategy.scope():
        for variable, value in assignments:
            variable.assign(value.astype(variable.dtype))
    return meta
