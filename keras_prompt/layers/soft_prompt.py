"""The soft prompt: learned vectors prepended to the embedded encoder input."""

from __future__ import annotations

import keras
from keras import ops

from keras_prompt import initializers as prompt_initializers


@keras.saving.register_keras_serializable(package="keras_prompt")
class SoftPrompt(keras.layers.Layer):
    """Prepends `length` learned vectors to a batch of token embeddings.

    This is the only trainable piece of prompt tuning (Lester et al., 2021):
    a `(length, hidden_dim)` matrix in the model's embedding space, placed in
    front of every embedded input sequence, with the padding mask extended so
    the encoder attends to it.

    The weight is always stored in float32 (as the optimizer's slots are):
    under a `mixed_bfloat16` policy it is cast to the compute dtype on use, so
    small updates at large learning rates are not lost to bfloat16 rounding.

    Passing `prompts` of shape `(batch, length, hidden_dim)` replaces the
    layer's own weight with one prompt per example. That is how one frozen
    model serves a batch mixing several tasks, and how an ensemble of prompts
    runs in a single batch.

    Args:
        length: int. Number of prompt vectors (the paper uses 1 to 150; 100
            is its best setting).
        initializer: a Keras initializer, its name, or config. Called with
            shape `(length, hidden_dim)` when the layer is built.
        hidden_dim: int, optional. The embedding width. When given, the weight
            is created immediately; otherwise on first call.

    Example:

    >>> import numpy as np
    >>> layer = SoftPrompt(length=3, hidden_dim=4)
    >>> embeddings = np.zeros((2, 5, 4), "float32")
    >>> mask = np.ones((2, 5), "int32")
    >>> outputs, outputs_mask = layer(embeddings, mask)
    >>> tuple(outputs.shape), tuple(outputs_mask.shape)
    ((2, 8, 4), (2, 8))
    """

    def __init__(
        self,
        length: int,
        initializer="random_uniform",
        hidden_dim: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(length, int) or isinstance(length, bool) or length < 1:
            raise ValueError(
                f"`length` (the prompt length) must be an integer >= 1; got {length!r}."
            )
        self.length = length
        self.initializer = prompt_initializers.get(initializer)
        self.hidden_dim = hidden_dim
        if hidden_dim is not None:
            self.build((None, None, hidden_dim))

    def build(self, embeddings_shape):
        if len(embeddings_shape) != 3 or embeddings_shape[-1] is None:
            raise ValueError(
                "SoftPrompt expects embeddings of shape "
                "(batch, sequence_length, hidden_dim) with a known hidden_dim; "
                f"got shape {tuple(embeddings_shape)}."
            )
        hidden_dim = int(embeddings_shape[-1])
        if self.hidden_dim is not None and hidden_dim != self.hidden_dim:
            raise ValueError(
                f"SoftPrompt was created for hidden_dim={self.hidden_dim} but "
                f"received embeddings of shape {tuple(embeddings_shape)}."
            )
        self.hidden_dim = hidden_dim
        self.prompt = self.add_weight(
            name="prompt",
            shape=(self.length, hidden_dim),
            initializer=self.initializer,
            dtype="float32",
            trainable=True,
        )
        self.built = True

    def call(self, embeddings, padding_mask, prompts=None):
        self._check_shapes(embeddings, padding_mask, prompts)
        batch_size = ops.shape(embeddings)[0]
        if prompts is None:
            prompt = ops.cast(self.prompt, embeddings.dtype)
            prompts = ops.broadcast_to(
                prompt[None, :, :], (batch_size, self.length, self.hidden_dim)
            )
        else:
            prompts = ops.cast(prompts, embeddings.dtype)
        outputs = ops.concatenate([prompts, embeddings], axis=1)
        prompt_mask = ops.ones((batch_size, self.length), dtype=padding_mask.dtype)
        outputs_mask = ops.concatenate([prompt_mask, padding_mask], axis=1)
        return outputs, outputs_mask

    def _check_shapes(self, embeddings, padding_mask, prompts):
        embeddings_shape = tuple(embeddings.shape)
        if len(embeddings_shape) != 3 or embeddings_shape[-1] != self.hidden_dim:
            raise ValueError(
                "`embeddings` must have shape (batch, sequence_length, "
                f"{self.hidden_dim}); got shape {embeddings_shape}."
            )
        if len(padding_mask.shape) != 2:
            raise ValueError(
                "`padding_mask` must have shape (batch, sequence_length); got "
                f"shape {tuple(padding_mask.shape)} for embeddings of shape "
                f"{embeddings_shape}."
            )
        if prompts is None:
            return
        prompts_shape = tuple(prompts.shape)
        expected = (embeddings_shape[0], self.length, self.hidden_dim)
        compatible = len(prompts_shape) == 3 and all(
            got is None or want is None or got == want
            for got, want in zip(prompts_shape, expected)
        )
        if not compatible:
            raise ValueError(
                "`prompts` must have shape (batch, prompt_length, hidden_dim) = "
                f"{expected}; got shape {prompts_shape}."
            )

    def compute_output_shape(self, embeddings_shape, padding_mask_shape=None):
        batch, length, hidden = embeddings_shape
        total = None if length is None else length + self.length
        return (batch, total, hidden), (batch, total)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "length": self.length,
                "initializer": prompt_initializers.serialize(self.initializer),
                "hidden_dim": self.hidden_dim,
            }
        )
        return config
