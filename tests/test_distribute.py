"""tf.distribute plumbing: TF_CONFIG checks, peers, XLA, MirroredStrategy parity."""

import json
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO_ROOT, make_tiny_backbone

from keras_prompt import PromptAdafactor, PromptTunedT5, cli, distribute
from keras_prompt.data import Example, make_dataset
from keras_prompt.training import train_prompt


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _tf_config(ports, index=0, job="worker"):
    return json.dumps(
        {
            "cluster": {job: [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": job, "index": index},
        }
    )


# ----------------------------------------------------------------------
# TF_CONFIG and peers
# ----------------------------------------------------------------------
def test_tf_config_is_parsed():
    assert distribute.parse_tf_config("") is None
    config = distribute.parse_tf_config(
        json.dumps(
            {
                "cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"]},
                "task": {"type": "worker", "index": 1},
            }
        )
    )
    assert config.address == "c:3" and config.num_workers == 3
    assert not config.is_chief and config.task == "worker:1"
    assert [name for name, _ in config.peers()] == ["chief:0", "worker:0"]
    assert distribute.parse_tf_config(_tf_config([5, 6], index=0)).is_chief


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"cluster": {"worker": ["a:1"', "not valid JSON"),
        ('["a:1"]', "JSON object"),
        ('{"task": {"type": "worker", "index": 0}}', "no 'cluster'"),
        ('{"cluster": {"worker": ["a:1"]}}', "no 'task'"),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}',
            "not a job",
        ),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
            "out of range",
        ),
        (
            '{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}',
            "host:port",
        ),
        (
            '{"cluster": {"worker": ["a:99999"]}, '
            '"task": {"type": "worker", "index": 0}}',
            "valid port",
        ),
        (
            '{"cluster": {"worker": ["a:1", "a:1"]}, '
            '"task": {"type": "worker", "index": 0}}',
            "same address",
        ),
        (
            '{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, '
            '"task": {"type": "worker", "index": 0}}',
            "'ps'",
        ),
    ],
)
def test_malformed_tf_config_is_a_clear_error(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        distribute.parse_tf_config(text)


def test_peers_find_each_other():
    ports = _free_ports(2)
    configs = [distribute.parse_tf_config(_tf_config(ports, i)) for i in range(2)]
    results = {}

    def run(i):
        try:
            results[i] = distribute.wait_for_peers(configs[i], timeout=20)
        except Exception as e:  # reported below
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.5)  # the second task starts late, as on a real cluster
    for thread in threads:
        thread.join(30)
    assert all(isinstance(results.get(i), float) for i in range(2)), results


@pytest.mark.parametrize("peer_listens", [False, True])
def test_unreachable_peer_fails_within_the_timeout(peer_listens):
    ports = _free_ports(2)
    config = distribute.parse_tf_config(_tf_config(ports, 0))
    impostor = socket.socket()  # accepts connections, but is no keras-prompt task
    if peer_listens:
        impostor.bind(("127.0.0.1", ports[1]))
        impostor.listen(8)
    problem = "never called back" if peer_listens else "did not answer"
    start = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match=rf"worker:1 at \S+ {problem}"):
            distribute.wait_for_peers(config, timeout=1.0)
    finally:
        impostor.close()
    assert time.monotonic() - start < 5


