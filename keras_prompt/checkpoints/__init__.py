"""Checkpoints of other frameworks in and out of keras-hub T5 models."""

from keras_prompt.checkpoints.errors import (
    CheckpointError,
    HFCheckpointError,
    T5XCheckpointError,
)
from keras_prompt.checkpoints.huggingface import (
    convert_hf_checkpoint,
    export_hf_checkpoint,
    load_hf_t5,
)

__all__ = [
    "CheckpointError",
    "HFCheckpointError",
    "T5XCheckpointError",
    "convert_hf_checkpoint",
    "export_hf_checkpoint",
    "load_hf_t5",
]
