"""safetensors files read and written with NumPy alone.

The format is an 8-byte little-endian header length, a JSON header mapping
each tensor name to its dtype, shape and byte offsets (plus an optional
``__metadata__`` object of strings), then the raw little-endian data. It is
handled here rather than with the ``safetensors`` package because that
package's NumPy backend cannot return bfloat16 tensors, the storage dtype of
many Flan-T5 checkpoints, and because keras-prompt should not need it at run
time.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_prompt.checkpoints.errors import HFCheckpointError

__all__ = ["StoredTensor", "index_safetensors", "write_safetensors"]


@dataclass(frozen=True)
class StoredTensor:
    """A tensor in a checkpoint, described before reading it.

    ``shape`` is in the checkpoint's own layout (PyTorch's for Hugging Face
    files); ``read()`` returns it as float32.
    """

    shape: tuple[int, ...]
    origin: str
    read: Callable[[], np.ndarray]


def _bfloat16() -> np.dtype:
    import ml_dtypes  # A keras dependency; numpy has no bfloat16.

    return np.dtype(ml_dtypes.bfloat16)


_NUMPY_CODES = {"F64": "<f8", "F32": "<f4", "F16": "<f2"}


def _dtype(code: str, name: str, path: Path) -> np.dtype:
    if code == "BF16":
        return _bfloat16()
    if code not in _NUMPY_CODES:
        raise HFCheckpointError(
            f"{path}: tensor '{name}' has dtype {code}; expected a floating point "
            "dtype (F32, F16, BF16 or F64). Quantized checkpoints are not supported."
        )
    return np.dtype(_NUMPY_CODES[code])


def index_safetensors(path: str | Path) -> dict[str, StoredTensor]:
    """Parse a safetensors header; tensors are read lazily, one at a time."""
    path = Path(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as file:
            (header_size,) = struct.unpack("<Q", file.read(8))
            if header_size > size - 8:
                raise ValueError(f"header length {header_size} exceeds file size")
            header = json.loads(file.read(header_size))
        if not isinstance(header, dict):
            raise TypeError("header is not a JSON object")
    except (struct.error, TypeError, ValueError, UnicodeDecodeError) as error:
        raise HFCheckpointError(
            f"{path} is not a safetensors file ({error})."
        ) from error
    data_start = 8 + header_size
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _dtype(info["dtype"], name, path)
        shape = tuple(int(d) for d in info["shape"])
        begin, end = (int(o) for o in info["data_offsets"])
        if end - begin != int(np.prod(shape)) * dtype.itemsize or (
            data_start + end > size
        ):
            raise HFCheckpointError(
                f"{path}: tensor '{name}' has inconsistent byte offsets "
                f"{[begin, end]} for shape {shape}; the file looks truncated."
            )

        def read(begin=begin, end=end, dtype=dtype, shape=shape) -> np.ndarray:
            with open(path, "rb") as file:
                file.seek(data_start + begin)
                data = file.read(end - begin)
            return np.frombuffer(data, dtype=dtype).reshape(shape).astype(np.float32)

        tensors[name] = StoredTensor(shape, str(path), read)
    return tensors


_WRITE_CODES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


def write_safetensors(
    path: str | Path,
    tensors: dict[str, np.ndarray],
    metadata: dict[str, str] | None = None,
    dtype: str = "float32",
    on_tensor: Callable[[str], None] | None = None,
) -> Path:
    """Write ``tensors`` (cast to ``dtype``) as one safetensors file.

    ``metadata`` defaults to ``{"format": "pt"}``, which transformers expects
    of PyTorch-layout files. ``on_tensor(name)`` is called after each tensor
    is written (progress bars).

    Example:

    ```python
    import numpy as np
    from keras_prompt.checkpoints.safetensors_io import (
        index_safetensors, write_safetensors)
    write_safetensors("/tmp/x.safetensors", {"w": np.eye(2, dtype="float32")})
    index_safetensors("/tmp/x.safetensors")["w"].read()  # the 2x2 identity
    ```
    """
    if dtype not in _WRITE_CODES:
        raise ValueError(
            f"dtype {dtype!r} is not one of {sorted(_WRITE_CODES)} for {path}."
        )
    if dtype == "bfloat16":
        numpy_dtype = _bfloat16()
    else:
        numpy_dtype = np.dtype(_NUMPY_CODES[_WRITE_CODES[dtype]])
    header: dict = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for name, value in tensors.items():
        shape = list(np.shape(value))
        size = int(np.prod(shape)) * numpy_dtype.itemsize
        header[name] = {
            "dtype": _WRITE_CODES[dtype],
            "shape": shape,
            "data_offsets": [offset, offset + size],
        }
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)  # Data starts 8-byte aligned.
    path = Path(path)
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(text)))
        file.write(text)
        # One tensor in memory at a time, converted as it is written.
        for name, value in tensors.items():
            data = np.ascontiguousarray(np.asarray(value).astype(numpy_dtype))
            file.write(data.tobytes())
            if on_tensor is not None:
                on_tensor(name)
    return path
