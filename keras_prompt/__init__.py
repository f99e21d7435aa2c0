"""keras-prompt: prompt tuning (Lester et al., 2021) for Keras 3 and keras-hub T5."""

import os

# keras-prompt builds TensorFlow graphs (tf.data, SavedModel signatures);
# pick the TF backend unless the user already chose one.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from keras_prompt import callbacks, initializers  # noqa: E402
from keras_prompt.ensemble import (  # noqa: E402
    EnsemblePrediction,
    ensemble_predict,
    ensemble_report,
    majority_vote,
)
from keras_prompt.inspection import nearest_tokens, verbalizer_hit_rate  # noqa: E402
from keras_prompt.layers import SoftPrompt  # noqa: E402
from keras_prompt.models import PromptTunedT5  # noqa: E402
from keras_prompt.optimizers import PromptAdafactor  # noqa: E402
from keras_prompt.prompts import load_prompt_file, save_prompt_file  # noqa: E402
from keras_prompt.version import __version__  # noqa: E402

__all__ = [
    "EnsemblePrediction",
    "PromptAdafactor",
    "PromptTunedT5",
    "SoftPrompt",
    "__version__",
    "callbacks",
    "ensemble_predict",
    "ensemble_report",
    "initializers",
    "load_prompt_file",
    "majority_vote",
    "nearest_tokens",
    "save_prompt_file",
    "verbalizer_hit_rate",
]
