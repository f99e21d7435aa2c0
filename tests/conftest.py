"""Shared fixtures: real assets from ../shared/assets and tiny T5 backbones."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS_DIR = Path(
    os.environ.get("KERAS_PROMPT_ASSETS", REPO_ROOT.parent / "shared" / "assets")
)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: real-data or real-size runs, excluded by default"
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
