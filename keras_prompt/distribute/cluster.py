"""Multi-worker start-up: `TF_CONFIG` checked, peers awaited, a watchdog.

TensorFlow's own multi-worker start-up blocks forever (and ignores SIGTERM)
when a peer in `TF_CONFIG` never comes up, so `keras_prompt.distribute`
checks `TF_CONFIG` first (`parse_tf_config`), waits a bounded time for every
peer (`wait_for_peers`), and guards TensorFlow's start-up with a `watchdog`.
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
from collections.abc import Iterator
from dataclasses import dataclass

#: The jobs a `MultiWorkerMirroredStrategy` cluster may have.
MULTI_WORKER_JOBS = ("chief", "worker")


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
        return sum(len(self.cluster.get(job, ())) for job in MULTI_WORKER_JOBS)

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


def split_address(address: str, where: str) -> tuple[str, int]:
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
    unsupported = sorted(set(cluster) - set(MULTI_WORKER_JOBS))
    if unsupported:
        raise ValueError(
            f"TF_CONFIG cluster has job(s) {unsupported}; multi-worker training "
            f"uses only {list(MULTI_WORKER_JOBS)} tasks."
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
            key = split_address(address, f"{job}:{index}")
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
    host, port = split_address(config.address, config.task)
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
                peer_host, peer_port = split_address(address, name)
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
