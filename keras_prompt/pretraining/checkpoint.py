"""Pretraining checkpoints: weights, optimizer state and ``state.json``, atomically.

A checkpoint directory holds ``model.weights.h5`` (the backbone),
``optimizer.npz`` and ``state.json`` (the step, the run's accounting and the
backbone's architecture and fingerprint, `keras_prompt.models.identity`).
A new checkpoint is written beside the old one and swapped in with renames,
so a crash at any moment leaves a complete checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_prompt.models.identity import backbone_architecture as _architecture
from keras_prompt.models.identity import backbone_fingerprint
from keras_prompt.pretraining.model import T5Pretrainer


class CheckpointMismatchError(ValueError):
    """A checkpoint was made for another backbone geometry or run setup."""


def save_checkpoint(
    directory: str | os.PathLike,
    model: T5Pretrainer,
    state: dict[str, Any],
) -> Path:
    """Writes weights, optimizer state and ``state.json``; atomically replaces.

    The new checkpoint is written beside the old one and swapped in with
    renames, so a crash at any moment leaves a complete checkpoint (the old
    or the new one).
    """
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.backbone.save_weights(tmp / "model.weights.h5")
    variables = model.optimizer.variables
    np.savez(
        tmp / "optimizer.npz",
        **{
            f"v{i:05d}": np.asarray(keras.ops.convert_to_numpy(v))
            for i, v in enumerate(variables)
        },
    )
    payload = dict(state)
    payload["architecture"] = _architecture(model.backbone)
    payload["fingerprint"] = backbone_fingerprint(model.backbone)
    payload["optimizer_variables"] = [[v.path, list(v.shape)] for v in variables]
    (tmp / "state.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def find_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The complete checkpoint at ``directory`` (or its ``.old`` twin), if any."""
    directory = Path(directory)
    for candidate in (directory, directory.with_name(directory.name + ".old")):
        if (candidate / "state.json").is_file():
            return candidate
    return None


def read_checkpoint_state(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``state.json`` of a checkpoint directory."""
    path = Path(directory) / "state.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} is not a pretraining checkpoint (no state.json)."
        )
    return json.loads(path.read_text("utf-8"))


def restore_checkpoint(
    directory: str | os.PathLike, model: T5Pretrainer
) -> dict[str, Any]:
    """Loads a checkpoint into a compiled model; checks the geometry first.

    Raises:
        CheckpointMismatchError: the checkpoint's backbone architecture differs
            from ``model``'s (the message lists the differing settings).
    """
    directory = Path(directory)
    state = read_checkpoint_state(directory)
    expected = _architecture(model.backbone)
    saved = state.get("architecture", {})
    if saved != json.loads(json.dumps(expected, default=str)):
        keys = sorted(set(saved) | set(expected))
        diff = {
            k: (saved.get(k), expected.get(k))
            for k in keys
            if saved.get(k) != expected.get(k)
        }
        raise CheckpointMismatchError(
            f"Cannot resume from {directory}: it was made for another backbone "
            "geometry. Differences (checkpoint, this run): "
            + ", ".join(f"{k}: {a!r} vs {b!r}" for k, (a, b) in diff.items())
            + ". Use a new --out directory or the matching --geometry/--model."
        )
    model.backbone.load_weights(directory / "model.weights.h5")
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    with np.load(directory / "optimizer.npz") as arrays:
        values = [arrays[f"v{i:05d}"] for i in range(len(arrays.files))]
    variables = optimizer.variables
    if len(values) != len(variables) or any(
        tuple(v.shape) != a.shape for v, a in zip(variables, values)
    ):
        raise CheckpointMismatchError(
            f"Cannot resume from {directory}: its optimizer state has "
            f"{len(values)} variables, this run's optimizer {len(variables)} (or "
            "their shapes differ)."
        )
    for variable, value in zip(variables, values):
        variable.assign(value)
    return state
