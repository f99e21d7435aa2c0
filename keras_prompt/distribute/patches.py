"""Workarounds for Keras 3 `fit` under `tf.distribute`, while a block runs.

Both reach into keras internals through `keras_prompt.compat`, which records
the keras releases they were written for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import tensorflow as tf

from keras_prompt import compat
from keras_prompt.distribute.strategies import num_workers


def no_batch_peek(model, element_spec):
    """Builds `fit`'s loss/metric state from `element_spec`, not from a batch.

    A context manager for Keras 3 `fit` under a strategy scope, which would
    otherwise pull a batch from a throw-away iterator (see
    `keras_prompt.compat.build_fit_state_from_spec`).
    """
    return compat.build_fit_state_from_spec(model, element_spec)


@contextlib.contextmanager
def multi_worker_metrics_fix(strategy: tf.distribute.Strategy) -> Iterator[None]:
    """Lets Keras 3 `fit` average its scalar logs across workers.

    Under a multi-worker `MultiWorkerMirroredStrategy` keras' TF trainer
    cannot reduce scalar logs (`keras_prompt.compat.scalar_logs_across_workers`);
    while the block runs (the train step is traced inside `fit`), scalars are
    all-reduced with `axis=None` instead. Other strategies are left alone.
    """
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    if not multi_worker or num_workers(strategy) <= 1:
        yield
        return

    def is_scalar(value) -> bool:
        if isinstance(value, tf.distribute.DistributedValues):
            value = strategy.experimental_local_results(value)[0]
        shape = getattr(value, "shape", None)
        return shape is not None and shape.rank == 0

    def reduce_scalar(value, strategy):
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)

    with compat.scalar_logs_across_workers(is_scalar, reduce_scalar):
        yield
