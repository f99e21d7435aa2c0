"""Training under `tf.distribute`: strategies, `TF_CONFIG` checks, input sharding.

keras-prompt does not implement its own data parallelism: it builds the model
and optimizer inside a `tf.distribute.Strategy` scope and lets `model.fit` run
the replicated step, so the same code runs on one device, on several local
devices (`MirroredStrategy`), on several machines
(`MultiWorkerMirroredStrategy`) and on TPUs (`TPUStrategy`).

What this module adds around TensorFlow's engine:

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

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from keras_prompt import compat

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")

#: Seconds a multi-worker task waits for its peers before giving up.
DEFAULT_CONNECT_TIMEOUT = 300.0

_MULTI_WORKER_JOBS = ("chief", "worker")


# ----------------------------------------------------------------------
# TF_CONFIG
# ----------------------------------------------------------------------
@dataclass(frozen=True)
class ClusterConfig:
    """A validated `TF_CONFIG`: the cluster and this process's task in it."""

    cluster: dict[str, tuple[str, ...]]
    task_type: str
    task_index: int

    @property
    def address(self) -> str:
        """This task's `host:port`."""
        return self.cluster[self.task_type][self.task_index]

    @property
    def num_workers(self) -> int:
        return sum(len(self.cluster.get(job, ())) for job in _MULTI_WORKER_JOBS)

    @property
    def is_chief(self) -> bool:
        """TensorFlow's rule: the `chief` task, else worker 0 when there is none."""
        if "chief" in self.cluster:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    @property
    def task(self) -> str:
        return f"{self.task_type}:{self.task_index}"

    def peers(self) -> list[tuple[str, str]]:
        """`(task name, host:port)` of every other task."""
        return [
            (f"{job}:{index}", address)
            for job, addresses in self.cluster.items()
            for index, address in enumerate(addresses)
            if (job, index) != (self.task_type, self.task_index)
        ]


def _split_address(address: str, where: str) -> tuple[str, int]:
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise ValueError(f"TF_CONFIG {where} address {address!r} is not host:port.")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ValueError(
            f"TF_CONFIG {where} address {address!r} has no valid port (1-65535)."
        )
    return host.strip("[]"), port


def parse_tf_config(text: str | None = None) -> ClusterConfig | None:
    """Parses and validates `TF_CONFIG` (the environment variable by default).

    Returns `None` when it is unset or empty. Raises `ValueError` naming the
    problem for anything a `MultiWorkerMirroredStrategy` cannot run with:
    invalid JSON, no `cluster`/`task`, a task missing from the cluster,
    addresses that are not `host:port`, duplicate addresses, or jobs other
    than `chief`/`worker` (parameter servers and evaluators belong to other
    strategies).
    """
    if text is None:
        text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}): {text[:200]!r}") from e
    if not isinstance(config, dict):
        raise ValueError("TF_CONFIG must be a JSON object with 'cluster' and 'task'.")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError(
            "TF_CONFIG has no 'cluster' object mapping job names to lists of "
            'host:port addresses, e.g. {"worker": ["10.0.0.1:2222", ...]}.'
        )
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError(
            "TF_CONFIG has no 'task' object with 'type' and 'index', e.g. "
            '{"type": "worker", "index": 0}.'
        )
    unsupported = sorted(set(cluster) - set(_MULTI_WORKER_JOBS))
    if unsupported:
        raise ValueError(
            f"TF_CONFIG cluster has job(s) {unsupported}; multi-worker training "
            f"uses only {list(_MULTI_WORKER_JOBS)} tasks."
        )
    normalized: dict[str, tuple[str, ...]] = {}
    seen: dict[tuple[str, int], str] = {}
    for job, addresses in cluster.items():
        if isinstance(addresses, str) or not isinstance(addresses, list):
            raise ValueError(
                f"TF_CONFIG cluster[{job!r}] must be a list of host:port strings; "
                f"got {addresses!r}."
            )
        if job == "chief" and len(addresses) != 1:
            raise ValueError(
                f"TF_CONFIG may have one chief; got {len(addresses)} addresses."
            )
        for index, address in enumerate(addresses):
            if not isinstance(address, str):
                raise ValueError(
                    f"TF_CONFIG cluster[{job!r}][{index}] must be a host:port "
                    f"string; got {address!r}."
                )
            key = _split_address(address, f"{job}:{index}")
            if key in seen:
                raise ValueError(
                    f"TF_CONFIG gives {job}:{index} and {seen[key]} the same "
                    f"address {address!r}."
                )
            seen[key] = f"{job}:{index}"
        normalized[job] = tuple(addresses)
    task_type, task_index = task["type"], task["index"]
    if task_type not in normalized:
        raise ValueError(
            f"TF_CONFIG task type {task_type!r} is not a job of the cluster "
            f"({sorted(normalized)})."
        )
    if (
        not isinstance(task_index, int)
        or isinstance(task_index, bool)
        or not 0 <= task_index < len(normalized[task_type])
    ):
        raise ValueError(
            f"TF_CONFIG task index {task_index!r} is out of range: the cluster "
            f"has {len(normalized[task_type])} {task_type!r} task(s)."
        )
    return ClusterConfig(normalized, task_type, task_index)


