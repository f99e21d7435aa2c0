"""Training under `tf.distribute`: strategies, `TF_CONFIG` checks, input sharding.

keras-prompt does not implement its own data parallelism: it builds the model
and optimizer inside a `tf.distribute.Strategy` scope and lets `model.fit` run
the replicated step, so the same code runs on one device, on several local
devices (`MirroredStrategy`), on several machines
(`MultiWorkerMirroredStrategy`) and on TPUs (`TPUStrategy`).

What this package adds around TensorFlow's engine (`cluster`, `strategies`,
`input`, `patches`):

* `get_strategy(name)`: the strategy behind `keras-prompt train --strategy`.
  For multi-worker runs it validates `TF_CONFIG` first and waits a bounded
  time for every peer to answer, because TensorFlow's own start-up blocks
  forever (and ignores SIGTERM) when a peer in `TF_CONFIG` never comes up.
* `distribute_dataset()`: feeds every replica its slice of the *same* global
  batches a single device would see, also for length-bucketed batches, which
  `tf.distribute`'s automatic rebatching would otherwise regroup.
* `no_batch_peek()`: a workaround for Keras 3 `fit` under a strategy scope,
  which pulls a batch from a throw-away iterator (see its docstring).
* `is_chief()`: only the chief writes prompt files, checkpoints and metrics.
"""

from keras_prompt.distribute.cluster import (
    ClusterConfig,
    parse_tf_config,
    wait_for_peers,
    watchdog,
)
from keras_prompt.distribute.input import distribute_dataset
from keras_prompt.distribute.patches import multi_worker_metrics_fix, no_batch_peek
from keras_prompt.distribute.strategies import (
    DEFAULT_CONNECT_TIMEOUT,
    STRATEGIES,
    check_same_on_all_workers,
    describe,
    get_strategy,
    is_chief,
    num_workers,
    set_cpu_devices,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "STRATEGIES",
    "ClusterConfig",
    "check_same_on_all_workers",
    "describe",
    "distribute_dataset",
    "get_strategy",
    "is_chief",
    "multi_worker_metrics_fix",
    "no_batch_peek",
    "num_workers",
    "parse_tf_config",
    "set_cpu_devices",
    "wait_for_peers",
    "watchdog",
]
