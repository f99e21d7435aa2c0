"""The `tf.distribute` strategies behind `keras-prompt train --strategy`.

Build and compile the model under `strategy.scope()` and `model.fit` runs
the replicated step, so the same code runs on one device, on several local
devices (`MirroredStrategy`), on several machines
(`MultiWorkerMirroredStrategy`) and on TPUs (`TPUStrategy`).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import tensorflow as tf

from keras_prompt.distribute.cluster import (
    MULTI_WORKER_JOBS,
    parse_tf_config,
    wait_for_peers,
    watchdog,
)

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")

#: Seconds a multi-worker task waits for its peers before giving up.
DEFAULT_CONNECT_TIMEOUT = 300.0


# ----------------------------------------------------------------------
# Strategies
# ----------------------------------------------------------------------
def set_cpu_devices(count: int) -> None:
    """Splits the host CPU into `count` logical devices (before TF starts).

    For exercising `MirroredStrategy` without accelerators (tests,
    benchmarks). The logical devices share the same cores, so this checks
    correctness, not speed-up.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )


def _multi_worker_strategy(connect_timeout: float) -> tf.distribute.Strategy:
    config = parse_tf_config()
    if config is None:
        warnings.warn(
            "--strategy multiworker without TF_CONFIG: training as a "
            "one-worker cluster on this machine's devices.",
            stacklevel=3,
        )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if config.num_workers > 1:
        wait_for_peers(config, connect_timeout)
    message = (
        f"keras-prompt: error: multi-worker start-up of {config.task} "
        f"({config.address}) did not finish within {connect_timeout + 15:g} s after "
        "all peers answered (a peer died, or uses a different TF_CONFIG "
        "cluster?); stopping this task."
    )
    with watchdog(connect_timeout + 15.0, message):
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as e:
            if "startup" in str(e) or "initialized" in str(e):
                raise RuntimeError(
                    "MultiWorkerMirroredStrategy must be created before "
                    "TensorFlow runs any operation in this process; call "
                    "keras_prompt.distribute.get_strategy() first."
                ) from e
            raise
        # One all-reduce proves the collective path works before any
        # training time is spent.
        total = strategy.reduce(
            tf.distribute.ReduceOp.SUM,
            strategy.run(lambda: tf.constant(1.0)),
            axis=None,
        )
    if int(total) != strategy.num_replicas_in_sync:
        raise RuntimeError(
            f"Multi-worker barrier summed to {float(total)}, expected "
            f"{strategy.num_replicas_in_sync} replicas."
        )
    return strategy


def _tpu_strategy(tpu: str | None) -> tf.distribute.Strategy:
    name = tpu or os.environ.get("TPU_NAME") or ""
    if not name and not tf.config.list_physical_devices("TPU"):
        raise ValueError(
            "--strategy tpu found no TPU: run on a TPU VM (local TPU devices), "
            "or name a TPU node with --tpu / TPU_NAME."
        )
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=name or "local")
    if name and name != "local":
        tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def get_strategy(
    name: str = "default",
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    tpu: str | None = None,
    devices: list[str] | None = None,
) -> tf.distribute.Strategy:
    """The `tf.distribute.Strategy` behind `keras-prompt train --strategy NAME`.

    Call it before anything else touches TensorFlow (multi-worker collectives
    must be configured at program start-up), then build and compile the model
    under `strategy.scope()`.

    Args:
        name: `"default"` (no distribution), `"mirrored"` (synchronous data
            parallelism over this machine's GPUs, or its CPU), `"multiworker"`
            (`MultiWorkerMirroredStrategy` over the `TF_CONFIG` cluster) or
            `"tpu"` (`TPUStrategy`).
        connect_timeout: multi-worker only: seconds to wait for every peer
            before failing with an error naming the missing ones.
        tpu: TPU name or `grpc://` address for `TPUClusterResolver`; default
            `TPU_NAME`, else this TPU VM's local chips.
        devices: mirrored only: device names, e.g. `["/cpu:0", "/cpu:1"]`.
    """
    if name in ("default", "mirrored"):
        try:
            config = parse_tf_config()
        except ValueError:  # not ours to judge: these strategies ignore it
            config = None
        if config is not None and config.num_workers > 1:
            warnings.warn(
                f"TF_CONFIG describes a {config.num_workers}-task cluster, but "
                f"strategy {name!r} trains this process on its own; use "
                "'multiworker' to train with the cluster.",
                stacklevel=2,
            )
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    if name == "multiworker":
        return _multi_worker_strategy(connect_timeout)
    if name == "tpu":
        return _tpu_strategy(tpu)
    raise ValueError(f"Unknown strategy {name!r}; use one of {list(STRATEGIES)}.")


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process should write files (prompts, checkpoints, metrics).

    True everywhere except on the non-chief workers of a multi-worker
    cluster, which train in lockstep with the chief and hold the same prompt.
    """
    strategy = strategy or tf.distribute.get_strategy()
    return bool(getattr(strategy.extended, "should_checkpoint", True))


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """Processes taking part in the strategy's steps (1 unless multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or isinstance(
        strategy, tf.distribute.TPUStrategy
    ):  # TPU hosts are fed by one client.
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, sum(len(spec.get(job, ())) for job in MULTI_WORKER_JOBS))


def describe(strategy: tf.distribute.Strategy) -> dict[str, Any]:
    """Strategy, replica/worker counts and role, for logs and metrics.json."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task = None
    if resolver is not None and resolver.task_type is not None:
        task = f"{resolver.task_type}:{resolver.task_id}"
    return {
        "strategy": type(strategy).__name__,
        "num_replicas": int(strategy.num_replicas_in_sync),
        "num_workers": num_workers(strategy),
        "cluster_task": task,
        "chief": is_chief(strategy),
    }


def check_same_on_all_workers(
    strategy: tf.distribute.Strategy, value: int, what: str
) -> None:
    """Raises unless every worker passes the same integer `value`.

    Used after resuming: a backup visible to the chief but not to the other
    workers (no shared filesystem) would otherwise silently train replicas
    that disagree.
    """
    if num_workers(strategy) <= 1:
        return

    def replica_value():
        return tf.constant([value], tf.int64)

    values = strategy.gather(strategy.run(replica_value), axis=0).numpy().tolist()
    if len(set(values)) > 1:
        raise ValueError(
            f"Workers disagree on {what}: {values} (this task: {value}). With "
            "multi-worker training the backup directory must be shared storage "
            "every worker can read."
        )
