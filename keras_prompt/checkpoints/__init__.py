"""Importers that turn other frameworks' T5 checkpoints into keras-hub models."""

from keras_prompt.checkpoints.huggingface import convert_hf_checkpoint, load_hf_t5

__all__ = ["convert_hf_checkpoint", "load_hf_t5"]