def wait_for_peers(
    config: ClusterConfig, timeout: float, *, poll_interval: float = 0.25
) -> float:
    """Blocks until this task and every peer in `config` have reached each other.

    Each task listens on its own `TF_CONFIG` port and connects to every peer,
    sending its task name. A task returns once it has reached every peer
    *and* heard from every peer: then no peer still needs its listener,
    which closes so that TensorFlow's server can take the port. Returns the
    seconds waited. Raises `TimeoutError` naming the peers that never
    answered or never called, and `ValueError` when this task's port is taken.
    """
    host, port = _split_address(config.address, config.task)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", port))
    except OSError as e:
        listener.close()
        raise ValueError(
            f"This task ({config.task}) cannot listen on port {port} of its "
            f"TF_CONFIG address {config.address!r}: {e}. Is another process "
            "using it?"
        ) from e
    listener.listen(64)
    listener.settimeout(0.2)
    stop = threading.Event()
    heard: set[str] = set()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            # Read the caller's name until it closes (so TIME_WAIT stays on
            # its side and this port is free for TensorFlow's server).
            connection.settimeout(2.0)
            data = b""
            with contextlib.suppress(OSError):
                while len(data) < 256:
                    chunk = connection.recv(256)
                    if not chunk:
                        break
                    data += chunk
            connection.close()
            heard.add(data.decode("utf-8", "replace").strip())

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    start = time.monotonic()
    deadline = start + timeout
    peers = dict(config.peers())
    pending = dict(peers)
    errors: dict[str, str] = {}
    hello = f"{config.task}\n".encode()
    try:
        while pending or not set(peers) <= heard:
            for name, address in list(pending.items()):
                peer_host, peer_port = _split_address(address, name)
                remaining = max(0.05, min(2.0, deadline - time.monotonic()))
                try:
                    with socket.create_connection(
                        (peer_host, peer_port), timeout=remaining
                    ) as connection:
                        connection.sendall(hello)
                    del pending[name]
                except OSError as e:
                    errors[name] = f"{type(e).__name__}: {e}"
            if not pending and set(peers) <= heard:
                break
            if time.monotonic() >= deadline:
                problems = [
                    f"{name} at {address} "
                    + (
                        f"did not answer ({errors.get(name, 'no answer')})"
                        if name in pending
                        else "never called back (is it running with the same "
                        "TF_CONFIG cluster?)"
                    )
                    for name, address in peers.items()
                    if name in pending or name not in heard
                ]
                raise TimeoutError(
                    f"Multi-worker start-up: this task ({config.task} at "
                    f"{config.address}) waited {timeout:g} s; "
                    + "; ".join(problems)
                    + ". Start one process per task in TF_CONFIG (same cluster, "
                    "its own task), check hosts, ports and firewalls, or raise "
                    "--connect-timeout."
                )
            time.sleep(poll_interval)
    finally:
        stop.set()
        thread.join()
        listener.close()
    return time.monotonic() - start


# A separate process, because while TensorFlow's multi-worker start-up blocks
# it holds the GIL (no Python thread runs) and defers SIGTERM.
_WATCHDOG_SOURCE = """
import os, select, signal, sys
pid, timeout, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
ready, _, _ = select.select([sys.stdin], [], [], timeout)
if not ready:
    sys.stderr.write(message + "\\n")
    sys.stderr.flush()
    os.kill(pid, signal.SIGKILL)
"""


@contextlib.contextmanager
def watchdog(timeout: float, message: str) -> Iterator[None]:
    """Kills this process with `message` on stderr if the block outlives `timeout`.

    The last line of defence against a start-up that never returns: a child
    process waits on a pipe that closes when the block ends (or this process
    dies), and only otherwise prints the message and sends SIGKILL.
    """
    arguments = [str(os.getpid()), str(timeout), message]
    child = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG_SOURCE, *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        close_fds=True,
    )
    try:
        yield
    finally:
        child.stdin.close()
        child.wait(timeout=10)


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
    return max(1, sum(len(spec.get(job, ())) for job in _MULTI_WORKER_JOBS))


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
