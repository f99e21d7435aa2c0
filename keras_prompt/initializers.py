"""Prompt initializers, composable like google-research/prompt-tuning's.

The paper compares three ways to start a prompt: random uniform vectors,
embeddings of tokens sampled from the 5,000 most common vocabulary items, and
the embeddings of the task's class labels (verbalizers) with the remaining
positions sampled from the vocabulary. Class-label init works best, sampled
vocab second, random uniform last (Lester et al., 2021, Figure 3).

Initializers that read the model's embedding table or tokenizer accept
`embeddings=None` / `tokenizer=None`: `PromptTunedT5` binds its backbone's
table and its tokenizer in before the prompt is built, so they can be named by
string (`"sampled_vocab"`) and serialized without a 32k x H array in the config.
"""

from __future__ import annotations

import os
import random
import warnings
from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from keras_prompt.run_config import PAPER_INITIALIZERS

# The T5 SentencePiece vocabulary is sorted by frequency (ids 0-2 are pad,
# eos and unk), so "the first N ids" are the N most common pieces.
_FIRST_REGULAR_TOKEN_ID = 3


class PromptInitializer(keras.initializers.Initializer):
    """Base class: a seeded initializer that may need the embedding table.

    `seed=None` draws the seed from Python's `random` when the initializer is
    created, as Keras' own initializers do, so `keras.utils.set_random_seed`
    fixes it. Values then depend on the seed alone: not on the distribution
    strategy, the device or how many times (once per replica) the
    initializer is called. `get_config` records the seed drawn.
    """

    def __init__(self, seed: int | None = None):
        if seed is None:
            seed = random.randint(1, int(1e9))
        self.seed = seed

    def bind(self, embeddings=None, tokenizer=None) -> PromptInitializer:
        """Returns a copy with `embeddings`/`tokenizer` filled in where unset."""
        return self

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def _values(self, shape: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, shape, dtype=None):
        shape = tuple(int(d) for d in shape)
        if len(shape) != 2:
            raise ValueError(
                f"{type(self).__name__} builds prompts of shape "
                f"(prompt_length, hidden_dim); got shape {shape}."
            )
        values = np.asarray(self._values(shape), dtype="float32")
        return ops.convert_to_tensor(values, dtype=dtype or "float32")

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}


def _as_numpy_table(embeddings) -> np.ndarray:
    table = np.asarray(ops.convert_to_numpy(embeddings), dtype="float32")
    if table.ndim != 2:
        raise ValueError(
            "`embeddings` must be a (vocabulary_size, hidden_dim) table; got "
            f"shape {table.shape}."
        )
    return table


def _check_width(table: np.ndarray, shape: tuple[int, int], name: str) -> None:
    if table.shape[1] != shape[1]:
        raise ValueError(
            f"{name}: the embedding table has width {table.shape[1]} but the "
            f"prompt has shape {shape} (hidden_dim {shape[1]})."
        )


class _NeedsEmbeddings(PromptInitializer):
    def __init__(self, embeddings=None, seed: int | None = None):
        super().__init__(seed=seed)
        self.embeddings = embeddings

    def _table(self, shape) -> np.ndarray:
        if self.embeddings is None:
            raise ValueError(
                f"{type(self).__name__} needs the model's embedding table: pass "
                "`embeddings=` or use it through PromptTunedT5, which supplies "
                "its backbone's token embeddings."
            )
        table = _as_numpy_table(self.embeddings)
        _check_width(table, shape, type(self).__name__)
        return table

    def bind(self, embeddings=None, tokenizer=None):
        if self.embeddings is not None or embeddings is None:
            return self
        clone = type(self).from_config(self.get_config())
        clone.embeddings = embeddings
        return clone


@keras.saving.register_keras_serializable(package="keras_prompt")
class RandomUniform(PromptInitializer):
    """Uniform in `[-scale, scale]`: the paper's weakest baseline init."""

    def __init__(self, scale: float = 0.5, seed: int | None = None):
        super().__init__(seed=seed)
        if scale <= 0:
            raise ValueError(f"`scale` must be > 0; got {scale}.")
        self.scale = float(scale)

    def _values(self, shape):
        return self._rng().uniform(-self.scale, self.scale, size=shape)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="keras_prompt")
