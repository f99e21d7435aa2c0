"""Distributed prompt tuning on this machine: replicas, workers, checkpoints, resume.

Four measurements, each in fresh subprocesses:

1. `replicas`: training examples/s with one replica (no strategy) and with
   `MirroredStrategy` over 2 logical CPU devices. The logical devices share
   the same cores (and one intra-op thread pool), so this measures the cost
   of the replicated step, not a speed-up.
2. `multiworker`: examples/s (global batch) of 2 worker processes on
   127.0.0.1 with `TF_CONFIG` and `MultiWorkerMirroredStrategy`, each with
   one CPU replica, against one process alone.
3. `sizes`: prompt-only backup (prompt + optimizer slots + RNG states) vs the
   frozen backbone's weights vs Keras' `BackupAndRestore` file.
4. `resume`: `keras-prompt train --backup-dir` killed with SIGKILL mid-run,
   then relaunched: seconds from relaunch to its first new step and to exit,
   against an uninterrupted run; and whether the final prompt is identical.

Throughputs: fixed-shape batches (`--batch-size` x `--input-length` tokens,
prompt `--prompt-length`), random-initialised `--geometry` backbone, dropout
off, `PromptAdafactor`; the best of `--repeats` timed windows of `--steps`
steps after `--warmup` steps. Each figure is printed with the 1-minute load
average: on a shared machine, compare rows measured at similar load.

    python benchmarks/distribute_throughput.py all --data-dir ../shared/assets \
        [--geometry t5_1_1_small] [--batch-size 16] [--steps 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _load() -> float:
    return round(os.getloadavg()[0], 2)


# ----------------------------------------------------------------------
# Worker side (runs in a subprocess)
# ----------------------------------------------------------------------
def _throughput(args, strategy) -> dict[str, Any]:
    import keras
    import keras_hub

    from keras_prompt import PromptAdafactor, PromptTunedT5
    from keras_prompt.data import load_examples
    from keras_prompt.models.geometries import build_backbone
    from keras_prompt.training import train_prompt

    data_dir = Path(args.data_dir)
    spiece = data_dir / "t5" / "spiece.model"
    tokenizer = keras_hub.models.T5Tokenizer(proto=str(spiece))
    preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=args.input_length, decoder_sequence_length=4
    )
    examples = load_examples("sst2", "train", data_dir=data_dir)[:2000]
    with strategy.scope():
        model = PromptTunedT5(
            build_backbone(args.geometry, dropout=0.0),
            preprocessor,
            prompt_length=args.prompt_length,
        )
        model.compile(optimizer=PromptAdafactor())

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter())

    clock = Clock()
    total = args.warmup + args.repeats * args.steps
    train_prompt(
        model,
        "sst2",
        examples,
        steps=total,
        batch_size=args.batch_size,
        max_input_length=args.input_length,
        fixed_shape=True,
        callbacks=[clock],
        verbose=0,
    )
    windows = [
        clock.times[args.warmup + (i + 1) * args.steps - 1]
        - clock.times[args.warmup + i * args.steps - 1]
        for i in range(args.repeats)
    ]
    best = min(windows)
    return {
        "replicas": int(strategy.num_replicas_in_sync),
        "examples_per_second": round(args.batch_size * args.steps / best, 2),
        "seconds_per_step": round(best / args.steps, 4),
        "load": _load(),
    }


def worker_main(args) -> None:
    from keras_prompt import distribute

    if args.role == "mirrored":
        distribute.set_cpu_devices(2)
        strategy = distribute.get_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
    elif args.role == "multiworker":
        strategy = distribute.get_strategy("multiworker", connect_timeout=120)
    else:
        strategy = distribute.get_strategy("default")
    result = _throughput(args, strategy)
    print("RESULT " + json.dumps(result), flush=True)


# ----------------------------------------------------------------------
# Driver side
# ----------------------------------------------------------------------
def _worker_command(args, role: str) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "worker",
        "--role",
        role,
        "--data-dir",
        args.data_dir,
        "--geometry",
        args.geometry,
        "--batch-size",
        str(args.batch_size),
        "--input-length",
        str(args.input_length),
        "--prompt-length",
        str(args.prompt_length),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--repeats",
        str(args.repeats),
    ]


def _result(stdout: str, stderr: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"worker failed:\n{stderr[-3000:]}")


def _run_worker(args, role: str, env=None) -> dict[str, Any]:
    done = subprocess.run(
        _worker_command(args, role),
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
    )
    return _result(done.stdout, done.stderr)


def bench_replicas(args) -> dict[str, Any]:
    one = _run_worker(args, "single")
    two = _run_worker(args, "mirrored")
    return {"one_replica": one, "mirrored_2_logical_cpus": two}


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def bench_multiworker(args) -> dict[str, Any]:
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    processes = []
    for index in range(2):
        config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(config)}
        processes.append(
            subprocess.Popen(
                _worker_command(args, "multiworker"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=1800)
        results.append(_result(stdout, stderr))
    return {"two_workers": results[0], "one_process": _run_worker(args, "single")}


def bench_sizes(args) -> dict[str, Any]:
    code = f"""
