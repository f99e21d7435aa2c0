"""keras-prompt: prompt tuning (Lester et al., 2021) for Keras 3 and keras-hub T5.

The public names below are imported on first use (PEP 562), so `import
keras_prompt` does not load TensorFlow: the `keras-prompt` command checks its
arguments in milliseconds, before anything heavy is imported. Keras registers
keras-prompt's layers and models for deserialization when they are first
used; to `keras.saving.load_model` a saved `PromptTunedT5` in a fresh process,
touch `keras_prompt.PromptTunedT5` (or import it) first.
"""

import importlib
import os

# keras-prompt builds TensorFlow graphs (tf.data, SavedModel signatures);
# pick the TF backend unless the user already chose one.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from keras_prompt.version import __version__  # noqa: E402

_ATTRIBUTES = {
    "EnsemblePrediction": "keras_prompt.ensemble",
    "PromptAdafactor": "keras_prompt.optimizers",
    "PromptTunedT5": "keras_prompt.models",
    "SoftPrompt": "keras_prompt.layers",
    "ensemble_predict": "keras_prompt.ensemble",
    "ensemble_report": "keras_prompt.ensemble",
    "load_prompt_file": "keras_prompt.prompts",
    "majority_vote": "keras_prompt.ensemble",
    "nearest_tokens": "keras_prompt.inspection",
    "save_prompt_file": "keras_prompt.prompts",
    "verbalizer_hit_rate": "keras_prompt.inspection",
}
_SUBMODULES = ("callbacks", "initializers")

__all__ = [*sorted([*_ATTRIBUTES, *_SUBMODULES]), "__version__"]


def __getattr__(name: str):
    if name in _ATTRIBUTES:
        value = getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"keras_prompt.{name}")
    else:
        raise AttributeError(f"module 'keras_prompt' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
