"""`keras-prompt train` at scale, in real processes: two workers, and kill -9."""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import json_tail, make_tiny_backbone, make_tokenizer

from keras_prompt.callbacks import BACKUP_FILENAME, read_prompt_state
from keras_prompt.prompts import load_prompt_file

TIMEOUT = 240


@pytest.fixture(scope="module")
def tiny_preset(tmp_path_factory, spiece_path):
    """A 2-layer, width-16 T5 preset with dropout on (what `make-preset` writes)."""
    out = tmp_path_factory.mktemp("preset") / "tiny"
    make_tiny_backbone(dropout=0.1).save_to_preset(out)
    make_tokenizer(spiece_path).save_to_preset(out)
    return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, assets_dir):
    """SST-2 cut to 1200 rows: 872 held out for validation, 328 to train on."""
    root = tmp_path_factory.mktemp("data")
    (root / "glue" / "SST-2").mkdir(parents=True)
    lines = (assets_dir / "glue" / "SST-2" / "train.tsv").read_text().splitlines()
    (root / "glue" / "SST-2" / "train.tsv").write_text("\n".join(lines[:1201]) + "\n")
    return root


def _command(preset, data, *extra):
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
        str(data),
        "--batch-size",
        "8",
        "--prompt-length",
        "4",
        "--max-input-length",
        "64",
        "--eval-limit",
        "16",
        "--verbose",
        "0",
        *map(str, extra),
    ]


def _finish(process, what):
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(
            f"{what} did not finish in {TIMEOUT} s:\n{stderr[-3000:]}"
        ) from e
    return process.returncode, stdout, stderr


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_in_lockstep_and_only_the_chief_writes(
    tiny_preset, data_dir, tmp_path
):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    workers = []
    try:
        for index in range(2):
            tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
            workers.append(
                subprocess.Popen(
                    _command(
                        tiny_preset,
                        data_dir,
                        "--steps",
                        6,
                        "--strategy",
                        "multiworker",
                        "--connect-timeout",
                        120,
                        "--out",
                        tmp_path / f"out{index}",
                    ),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env={**os.environ, "TF_CONFIG": json.dumps(tf_config)},
                )
            )
        results = [_finish(w, f"worker {i}") for i, w in enumerate(workers)]
    finally:
        for worker in workers:
            worker.kill()
    for code, _, stderr in results:
        assert code == 0, stderr[-3000:]
    chief, other = (json_tail(stdout) for _, stdout, _ in results)
    assert chief["chief"] and not other["chief"]
    for summary in (chief, other):
        assert summary["num_replicas"] == 2 and summary["num_workers"] == 2
        assert summary["trained_steps"] == 6
    # All-reduced gradients: both workers hold bit-identical prompts.
    assert chief["prompt_sha256"] == other["prompt_sha256"]
    prompt, metadata = load_prompt_file(tmp_path / "out0" / "sst2.npy")
    assert hashlib.sha256(prompt.tobytes()).hexdigest() == chief["prompt_sha256"]
    assert metadata["steps"] == 6
    assert (tmp_path / "out0" / "metrics.json").is_file()
    assert other["prompt"] is None and not (tmp_path / "out1").exists()


def _backup_step(backup_dir):
    try:
        return read_prompt_state(backup_dir / BACKUP_FILENAME)[1]["step"]
    except (FileNotFoundError, ValueError):
        return None


def test_killed_training_resumes_from_its_backup(tiny_preset, data_dir, tmp_path):
    steps = 30

    def command(name):
        return _command(
            tiny_preset,
            data_dir,
            "--steps",
            steps,
            "--checkpoint-every",
            5,
            "--out",
            tmp_path / name / "out",
            "--backup-dir",
            tmp_path / name / "backup",
        )

    def start(name):
        return subprocess.Popen(
            command(name), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    reference, victim = start("reference"), start("victim")
    try:
        deadline = time.monotonic() + TIMEOUT
        while victim.poll() is None and time.monotonic() < deadline:
            step = _backup_step(tmp_path / "victim" / "backup")
            if step is not None and step >= 10:
                victim.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        victim.wait(timeout=30)
        code, stdout, stderr = _finish(reference, "the uninterrupted run")
    finally:
        reference.kill()
        victim.kill()
    assert code == 0, stderr[-3000:]
    expected = json_tail(stdout)
    assert victim.returncode == -signal.SIGKILL, "the run ended before the kill"
    killed_at = _backup_step(tmp_path / "victim" / "backup")
    assert 10 <= killed_at < steps and killed_at % 5 == 0
    assert not (tmp_path / "victim" / "out" / "sst2.npy").exists()

    code, stdout, stderr = _finish(start("victim"), "the resumed run")
    assert code == 0, stderr[-3000:]
    resumed = json_tail(stdout)
    assert resumed["resumed_from_step"] == killed_at
    assert resumed["trained_steps"] == steps
    # Same data from the same position, same dropout RNG: the same prompt.
    assert resumed["prompt_sha256"] == expected["prompt_sha256"]
    prompt, metadata = load_prompt_file(tmp_path / "victim" / "out" / "sst2.npy")
    assert prompt.shape == (4, 16) and metadata["steps"] == steps
    assert hashlib.sha256(prompt.tobytes()).hexdigest() == resumed["prompt_sha256"]
    assert (tmp_path / "victim" / "out" / "checkpoints" / "best.npy").is_file()