@pytest.mark.parametrize(
    "tf_config, message",
    [
        ('{"cluster": ', "TF_CONFIG is not valid JSON"),
        (None, "worker:1 at 127.0.0.1"),
    ],
)
def test_cli_multiworker_bad_cluster_is_a_clear_error(
    tf_config, message, monkeypatch, tmp_path, capsys
):
    monkeypatch.setenv("TF_CONFIG", tf_config or _tf_config(_free_ports(2), 0))
    start = time.monotonic()
    code = cli.main(
        [
            "train",
            "--task",
            "sst2",
            "--model",
            str(tmp_path / "never-loaded"),
            "--out",
            str(tmp_path / "out"),
            "--strategy",
            "multiworker",
            "--connect-timeout",
            "2",
        ]
    )
    assert code == 2 and time.monotonic() - start < 15
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_tpu_strategy_without_a_tpu_says_so(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(ValueError, match="found no TPU"):
        distribute.get_strategy("tpu")
    with pytest.raises(ValueError, match="Unknown strategy"):
        distribute.get_strategy("horovod")


def test_watchdog_stops_a_hung_start_up_and_spares_a_finished_one():
    with distribute.watchdog(30, "not printed"):
        pass  # returns at once: nothing is killed (this test process lives on)
    hung = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    watchdog = subprocess.Popen(
        [
            sys.executable,
            "-c",
            distribute.cluster._WATCHDOG_SOURCE,
            str(hung.pid),
            "1",
            "hung!",
        ],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert hung.wait(timeout=20) == -signal.SIGKILL
        assert "hung!" in watchdog.communicate(timeout=20)[1]
    finally:
        hung.kill()
        watchdog.kill()


# ----------------------------------------------------------------------
# XLA (what TPUs compile), on CPU
# ----------------------------------------------------------------------
EXAMPLES = [
    Example(
        f"sst2 sentence: movie {i} was {'great' if i % 2 else 'awful'} "
        + "x " * (i % 7),
        "positive" if i % 2 else "negative",
        i % 2,
    )
    for i in range(40)
]


def test_train_step_compiles_with_xla_on_fixed_shapes(tokenizer):
    preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=32, decoder_sequence_length=4
    )

    def trained(jit_compile):
        model = PromptTunedT5(
            make_tiny_backbone(),
            preprocessor,
            prompt_length=4,
            prompt_initializer=keras.initializers.RandomUniform(-0.5, 0.5, seed=1),
        )
        model.compile(
            optimizer=PromptAdafactor(learning_rate=0.01), jit_compile=jit_compile
        )
        train_prompt(
            model,
            "sst2",
            EXAMPLES,
            steps=2,
            batch_size=8,
            max_input_length=32,
            fixed_shape=True,
            verbose=0,
        )
        return model

    xla = trained(True)
    assert xla.jit_compile is True
    eager_graph = trained(False)
    np.testing.assert_allclose(
        xla.get_prompt(), eager_graph.get_prompt(), rtol=1e-4, atol=1e-5
    )
    # The whole train step (forward, backward, Adafactor update) lowers to
    # one XLA program with static shapes only.
    batch = next(
        iter(
            make_dataset(
                EXAMPLES,
                tokenizer,
                batch_size=8,
                max_input_length=32,
                max_target_length=4,
                fixed_shape=True,
            )
        )
    )
    step = tf.function(xla.train_step, jit_compile=True)
    hlo = step.experimental_get_compiler_ir(batch)(stage="hlo")
    assert hlo.startswith("HloModule") and "s32[8,32]" in hlo
    assert not re.search(r"\[[^\]]*<=", hlo)  # no bounded-dynamic dimensions


# ----------------------------------------------------------------------
# MirroredStrategy on two logical CPUs == one device
# ----------------------------------------------------------------------
_MIRRORED_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from keras_prompt import distribute
distribute.set_cpu_devices(2)  # before TensorFlow initialises its devices
import keras, keras_hub, numpy as np, tensorflow as tf
from conftest import make_tiny_backbone
from keras_prompt import PromptAdafactor, PromptTunedT5
from keras_prompt.data import Example
from keras_prompt.training import train_prompt

tokenizer = keras_hub.models.T5Tokenizer(proto={spiece!r})
preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
    tokenizer, encoder_sequence_length=32, decoder_sequence_length=4
)
examples = [Example(*e) for e in json.loads({examples!r})]

