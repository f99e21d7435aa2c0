"""T5's relative-position buckets, and mapping one bucket setting onto
keras-hub's.

keras-hub's ``T5MultiHeadAttention`` hard-codes 32 buckets and a maximum
distance of 128. A checkpoint trained with other settings (tiny test models
use e.g. 4 buckets and distance 8) is still exactly representable when every
keras-hub bucket falls inside a single bucket of the checkpoint's: its bias
table is then re-indexed onto keras-hub's 32 rows (:func:`bucket_mapping`).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "KERAS_HUB_RELATIVE_ATTENTION_MAX_DISTANCE",
    "KERAS_HUB_RELATIVE_ATTENTION_NUM_BUCKETS",
    "bucket_mapping",
    "relative_position_bucket",
]

# T5MultiHeadAttention in keras-hub hard-codes its relative position buckets.
KERAS_HUB_RELATIVE_ATTENTION_NUM_BUCKETS = 32
KERAS_HUB_RELATIVE_ATTENTION_MAX_DISTANCE = 128


def relative_position_bucket(
    relative_position: np.ndarray,
    bidirectional: bool,
    num_buckets: int,
    max_distance: int,
) -> np.ndarray:
    """T5's relative-position bucket (as Mesh TF / transformers compute it,
    in float32)."""
    relative_position = np.asarray(relative_position, dtype=np.int64)
    buckets = np.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).astype(np.int64) * num_buckets
        relative_position = np.abs(relative_position)
    else:
        relative_position = -np.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    with np.errstate(divide="ignore", invalid="ignore"):
        large = max_exact + (
            np.log(relative_position.astype(np.float32) / np.float32(max_exact))
            / np.float32(np.log(max_distance / max_exact))
            * np.float32(num_buckets - max_exact)
        )
    large = np.where(relative_position < max_exact, 0, large).astype(np.int64)
    large = np.minimum(large, num_buckets - 1)
    return buckets + np.where(relative_position < max_exact, relative_position, large)


def bucket_mapping(
    num_buckets: int, max_distance: int, bidirectional: bool
) -> np.ndarray | None:
    """For each of keras-hub's 32 buckets, the checkpoint bucket it lies in;
    ``None`` if some keras-hub bucket spans two checkpoint buckets.

    Buckets no relative position reaches map to bucket 0 (never read).

    Example:

    ```python
    from keras_prompt.checkpoints.relative_position import bucket_mapping
    bucket_mapping(4, 8, bidirectional=True)[:3]  # array([0, 1, 1])
    ```
    """
    target = KERAS_HUB_RELATIVE_ATTENTION_NUM_BUCKETS
    target_distance = KERAS_HUB_RELATIVE_ATTENTION_MAX_DISTANCE
    if (num_buckets, max_distance) == (target, target_distance):
        # Identity, including rows no position reaches (bucket 16 of the
        # bidirectional table), so a round trip keeps every weight.
        return np.arange(target)
    if num_buckets < (4 if bidirectional else 2) or max_distance < 1:
        return None  # T5's formula needs an exact range of at least one.
    # Beyond both max distances every position is in the last bucket.
    reach = 2 * max(max_distance, target_distance) + 2
    positions = np.arange(-reach, reach + 1)
    ours = relative_position_bucket(positions, bidirectional, target, target_distance)
    theirs = relative_position_bucket(
        positions, bidirectional, num_buckets, max_distance
    )
    mapping = np.zeros(target, dtype=np.int64)
    for bucket in range(target):
        found = np.unique(theirs[ours == bucket])
        if len(found) > 1:
            return None
        if len(found):
            mapping[bucket] = found[0]
    return mapping
