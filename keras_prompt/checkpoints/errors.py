"""Errors for checkpoints that cannot be read, imported or exported exactly.

All are ``ValueError`` subclasses whose message names the file and what was
expected, so the command line prints them as one line.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "HFCheckpointError", "T5XCheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be converted exactly."""


class HFCheckpointError(CheckpointError):
    """A Hugging Face file (checkpoint, cache entry, PEFT adapter) that cannot
    be imported or exported exactly."""


class T5XCheckpointError(CheckpointError):
    """A T5X checkpoint directory that cannot be imported exactly."""