class SampledVocab(_NeedsEmbeddings):
    """Rows copied from embeddings of the `population` most common tokens.

    Sampling is without replacement when the population allows, so prompt
    positions start distinct.
    """

    def __init__(
        self,
        embeddings=None,
        population: int = 5000,
        seed: int | None = None,
    ):
        super().__init__(embeddings=embeddings, seed=seed)
        if population < 1:
            raise ValueError(f"`population` must be >= 1; got {population}.")
        self.population = int(population)

    def _values(self, shape):
        table = self._table(shape)
        stop = min(_FIRST_REGULAR_TOKEN_ID + self.population, table.shape[0])
        candidates = np.arange(_FIRST_REGULAR_TOKEN_ID, stop)
        replace = shape[0] > len(candidates)
        ids = self._rng().choice(candidates, size=shape[0], replace=replace)
        return table[ids]

    def get_config(self):
        return {**super().get_config(), "population": self.population}


class _TextThenFallback(_NeedsEmbeddings):
    """Fills leading positions from text, the rest from a fallback initializer."""

    def __init__(self, embeddings=None, tokenizer=None, fallback=None, seed=None):
        super().__init__(embeddings=embeddings, seed=seed)
        self.tokenizer = tokenizer
        if fallback is None:
            fallback = SampledVocab(seed=seed)
        self.fallback = get(fallback)
        if isinstance(self.fallback, PromptInitializer):
            self.fallback = self.fallback.bind(embeddings, tokenizer)

    def bind(self, embeddings=None, tokenizer=None):
        clone = type(self).from_config(self.get_config())
        clone.embeddings = (
            self.embeddings if self.embeddings is not None else embeddings
        )
        clone.tokenizer = self.tokenizer if self.tokenizer is not None else tokenizer
        if isinstance(clone.fallback, PromptInitializer):
            clone.fallback = clone.fallback.bind(clone.embeddings, clone.tokenizer)
        return clone

    def _token_ids(self, text: str) -> np.ndarray:
        if self.tokenizer is None:
            raise ValueError(
                f"{type(self).__name__} needs a tokenizer: pass `tokenizer=` or use "
                "it through PromptTunedT5, which supplies its preprocessor's."
            )
        ids = np.asarray(ops.convert_to_numpy(self.tokenizer.tokenize(text)))
        ids = ids.reshape(-1)
        if ids.size == 0:
            raise ValueError(f"{text!r} tokenizes to no tokens.")
        return ids

    def _leading_rows(self, table: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def _values(self, shape):
        table = self._table(shape)
        rows = self._leading_rows(table)[: shape[0]]
        remaining = shape[0] - len(rows)
        parts = [np.stack(rows)] if rows else []
        if remaining:
            parts.append(ops.convert_to_numpy(self.fallback((remaining, shape[1]))))
        return np.concatenate(parts, axis=0)

    def get_config(self):
        return {**super().get_config(), "fallback": serialize(self.fallback)}


@keras.saving.register_keras_serializable(package="keras_prompt")
class ClassLabels(_TextThenFallback):
    """One position per class label: the mean of its sub-token embeddings.

    The paper's best initialization. Positions beyond the number of labels
    come from `fallback` (sampled vocabulary by default); when the prompt is
    shorter than the label list, the first labels win.
    """

    def __init__(
        self,
        embeddings=None,
        tokenizer=None,
        labels: Sequence[str] = (),
        fallback=None,
        seed: int | None = None,
    ):
        super().__init__(embeddings, tokenizer, fallback, seed)
        labels = [labels] if isinstance(labels, str) else list(labels)
        if not labels or not all(isinstance(x, str) and x for x in labels):
            raise ValueError(
                "`labels` must be a non-empty list of non-empty strings (the "
                f"task's verbalizers); got {labels!r}."
            )
        self.labels = labels

    def _leading_rows(self, table):
        return [table[self._token_ids(label)].mean(axis=0) for label in self.labels]

    def get_config(self):
        return {**super().get_config(), "labels": list(self.labels)}


@keras.saving.register_keras_serializable(package="keras_prompt")
class FromText(_TextThenFallback):
    """One position per sub-token of `text` (e.g. a task description)."""

    def __init__(
        self,
        embeddings=None,
        tokenizer=None,
        text: str = "",
        fallback=None,
        seed: int | None = None,
    ):
        super().__init__(embeddings, tokenizer, fallback, seed)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"`text` must be a non-empty string; got {text!r}.")
        self.text = text

    def _leading_rows(self, table):
        return list(table[self._token_ids(self.text)])

    def get_config(self):
        return {**super().get_config(), "text": self.text}


