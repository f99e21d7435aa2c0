"""TFX tests: run by `.ci/tfx_stage.sh` in the Python 3.10 TFX venv.

TFX does not install next to the main stack (TF 2.21), so the default
`pytest` run collects nothing here. What is collected:

* TFX installed (the venv of `scripts/tfx_env.sh`): every file.
* `KERAS_PROMPT_TFX_TESTS=main-stack`: the files that need no TFX
  (`run_fn` on fake `fn_args`, the keras-hub compatibility layer), so the
  CI stage also checks the Trainer code on the main stack.
* Otherwise: nothing.

Whether TFX is installed is asked of the installed distributions, not of
`import tfx`: this folder is itself named `tfx` and would pass for a
namespace package of that name.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import numpy as np
import pytest

try:
    TFX_VERSION: str | None = importlib.metadata.version("tfx")
except importlib.metadata.PackageNotFoundError:
    TFX_VERSION = None

#: Test files that need TFX itself (the rest only need keras-prompt).
NEEDS_TFX = ["test_tfx_pipeline.py"]

if TFX_VERSION is not None:
    collect_ignore_glob: list[str] = []
elif os.environ.get("KERAS_PROMPT_TFX_TESTS") == "main-stack":
    collect_ignore_glob = NEEDS_TFX
else:
    collect_ignore_glob = ["*.py"]

ASSETS_DIR = Path(
    os.environ.get(
        "KERAS_PROMPT_ASSETS",
        Path(__file__).resolve().parents[2].parent / "shared" / "assets",
    )
)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "tfx: TFX integration tests (tests/tfx, run by .ci/tfx_stage.sh)"
    )


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.tfx)


@pytest.fixture(scope="session")
def assets() -> Path:
    if not (ASSETS_DIR / "t5" / "spiece.model").is_file():
        pytest.fail(
            f"Assets not found in {ASSETS_DIR}; set KERAS_PROMPT_ASSETS to the "
            "folder holding t5/spiece.model and glue/."
        )
    return ASSETS_DIR


@pytest.fixture(scope="session")
def tiny_preset(assets, tmp_path_factory) -> Path:
    """A keras-hub preset of a tiny random T5 1.1 with the real vocabulary.

    Made by this process's keras-hub, so it loads on either stack. Weights
    come from a seeded numpy generator rather than
    `keras.utils.set_random_seed`, which would break tokenizers that other
    tests created earlier in the process.
    """
    import keras_hub

    from keras_prompt.models.geometries import build_backbone

    backbone = build_backbone("t5_1_1_tiny", dropout=0.0)
    rng = np.random.default_rng(0)
    for variable in backbone.weights:
        if "layer_norm" in variable.path:
            continue
        scale = 0.5 if "embedding" in variable.path else 0.3
        values = rng.normal(0.0, scale, size=tuple(variable.shape))
        variable.assign(values.astype("float32"))
    path = tmp_path_factory.mktemp("tiny_preset")
    backbone.save_to_preset(path)
    tokenizer = keras_hub.models.T5Tokenizer(proto=str(assets / "t5" / "spiece.model"))
    tokenizer.save_to_preset(path)
    return path
