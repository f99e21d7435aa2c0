"""Prompt files: a float32 `<name>.npy` array and a `<name>.json` description.

A prompt is the whole product of prompt tuning, so it is saved on its own
(KBs, not the frozen backbone's MBs), like PEFT's adapter files. Writes are
atomic (temp file, fsync, rename) so an interrupted or failed save never
leaves a half-written prompt behind, and reads refuse pickled or truncated
arrays with a message naming the file.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

PROMPT_FORMAT_VERSION = 1


def prompt_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """`(array_path, metadata_path)` for `path` given with or without `.npy`."""
    path = Path(path)
    if path.suffix in (".npy", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".npy"), path.with_name(path.name + ".json")


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def check_prompt_array(values, expected_shape: tuple[int, int] | None = None):
    """Validates a prompt array and returns it as float32 numpy."""
    array = np.asarray(values)
    if array.dtype == object or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"A prompt must be a numeric array; got dtype {array.dtype}.")
    if array.ndim != 2:
        raise ValueError(
            "A prompt must have shape (prompt_length, hidden_dim); got shape "
            f"{array.shape}."
        )
    if expected_shape is not None and array.shape != tuple(expected_shape):
        length, width = expected_shape
        if array.shape[1] != width:
            raise ValueError(
                f"Prompt width {array.shape[1]} does not match the model's hidden "
                f"size {width} (prompt shape {array.shape}, expected "
                f"{tuple(expected_shape)})."
            )
        raise ValueError(
            f"Prompt length {array.shape[0]} does not match the model's "
            f"prompt_length {length} (prompt shape {array.shape}, expected "
            f"{tuple(expected_shape)})."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("A prompt must be finite; the array holds NaN or Inf.")
    return array.astype("float32")


def read_prompt_array(path: str | os.PathLike) -> np.ndarray:
    """Loads a `.npy` prompt; refuses pickles and truncated files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Prompt file {path} does not exist.")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e) or "pickle" in str(e).lower():
            raise ValueError(
                f"Prompt file {path} holds a pickled object array; keras-prompt "
                "only loads plain numeric .npy arrays (allow_pickle=False)."
            ) from e
        raise ValueError(f"Prompt file {path} is not a valid .npy array: {e}") from e
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(
            f"Prompt file {path} is not a readable .npy array (truncated or "
            f"corrupt?): {e}"
        ) from e
    if isinstance(array, np.lib.npyio.NpzFile):
        raise ValueError(f"Prompt file {path} is an .npz archive, not a .npy array.")
    return check_prompt_array(array)


def save_prompt_file(
    path: str | os.PathLike, prompt, metadata: dict[str, Any] | None = None
) -> Path:
    """Writes `<path>.npy` and `<path>.json` atomically; returns the `.npy` path."""
    array = check_prompt_array(prompt)
    array_path, metadata_path = prompt_paths(path)
    metadata = {
        "format_version": PROMPT_FORMAT_VERSION,
        "prompt_length": int(array.shape[0]),
        "hidden_dim": int(array.shape[1]),
        **(metadata or {}),
    }
    text = json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n"
    _atomic_write(array_path, lambda f: np.save(f, array, allow_pickle=False))
    _atomic_write(metadata_path, lambda f: f.write(text.encode("utf-8")))
    return array_path


def load_prompt_file(
    path: str | os.PathLike,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Reads a prompt and its metadata (empty when no `.json` sits beside it)."""
    array_path, metadata_path = prompt_paths(path)
    array = read_prompt_array(array_path)
    metadata: dict[str, Any] = {}
    if metadata_path.is_file():
        try:
            metadata = json.loads(metadata_path.read_text("utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(
                f"Prompt metadata {metadata_path} is not valid JSON: {e}"
            ) from e
    return array, metadata