@keras.saving.register_keras_serializable(package="keras_prompt")
class FromFile(PromptInitializer):
    """A prompt saved as a `.npy` array (e.g. the paper authors' released ones)."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(seed=None)
        self.path = os.fspath(path)

    def _values(self, shape):
        from keras_prompt.prompts import read_prompt_array

        values = read_prompt_array(self.path)
        if values.shape != shape:
            raise ValueError(
                f"Prompt file {self.path} holds an array of shape {values.shape}, "
                f"but a prompt of shape {shape} (prompt_length, hidden_dim) was "
                "requested."
            )
        return values

    def get_config(self):
        return {"path": self.path}


_BY_NAME = {
    "random_uniform": RandomUniform,
    "sampled_vocab": SampledVocab,
    "class_labels": ClassLabels,
    "from_text": FromText,
}


def get(identifier) -> keras.initializers.Initializer:
    """Resolves a name, a `.npy` path, a config dict or an instance."""
    if isinstance(identifier, keras.initializers.Initializer):
        return identifier
    if isinstance(identifier, (str, os.PathLike)):
        name = os.fspath(identifier)
        if name.endswith(".npy"):
            return FromFile(name)
        if name in _BY_NAME:
            if name in ("class_labels", "from_text"):
                raise ValueError(
                    f"Initializer {name!r} needs arguments (labels or text); "
                    f"pass an instance, e.g. keras_prompt.initializers."
                    f"{_BY_NAME[name].__name__}(...)."
                )
            return _BY_NAME[name]()
        return keras.initializers.get(name)
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    raise ValueError(
        "A prompt initializer must be a name (one of "
        f"{sorted(_BY_NAME)}), a path to a .npy file, a config dict or an "
        f"Initializer instance; got {identifier!r}."
    )


def by_name(
    name: str,
    labels: Sequence[str],
    seed: int | None = None,
    *,
    argument: str = "prompt initializer",
) -> PromptInitializer:
    """One of the paper's initialisations by name, or `FromFile` for a `.npy` path.

    `class_labels` embeds `labels` (the task's verbalizers) with the rest
    sampled from the vocabulary; every random part draws with `seed`.
    `argument` names the option in the error for an unknown name (the CLI
    passes `--init`).
    """
    if name.endswith(".npy"):
        return FromFile(name)
    if name == "class_labels":
        return ClassLabels(labels=list(labels), fallback=SampledVocab(seed=seed))
    if name == "sampled_vocab":
        return SampledVocab(seed=seed)
    if name == "random_uniform":
        return RandomUniform(seed=seed)
    raise ValueError(
        f"Unknown {argument} {name!r}; use one of "
        f"{list(PAPER_INITIALIZERS)} or a .npy path."
    )


def bind_to_model(initializer, embeddings, tokenizer):
    """`initializer` with a model's embedding table and tokenizer bound in.

    A `PromptInitializer` that needs the tokenizer's vocabulary while it is
    not loaded yet (a model rebuilt from its config: the vocabulary arrives
    with the saved assets after construction, and the saved prompt weights
    overwrite the initial values) gives zeros, with a warning.
    """
    if not isinstance(initializer, PromptInitializer):
        return initializer
    if getattr(initializer, "tokenizer", False) is None and (
        tokenizer is not None and getattr(tokenizer, "proto", None) is None
    ):
        warnings.warn(
            f"{type(initializer).__name__} needs the tokenizer's "
            "vocabulary, which is not loaded yet (model rebuilt from a "
            "config?); the prompt starts at zeros until weights are "
            "loaded.",
            stacklevel=3,
        )
        return keras.initializers.Zeros()
    return initializer.bind(embeddings=embeddings, tokenizer=tokenizer)


def serialize(initializer) -> dict[str, Any]:
    return keras.saving.serialize_keras_object(initializer)
