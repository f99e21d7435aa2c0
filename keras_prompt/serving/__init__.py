"""Serving: export a prompt-tuned T5 for TF Serving, and build its requests.

`export_saved_model` writes a SavedModel that takes strings and gives strings
(in-graph SentencePiece tokenization and greedy decoding) and loads with
plain TensorFlow + TF Text ops, i.e. in the stock `tensorflow_model_server`.
`PromptBank` is the task -> prompt(s) table baked into it, and
`keras_prompt.serving.client` builds REST bodies and gRPC requests for it.
"""

from keras_prompt.serving import client
from keras_prompt.serving.export import (
    DEFAULT_TASK,
    SIGNATURES,
    export_saved_model,
    saved_model_ops,
)
from keras_prompt.serving.prompt_bank import PromptBank

__all__ = [
    "DEFAULT_TASK",
    "SIGNATURES",
    "PromptBank",
    "client",
    "export_saved_model",
    "saved_model_ops",
]