class Record(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.prompts = []
    def on_train_batch_end(self, batch, logs=None):
        self.prompts.append(self.model.get_prompt())

def run(strategy):
    with strategy.scope():
        model = PromptTunedT5(
            make_tiny_backbone(), preprocessor, prompt_length=4,
            prompt_initializer=keras.initializers.RandomUniform(-0.5, 0.5, seed=1),
        )
        model.compile(optimizer=PromptAdafactor(learning_rate=0.01))
    record = Record()
    train_prompt(
        model, "sst2", examples, steps=6, batch_size=8, max_input_length=32,
        steps_per_epoch=4, callbacks=[record], verbose=0,
    )
    return record.prompts, strategy.num_replicas_in_sync

one, n_one = run(tf.distribute.get_strategy())
two, n_two = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
errors = [
    float(np.linalg.norm(a - b) / np.linalg.norm(a)) for a, b in zip(one, two)
]
print("RESULT " + json.dumps({{"replicas": [n_one, n_two], "errors": errors}}))
"""


def test_mirrored_on_two_cpus_matches_one_device(spiece_path):
    """Same global batches (length-bucketed, shuffled), same seed, same prompt.

    The learning rate is small because a random tiny backbone is chaotic at
    the paper's 0.3: float-rounding differences (1e-7) between one device and
    an all-reduce over two then grow ~10x per step, which says nothing about
    the data-parallel gradient this test checks.
    """
    examples = json.dumps([[e.inputs, e.targets, e.label] for e in EXAMPLES])
    script = _MIRRORED_SCRIPT.format(
        tests=str(REPO_ROOT / "tests"), spiece=str(spiece_path), examples=examples
    )
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    outcome = json.loads(line[len("RESULT ") :])
    assert outcome["replicas"] == [1, 2]
    assert len(outcome["errors"]) == 6
    assert max(outcome["errors"]) < 1e-4, outcome["errors"]


# ----------------------------------------------------------------------
# Seeded prompt initialisation does not depend on the strategy
# ----------------------------------------------------------------------
_INIT_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from keras_prompt import distribute
distribute.set_cpu_devices(2)  # before TensorFlow initialises its devices
import keras, keras_hub, numpy as np, tensorflow as tf
from conftest import make_tiny_backbone
from keras_prompt import PromptTunedT5, initializers

tokenizer = keras_hub.models.T5Tokenizer(proto={spiece!r})
preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
    tokenizer, encoder_sequence_length=32, decoder_sequence_length=4
)
np.save({npy!r}, np.random.default_rng(0).normal(size=(6, 16)).astype("float32"))
INITIALIZERS = {{
    "random_uniform": lambda: "random_uniform",
    "sampled_vocab": lambda: "sampled_vocab",
    "class_labels": lambda: initializers.ClassLabels(labels=["negative", "positive"]),
    "from_text": lambda: initializers.FromText(text="sentiment"),
    "from_file": lambda: {npy!r},
}}


def prompt(name, strategy, seed):
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        model = PromptTunedT5(
            make_tiny_backbone(), preprocessor, prompt_length=6,
            prompt_initializer=INITIALIZERS[name](),
        )
    return model.get_prompt()


mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
one = tf.distribute.get_strategy()
result = {{}}
for name in INITIALIZERS:
    # Two separate builds with one seed: equal means repeatable as well.
    a, two = (prompt(name, s, 0) for s in (one, mirrored))
    other_seed = prompt(name, one, 1)
    result[name] = {{
        "replicas": mirrored.num_replicas_in_sync,
        "mirrored": float(np.abs(a - two).max()),
        "other_seed": float(np.abs(a - other_seed).max()),
    }}
print("RESULT " + json.dumps(result))
"""


def test_seeded_prompt_initialisation_is_the_same_on_one_or_two_replicas(
    spiece_path, tmp_path
):
    """keras.utils.set_random_seed fixes every initializer's prompt, whatever
    the strategy (docs/distributed.md's promise), and another seed changes
    the random ones."""
    script = _INIT_SCRIPT.format(
        tests=str(REPO_ROOT / "tests"),
        spiece=str(spiece_path),
        npy=str(tmp_path / "prompt.npy"),
    )
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    outcome = json.loads(line[len("RESULT ") :])
    assert sorted(outcome) == [
        "class_labels", "from_file", "from_text", "random_uniform", "sampled_vocab",
    ]  # fmt: skip
    for name, figures in outcome.items():
        assert figures["replicas"] == 2
        assert figures["mirrored"] == 0.0, (name, figures)
        if name != "from_file":
            assert figures["other_seed"] > 0.0, (name, figures)
