"""keras-prompt: prompt tuning (Lester et al., 2021) for Keras 3 and keras-hub T5."""

import os

# keras-prompt builds TensorFlow graphs (tf.data, SavedModel signatures);
# pick the TF backend unless the user already chose one.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from keras_prompt import callbacks, initializers  # noqa: E402
from keras_prompt.layers import SoftPrompt  # noqa: E402
from keras_prompt.models import PromptTunedT5  # noqa: E402
from keras_prompt.optimizers import PromptAdafactor  # noqa: E402
from keras_prompt.prompts import load_prompt_file, save_prompt_file  # noqa: E402
from keras_prompt.version import __version__  # noqa: E402

__all__ = [
    "PromptAdafactor",
    "PromptTunedT5",
    "SoftPrompt",
    "__version__",
    "callbacks",
    "initializers",
    "load_prompt_file",
    "save_prompt_file",
]
