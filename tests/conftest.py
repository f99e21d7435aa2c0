"""Shared fixtures: real assets from ../shared/assets, tiny T5 backbones and
models, and the `keras-prompt` command line in subprocesses."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS_DIR = Path(
    os.environ.get("KERAS_PROMPT_ASSETS", REPO_ROOT.parent / "shared" / "assets")
)


@pytest.fixture(scope="session")
def assets_dir() -> Path:
    if not ASSETS_DIR.is_dir():
        pytest.fail(
            f"Assets directory {ASSETS_DIR} not found; set KERAS_PROMPT_ASSETS "
            "to the folder holding t5/spiece.model, glue/ and superglue/."
        )
    return ASSETS_DIR


@pytest.fixture(scope="session")
def spiece_path(assets_dir) -> Path:
    return assets_dir / "t5" / "spiece.model"


def make_tokenizer(spiece_path):
    """A T5Tokenizer on the real vocabulary.

    Fixtures wider than one test build their own with this: a tokenizer
    outlives `keras.utils.set_random_seed` calls (made by in-process CLI runs)
    only if it is created after them, so the shared `tokenizer` fixture is
    per test.
    """
    import keras_hub

    return keras_hub.models.T5Tokenizer(proto=str(spiece_path))


@pytest.fixture
def tokenizer(spiece_path):
    return make_tokenizer(spiece_path)


def make_tiny_backbone(hidden_dim=16, num_layers=2, seed=0, **overrides):
    """A randomly initialised T5 1.1-style backbone small enough for unit tests.

    Weights are drawn from numpy with `seed` rather than through
    `keras.utils.set_random_seed`: that call clears TensorFlow's kernel caches,
    which destroys the SentencePiece resources of tokenizers created earlier in
    the process (their next use fails with "Resource ... SentencepieceOp does
    not exist").
    """
    import keras_hub
    import numpy as np

    config = dict(
        vocabulary_size=32128,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=hidden_dim,
        intermediate_dim=2 * hidden_dim,
        key_value_dim=hidden_dim // 2,
        dropout=0.0,
        activation="gelu",
        use_gated_activation=True,
        tie_embedding_weights=False,
    )
    config.update(overrides)
    backbone = keras_hub.models.T5Backbone(**config)
    rng = np.random.default_rng(seed)
    for variable in backbone.weights:
        if "layer_norm" in variable.path:
            continue
        scale = 0.5 if "embedding" in variable.path else 0.3
        shape = tuple(variable.shape)
        variable.assign(rng.normal(0.0, scale, size=shape).astype("float32"))
    return backbone


@pytest.fixture
def tiny_backbone():
    return make_tiny_backbone()


def make_tiny_model_and_batch(policy="float32", decoder_padding_mask=None):
    """A tiny PromptTunedT5 under `policy` with a fixed 3-vector prompt, and a
    2-example batch (the second example's encoder input padded)."""
    import keras
    import numpy as np

    from keras_prompt import PromptTunedT5

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = PromptTunedT5(make_tiny_backbone(), prompt_length=3)
    finally:
        keras.config.set_dtype_policy(previous)
    rng = np.random.default_rng(0)
    model.set_prompt(rng.uniform(-0.5, 0.5, (3, 16)))
    if decoder_padding_mask is None:
        decoder_padding_mask = np.ones((2, 3), "int32")
    x = {
        "encoder_token_ids": rng.integers(3, 32000, (2, 9)).astype("int32"),
        "encoder_padding_mask": np.array([[1] * 9, [1] * 5 + [0] * 4], "int32"),
        "decoder_token_ids": rng.integers(3, 32000, (2, 3)).astype("int32"),
        "decoder_padding_mask": decoder_padding_mask,
    }
    return model, x


def run_cli(*args, check=True, script=None):
    """Runs `keras-prompt *args` (or `python script *args`) from the repo root."""
    command = [sys.executable, script] if script else [
        sys.executable, "-m", "keras_prompt.cli"
    ]
    result = subprocess.run(
        [*command, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO_ROOT,
    )
    if check and result.returncode != 0:
        name = script or "keras-prompt"
        raise AssertionError(f"{name} {args[0]} failed:\n{result.stderr[-3000:]}")
    return result


def json_tail(stdout):
    """The JSON object a command prints last (after any log lines)."""
    return json.loads(stdout[stdout.index("{") :])


@pytest.fixture(scope="session")
def tiny_preset(tmp_path_factory, spiece_path):
    """A `make-preset` t5_1_1_tiny preset on the real vocabulary.

    Shared by the whole session (one `make-preset` process instead of one per
    module): tests read it and never write into it, which the teardown
    checks.
    """
    out = tmp_path_factory.mktemp("preset") / "tiny"
    result = run_cli(
        "make-preset", "--geometry", "t5_1_1_tiny", "--vocab", spiece_path, "--out", out
    )
    info = json_tail(result.stdout)
    assert info["pretrained"] is False and info["parameters"] > 1_000_000
    assert (out / "config.json").is_file() and (out / "MODEL_CARD.md").is_file()
    before = _file_digests(out)
    yield out
    assert _file_digests(out) == before, "a test changed the shared tiny_preset"


def _file_digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
