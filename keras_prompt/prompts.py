"""Prompt files: a float32 `<name>.npy` array and a `<name>.json` description.

A prompt is the whole product of prompt tuning, so it is saved on its own
(KBs, not the frozen backbone's MBs), like PEFT's adapter files.

The pair is saved as one unit. The JSON records the array's sha256, and a
save commits in one atomic step, the rename of the `.npy`: the new JSON is
first written beside it under a hidden name derived from the new array's
hash, then the array is renamed into place, then the JSON. A reader that
finds an array whose hash the JSON does not carry takes that hidden JSON (a
save interrupted after its commit), so after any interruption it sees either
the old pair or the new one, never a mix; a pair that does not match
otherwise is refused. Temporaries left by killed saves are removed by the
next save.

Reads check everything before any value is used: the `.npy` magic bytes,
pickles and truncation, a floating dtype, finite values after conversion to
float32, and every field of the JSON whose meaning keras-prompt relies on.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from keras_prompt import files

PROMPT_FORMAT_VERSION = 1
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def prompt_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """`(array_path, metadata_path)` for `path` given with or without `.npy`."""
    path = Path(path)
    if path.suffix in (".npy", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".npy"), path.with_name(path.name + ".json")


def _pending_metadata_path(metadata_path: Path, digest: str) -> Path:
    """Where a save keeps the JSON of the array with sha256 `digest` until
    that array is in place."""
    return metadata_path.with_name(f".{metadata_path.name}.{digest[:16]}.pending")


# ----------------------------------------------------------------------
# The array
# ----------------------------------------------------------------------
def check_prompt_array(values, expected_shape: tuple[int, int] | None = None):
    """Validates a prompt array and returns it as float32 numpy.

    Only floating dtypes are accepted (an integer or complex array is not a
    prompt, and casting it would hide that), and values must be finite as
    float32, so a float64 value beyond float32's range is refused too.
    """
    array = np.asarray(values)
    dtype = array.dtype
    if not (np.issubdtype(dtype, np.floating) or dtype.name == "bfloat16"):
        raise ValueError(
            f"A prompt must be a floating-point array (float16/32/64); got dtype "
            f"{dtype}."
        )
    if array.ndim != 2:
        raise ValueError(
            "A prompt must have shape (prompt_length, hidden_dim); got shape "
            f"{array.shape}."
        )
    if min(array.shape) < 1:
        raise ValueError(
            "A prompt needs at least one position and a width of at least 1; got "
            f"shape {array.shape}."
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
    with np.errstate(over="ignore", invalid="ignore"):
        converted = array.astype("float32")
    if not np.all(np.isfinite(converted)):
        if np.all(np.isfinite(array.astype("float64"))):
            raise ValueError(
                "A prompt must be finite as float32; the array holds values "
                f"beyond float32's range (largest magnitude "
                f"{float(np.max(np.abs(array.astype('float64')))):.3g})."
            )
        raise ValueError("A prompt must be finite; the array holds NaN or Inf.")
    return converted


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _read_bytes(path: Path, what: str) -> bytes:
    if path.is_dir():
        raise ValueError(f"{what} {path} is a directory, not a .npy file.")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist.")
    return path.read_bytes()


def _parse_npy(data: bytes, path: Path, what: str = "Prompt file") -> np.ndarray:
    """The array in `.npy` bytes; refuses anything else with what it is."""
    where = f"{what} {path}"
    if path.is_symlink():
        where += f" (a link to {os.path.realpath(path)})"
    if data.startswith(_ZIP_MAGIC):
        raise ValueError(f"{where} is an .npz archive, not a .npy array.")
    if not data.startswith(_NPY_MAGIC):
        found = "is empty" if not data else f"starts with {data[:12]!r}"
        raise ValueError(
            f"{where} is not a .npy array: the file {found}, while a .npy file "
            "starts with the bytes b'\\x93NUMPY'."
        )
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise ValueError(
                f"{where} holds a pickled object array; keras-prompt only loads "
                "plain numeric .npy arrays (allow_pickle=False)."
            ) from None
        raise ValueError(
            f"{where} is not a readable .npy array (truncated or corrupt?): {e}"
        ) from None
    except (OSError, EOFError) as e:
        raise ValueError(
            f"{where} is not a readable .npy array (truncated or corrupt?): {e}"
        ) from None
    try:
        return check_prompt_array(array)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def read_prompt_array(path: str | os.PathLike) -> np.ndarray:
    """Loads a `.npy` prompt alone; refuses pickles, truncated and non-float files."""
    path = Path(path)
    return _parse_npy(_read_bytes(path, "Prompt file"), path)


# ----------------------------------------------------------------------
# The metadata
# ----------------------------------------------------------------------
def _describe(value) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    if value is None:
        return "null"
    text = json.dumps(value, default=str)
    if len(text) > 60:
        text = text[:57] + "..."
    kind = {dict: "an object", list: "a list", bool: "a boolean"}.get(
        type(value), "the number" if isinstance(value, (int, float)) else "a value"
    )
    return f"{kind} {text}"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field_error(path: Path, field: str, expected: str, value) -> ValueError:
    return ValueError(
        f"Prompt metadata {path}: field {field!r} must be {expected}; got "
        f"{_describe(value)}."
    )


def _check_type(metadata: dict, path: Path, field: str, check, expected: str):
    value = metadata.get(field.rsplit(".", 1)[-1])
    if value is not None and not check(value):
        raise _field_error(path, field, expected, value)
    return value


def _is_label_list(value) -> bool:
    return (
        isinstance(value, list)
        and all(isinstance(v, str) and v.strip() for v in value)
        and len(set(value)) == len(value)
    )


def check_prompt_metadata(
    metadata: Any, array: np.ndarray, path: str | os.PathLike
) -> dict[str, Any]:
    """Validates a prompt's JSON against its array; returns it.

    Fields keras-prompt relies on must have their types (`verbalizers` a list
    of distinct non-empty strings, `backbone` an object, ...) and the sizes
    must agree with the array. Unknown fields are kept as they are. Every
    refusal names the file and the field.
    """
    path = Path(path)
    if not isinstance(metadata, dict):
        raise ValueError(
            f"Prompt metadata {path} must be a JSON object; got {_describe(metadata)}."
        )
    version = _check_type(metadata, path, "format_version", _is_int, "an integer")
    if version is not None and not 1 <= version <= PROMPT_FORMAT_VERSION:
        raise ValueError(
            f"Prompt metadata {path}: field 'format_version' is {version}; this "
            f"keras-prompt reads format 1 to {PROMPT_FORMAT_VERSION}."
        )
    sizes = {"prompt_length": array.shape[0], "hidden_dim": array.shape[1]}
    for field, size in sizes.items():
        value = _check_type(metadata, path, field, _is_int, "an integer")
        if value is not None and value != size:
            raise ValueError(
                f"Prompt metadata {path}: field {field!r} is {value}, but the "
                f"array has shape {array.shape}."
            )
    for field in ("task", "keras_prompt_version", "array_sha256"):
        _check_type(metadata, path, field, lambda v: isinstance(v, str), "a string")
    for field in ("steps", "seed"):
        _check_type(metadata, path, field, _is_int, "an integer")
    _check_type(
        metadata,
        path,
        "verbalizers",
        _is_label_list,
        "a list of distinct, non-blank strings",
    )
    _check_type(
        metadata,
        path,
        "init",
        lambda v: isinstance(v, (str, dict)),
        "a string or an object",
    )
    backbone = _check_type(
        metadata, path, "backbone", lambda v: isinstance(v, dict), "an object"
    )
    if backbone is not None:
        for field in ("class_name", "fingerprint", "preset"):
            _check_type(
                backbone,
                path,
                f"backbone.{field}",
                lambda v: isinstance(v, str),
                "a string",
            )
        for field in ("hidden_dim", "num_layers", "vocabulary_size"):
            _check_type(backbone, path, f"backbone.{field}", _is_int, "an integer")
        width = backbone.get("hidden_dim")
        if width is not None and width != array.shape[1]:
            raise ValueError(
                f"Prompt metadata {path}: field 'backbone.hidden_dim' is {width}, "
                f"but the array has shape {array.shape}."
            )
    return metadata


def check_prompt_backbone(
    metadata: dict[str, Any],
    path: str | os.PathLike,
    *,
    fingerprint: str,
    hidden_dim: int,
) -> None:
    """Refuses a prompt whose metadata names another backbone than the model's.

    A prompt lives in the embedding space of the backbone it was trained
    with; on another architecture it is noise, whatever its shape.
    """
    backbone = metadata.get("backbone") or {}
    width = backbone.get("hidden_dim")
    if width is not None and width != hidden_dim:
        raise ValueError(
            f"Prompt metadata {path}: field 'backbone.hidden_dim' is {width}, but "
            f"the model's hidden size is {hidden_dim}."
        )
    expected = backbone.get("fingerprint")
    if expected is not None and expected != fingerprint:
        raise ValueError(
            f"Prompt metadata {path}: field 'backbone.fingerprint' is {expected}, "
            f"but the model's backbone has fingerprint {fingerprint} (another "
            "architecture); a prompt only works with the backbone it was trained on."
        )


def _read_metadata(path: Path) -> Any:
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"Prompt metadata {path} is not UTF-8 text ({e.reason} at byte {e.start})."
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"Prompt metadata {path} is not valid JSON: {e}") from None


# ----------------------------------------------------------------------
# The pair
# ----------------------------------------------------------------------
def _stale_patterns(array_path: Path, metadata_path: Path) -> list[str]:
    return [
        f".{array_path.name}.*.tmp",
        f".{metadata_path.name}.*.tmp",
        f".{metadata_path.name}.*.pending",
    ]


def _finish_interrupted_save(array_path: Path, metadata_path: Path) -> None:
    """Completes a save killed between its commit and its JSON's rename, then
    removes what killed saves left behind."""
    if array_path.is_file():
        digest = hashlib.sha256(array_path.read_bytes()).hexdigest()
        pending = _pending_metadata_path(metadata_path, digest)
        if pending.is_file() and not files.is_locked(pending):
            os.replace(pending, metadata_path)
    files.remove_stale(array_path.parent, _stale_patterns(array_path, metadata_path))


def save_prompt_file(
    path: str | os.PathLike, prompt, metadata: dict[str, Any] | None = None
) -> Path:
    """Writes `<path>.npy` and `<path>.json` as one unit; returns the `.npy` path.

    Refuses, before touching any file, a prompt that is not a finite float
    matrix and metadata that is not JSON or fails `check_prompt_metadata`.
    """
    array = check_prompt_array(prompt)
    array_path, metadata_path = prompt_paths(path)
    data = _npy_bytes(array)
    digest = hashlib.sha256(data).hexdigest()
    metadata = {
        "format_version": PROMPT_FORMAT_VERSION,
        "prompt_length": int(array.shape[0]),
        "hidden_dim": int(array.shape[1]),
        **(metadata or {}),
        "array_sha256": digest,
    }
    text = json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n"
    check_prompt_metadata(json.loads(text), array, metadata_path)
    array_path.parent.mkdir(parents=True, exist_ok=True)
    _finish_interrupted_save(array_path, metadata_path)
    with files.temp_file(metadata_path, lambda f: f.write(text.encode("utf-8"))) as t:
        pending = _pending_metadata_path(metadata_path, digest)
        os.replace(t, pending)
        files.atomic_write(array_path, data)  # The commit.
        os.replace(pending, metadata_path)
    files.sync_directory(array_path.parent)
    return array_path


def load_prompt_file(
    path: str | os.PathLike,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Reads a prompt and its metadata (empty when no `.json` sits beside it).

    Raises:
        FileNotFoundError: no `.npy` at `path`.
        ValueError: the array or the metadata is invalid (see
            `check_prompt_array`, `check_prompt_metadata`), or the two files
            come from different saves.
    """
    array_path, metadata_path = prompt_paths(path)
    # A save that commits between our two reads looks like a mismatched
    # pair; reading again then sees it whole.
    for _ in range(3):
        data = _read_bytes(array_path, "Prompt file")
        digest = hashlib.sha256(data).hexdigest()
        metadata = _read_metadata(metadata_path) if metadata_path.is_file() else {}
        recorded = metadata.get("array_sha256") if isinstance(metadata, dict) else None
        if recorded is None or recorded == digest:
            break
        pending = _pending_metadata_path(metadata_path, digest)
        if pending.is_file():
            metadata = _read_metadata(pending)
            break
    else:
        raise ValueError(
            f"Prompt file {array_path} does not match its metadata {metadata_path}: "
            f"the array's sha256 is {digest[:16]}..., the metadata's "
            f"'array_sha256' is {str(recorded)[:16]}...; the two files come from "
            f"different saves. Save the prompt again, or remove {metadata_path.name} "
            "to load the array without metadata."
        )
    array = _parse_npy(data, array_path)
    return array, check_prompt_metadata(metadata, array, metadata_path)