import json, os, tempfile
import keras
from keras_prompt import PromptTunedT5
from keras_prompt.callbacks import save_prompt_state
from keras_prompt.models.geometries import build_backbone
model = PromptTunedT5(build_backbone({args.geometry!r}, dropout=0.1),
                      prompt_length={args.prompt_length})
model.optimizer.build(model.trainable_variables)
with tempfile.TemporaryDirectory() as tmp:
    state = save_prompt_state(model, os.path.join(tmp, "backup.npz"))
    keras_file = os.path.join(tmp, "latest.weights.h5")
    model.save_weights(keras_file)
    print("RESULT " + json.dumps({{
        "geometry": {args.geometry!r},
        "prompt_length": {args.prompt_length},
        "prompt_backup_bytes": os.path.getsize(state),
        "prompt_bytes": int(model.get_prompt().nbytes),
        "backbone_weight_bytes": int(sum(
            v.numpy().nbytes for v in model.backbone.weights)),
        "keras_backup_and_restore_bytes": os.path.getsize(keras_file),
    }}))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=1800
    )
    return _result(done.stdout, done.stderr)


def _train_command(args, preset, out, backup) -> list[str]:
    return [
        sys.executable,
        "-m",
        "keras_prompt.cli",
        "train",
        "--task",
        "sst2",
        "--model",
        str(preset),
        "--data-dir",
        args.data_dir,
        "--steps",
        str(args.resume_steps),
        "--batch-size",
        "8",
        "--prompt-length",
        "4",
        "--max-input-length",
        "64",
        "--eval-limit",
        "16",
        "--checkpoint-every",
        "10",
        "--verbose",
        "0",
        "--out",
        str(out),
        "--backup-dir",
        str(backup),
    ]


def _backup_step(backup: Path) -> int | None:
    from keras_prompt.callbacks import BACKUP_FILENAME, read_prompt_state

    try:
        return read_prompt_state(backup / BACKUP_FILENAME)[1]["step"]
    except (FileNotFoundError, ValueError):
        return None


def bench_resume(args) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        preset = tmp / "preset"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "keras_prompt.cli",
                "make-preset",
                "--geometry",
                "t5_1_1_tiny",
                "--vocab",
                str(Path(args.data_dir) / "t5" / "spiece.model"),
                "--out",
                str(preset),
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
        start = time.perf_counter()
        reference = subprocess.run(
            _train_command(args, preset, tmp / "ref", tmp / "ref_backup"),
            capture_output=True,
            text=True,
            timeout=1800,
        )
        uninterrupted = time.perf_counter() - start
        expected = json.loads(reference.stdout[reference.stdout.index("{") :])

        command = _train_command(args, preset, tmp / "out", tmp / "backup")
        victim = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        kill_after = args.resume_steps // 2
        while victim.poll() is None:
            step = _backup_step(tmp / "backup")
            if step is not None and step >= kill_after:
                victim.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        victim.wait()
        killed_at = _backup_step(tmp / "backup")

        start = time.perf_counter()
        relaunch = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        first_new_step = None
        while relaunch.poll() is None:
            step = _backup_step(tmp / "backup")
            if first_new_step is None and step is not None and step > killed_at:
                first_new_step = time.perf_counter() - start
            time.sleep(0.01)
        stdout, _ = relaunch.communicate()
        resumed_seconds = time.perf_counter() - start
        resumed = json.loads(stdout[stdout.index("{") :])
    return {
        "steps": args.resume_steps,
        "killed_with_backup_at_step": killed_at,
        "victim_returncode": victim.returncode,
        "uninterrupted_run_seconds": round(uninterrupted, 1),
        "relaunch_to_next_backup_seconds": (
            None if first_new_step is None else round(first_new_step, 1)
        ),
        "relaunch_to_exit_seconds": round(resumed_seconds, 1),
        # `train_prompt` alone (restore, data skip, tracing, steps), as the CLI
        # reports it; the rest of a run is start-up, loading and evaluation.
        "uninterrupted_train_seconds": expected["train_seconds"],
        "resumed_train_seconds": resumed["train_seconds"],
        "resumed_from_step": resumed["resumed_from_step"],
        "trained_steps": resumed["trained_steps"],
        "same_prompt_as_uninterrupted": (
            resumed["prompt_sha256"] == expected["prompt_sha256"]
        ),
        "load": _load(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "what", choices=["all", "replicas", "multiworker", "sizes", "resume", "worker"]
    )
    parser.add_argument("--role", default="single")
    parser.add_argument("--data-dir", default=str(HERE.parent.parent / "shared/assets"))
    parser.add_argument("--geometry", default="t5_1_1_small")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--input-length", type=int, default=64)
    parser.add_argument("--prompt-length", type=int, default=20)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--resume-steps", type=int, default=60)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.what == "worker":
        worker_main(args)
        return
    benches = {
        "replicas": bench_replicas,
        "multiworker": bench_multiworker,
        "sizes": bench_sizes,
        "resume": bench_resume,
    }
    chosen = list(benches) if args.what == "all" else [args.what]
    results: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "cpus": os.cpu_count(),
    }
    for name in chosen:
        results[name] = benches[name](args)
        print(json.dumps({name: results[name]}, indent=2), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
