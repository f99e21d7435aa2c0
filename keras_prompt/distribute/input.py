"""Input for `fit` under a strategy: every replica a slice of the same global batch."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf


# ----------------------------------------------------------------------
# Input
# ----------------------------------------------------------------------
def _replica_batch_sizes(global_batch_size: int, replicas: int) -> list[int]:
    base, extra = divmod(global_batch_size, replicas)
    return [base + (1 if i < extra else 0) for i in range(replicas)]


def distribute_dataset(
    dataset_fn: Callable[[], tf.data.Dataset],
    strategy: tf.distribute.Strategy,
    global_batch_size: int,
):
    """Input for `model.fit` under `strategy`: the global batches, split.

    `dataset_fn()` must return the repeated, globally batched dataset (every
    worker builds the same one: same examples, same shuffle seed). Each
    global batch is cut into one slice per replica, and each worker keeps its
    replicas' slices (`tf.data` DATA sharding: all workers run the whole input
    pipeline). So a step on N replicas sees exactly the batch one device
    would; `tf.distribute`'s automatic rebatching cannot do this for
    length-bucketed batches (it halves the bucket batch sizes instead, which
    regroups examples), and its automatic sharding falls back to DATA for
    in-memory datasets anyway.

    With one replica `dataset_fn()` is returned as is.
    """
    replicas = int(strategy.num_replicas_in_sync)
    if replicas == 1:
        return dataset_fn()
    sizes = _replica_batch_sizes(global_batch_size, replicas)
    if min(sizes) < 1:
        raise ValueError(
            f"Batch size {global_batch_size} is smaller than the number of "
            f"replicas ({replicas}); every replica needs at least one example."
        )

    def per_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
        dataset = dataset_fn().rebatch(sizes)
        dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.OFF
        )
        return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)

    return strategy.distribute_datasets_from_function(per_worker)
