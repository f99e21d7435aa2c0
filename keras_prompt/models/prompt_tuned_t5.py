"""PromptTunedT5: a frozen keras-hub T5 conditioned by a learned soft prompt."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import keras
import keras_hub
import numpy as np
import tensorflow as tf
from keras import ops

from keras_prompt import initializers as prompt_initializers
from keras_prompt import prompts as prompt_files
from keras_prompt.layers.soft_prompt import SoftPrompt
from keras_prompt.layers.speed_kernels import set_speed_kernels
from keras_prompt.models import scoring
from keras_prompt.models.identity import backbone_fingerprint, backbone_summary
from keras_prompt.models.loading import load_backbone
from keras_prompt.models.prompted_t5 import PromptedT5
from keras_prompt.models.t5_seq2seq_lm import (
    T5Seq2SeqLM,
    T5Seq2SeqLMPreprocessor,
)
from keras_prompt.optimizers import PromptAdafactor
from keras_prompt.run_config import DEFAULT_LEARNING_RATES, TUNE_MODES
from keras_prompt.steps import optimizer_step
from keras_prompt.version import __version__

_TOKENIZED_KEYS = ("encoder_token_ids", "encoder_padding_mask")


@keras.saving.register_keras_serializable(package="keras_prompt")
class PromptTunedT5(T5Seq2SeqLM):
    """A frozen T5 encoder-decoder conditioned on a task by a soft prompt.

    Prompt tuning (Lester, Al-Rfou & Constant, 2021) learns `prompt_length`
    vectors that are prepended to the embedded encoder input; every backbone
    weight stays frozen, so `model.trainable_weights` is exactly the prompt
    (`prompt_length x hidden_dim` numbers) and one frozen model can serve many
    tasks. The decoder is unchanged.

    Inputs are keras-hub's seq2seq dict (`encoder_token_ids`,
    `encoder_padding_mask`, `decoder_token_ids`, `decoder_padding_mask`), or,
    when a `preprocessor` is attached, raw strings
    (`{"encoder_text": ..., "decoder_text": ...}`) in `fit`/`predict`/
    `generate`. Already tokenized dicts pass through the preprocessor
    untouched, so length-bucketed `keras_prompt.data` datasets work either way.

    `compile()` defaults to the paper's recipe: Adafactor at learning rate 0.3
    without parameter scaling (`keras_prompt.optimizers.PromptAdafactor`), and
    token cross-entropy averaged over non-padding target tokens.

    Model tuning (`tune="model"`, the paper's baseline) uses the same data,
    loss, loop and evaluation but makes every backbone weight trainable. The
    paper's model tuning has no prompt: pass `prompt_length=0`. With
    `prompt_length > 0` the prompt trains together with the backbone
    ("prompt + model"). `compile()` then defaults to Adafactor at T5's
    fine-tuning learning rate 1e-3 (constant, no parameter scaling: Adam-like
    steps of ~1e-3 per weight). A model-tuned model is not a prompt: its
    `save_prompt` refuses (the backbone changed too); save the backbone with
    `model.backbone.save_to_preset(dir)` (and the tokenizer) or `model.save`.

    Args:
        backbone: a `keras_hub.models.T5Backbone`. It is frozen in place.
        preprocessor: a `keras_hub.models.T5Seq2SeqLMPreprocessor` or `None`.
        prompt_length: int >= 1. The paper finds 20-100 works, 100 best.
        prompt_initializer: a name (`"random_uniform"`, `"sampled_vocab"`), a
            `.npy` path, or a `keras_prompt.initializers` instance such as
            `ClassLabels(labels=["negative", "positive"])`. Initializers that
            need the embedding table or tokenizer get this model's.
        tune: `"prompt"` (default: only the prompt trains, the backbone is
            frozen) or `"model"` (every backbone weight trains too; then
            `prompt_length` may be 0 for no prompt at all).
        speed_kernels: which of keras-prompt's faster layer classes replace
            keras-hub's in the backbone (`keras_prompt.layers.speed_kernels`):
            `"auto"` (default: all on a CPU-only TensorFlow, where they were
            measured to help, else none), `True` (all), `False` (keras-hub's
            own layers) or names from `"attention"`, `"layer_norm"`,
            `"dropout"`. Attention and layer norm give the same results up
            to float rounding; the dropout kernel changes dropout statistics
            (one 8-bit threshold per call; the rate stays exact).

    Example:

    ```python
    import keras_hub, keras_prompt
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=32128, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, dropout=0.0,
    )
    model = keras_prompt.PromptTunedT5(backbone, prompt_length=5)
    assert len(model.trainable_weights) == 1
    model.get_prompt().shape  # (5, 16)
    ```
    """

    def __init__(
        self,
        backbone: keras_hub.models.T5Backbone,
        preprocessor: T5Seq2SeqLMPreprocessor | None = None,
        prompt_length: int = 100,
        prompt_initializer: Any = "random_uniform",
        tune: str = "prompt",
        speed_kernels: bool | str | Sequence[str] = "auto",
        **kwargs,
    ):
        prompt_length = _check_tune(tune, prompt_length)
        self.tune = tune
        backbone.trainable = tune == "model"
        set_speed_kernels(backbone, speed_kernels)
        self.speed_kernels = speed_kernels
        initializer = prompt_initializers.get(prompt_initializer)
        self._prompt_initializer_config = prompt_initializers.serialize(initializer)
        initializer = prompt_initializers.bind_to_model(
            initializer,
            backbone.token_embedding.embeddings,
            getattr(preprocessor, "tokenizer", None),
        )

        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.prompt_length = prompt_length
        self.soft_prompt = None
        if prompt_length:
            self.soft_prompt = SoftPrompt(
                prompt_length,
                initializer=initializer,
                hidden_dim=backbone.hidden_dim,
                dtype=backbone.dtype_policy,
                name="soft_prompt",
            )

        # === Functional Model ===
        inputs = {
            name: keras.Input(shape=(None,), dtype="int32", name=name)
            for name in (
                "encoder_token_ids",
                "encoder_padding_mask",
                "decoder_token_ids",
                "decoder_padding_mask",
            )
        }
        self._t5 = PromptedT5(backbone, self.soft_prompt)
        encoder_outputs, encoder_mask = self._t5.encode(
            inputs["encoder_token_ids"], inputs["encoder_padding_mask"]
        )
        decoder_outputs = self._t5.decode(
            inputs["decoder_token_ids"],
            inputs["decoder_padding_mask"],
            encoder_outputs,
            encoder_mask,
        )
        outputs = self._t5.logits(decoder_outputs)
        # Skip T5Seq2SeqLM.__init__, which would wire the backbone's own
        # graph without the prompt; Seq2SeqLM/Task take it from here.
        super(T5Seq2SeqLM, self).__init__(inputs=inputs, outputs=outputs, **kwargs)
        self._score_function = None

    # ------------------------------------------------------------------
    # The forward pass (keras_prompt.models.prompted_t5), for training,
    # scoring, generation and the serving export alike.
    # ------------------------------------------------------------------
    def encode(self, token_ids, padding_mask, prompts=None):
        """Encoder outputs over prompt + tokens, and their `(batch, P + S)` mask.

        `prompts`: optional `(batch, prompt_length, hidden_dim)` per-example
        prompts instead of the model's own.
        """
        return self._t5.encode(token_ids, padding_mask, prompts=prompts)

    def decode(self, token_ids, padding_mask, encoder_outputs, encoder_mask):
        """Decoder hidden states given `encode`'s outputs and mask."""
        return self._t5.decode(token_ids, padding_mask, encoder_outputs, encoder_mask)

    def logits(self, hidden_states):
        """Vocabulary logits of decoder hidden states."""
        return self._t5.logits(hidden_states)

    def score_targets(self, encoder_outputs, encoder_mask, target_ids, target_mask):
        """Summed log-probabilities `(batch, candidates)` of `<pad> tokens </s>`
        targets `(batch, candidates, length)`, given `encode`'s outputs."""
        return self._t5.score(encoder_outputs, encoder_mask, target_ids, target_mask)

    def initial_cache(self, batch_size, encoder_length, decoder_length):
        """Empty decoder caches for `call_decoder_with_cache` (`encoder_length`
        counts the prompt, as `encode`'s outputs do)."""
        return self._t5.initial_cache(
            batch_size, encoder_length, decoder_length, self.compute_dtype
        )

    # keras-hub's Seq2SeqLM interface, on the same forward pass.
    def call_encoder(self, token_ids, padding_mask):
        return self.encode(token_ids, padding_mask)[0]

    def call_decoder_with_cache(
        self,
        encoder_hidden_states,
        encoder_padding_mask,
        decoder_token_ids,
        self_attention_cache,
        self_attention_cache_update_index,
        cross_attention_cache,
        cross_attention_cache_update_index,
    ):
        """As `T5Seq2SeqLM.call_decoder_with_cache`; the mask excludes the prompt.

        `encoder_hidden_states` are `encode`'s (or `call_encoder`'s) outputs,
        over prompt + tokens; `encoder_padding_mask` covers the tokens only.
        Returns `(logits, hidden_states, self_attention_cache,
        cross_attention_cache)`.
        """
        return self._t5.decode_with_cache(
            decoder_token_ids,
            encoder_hidden_states,
            self._with_prompt_mask(encoder_padding_mask),
            self_attention_cache,
            self_attention_cache_update_index,
            cross_attention_cache,
            cross_attention_cache_update_index,
        )

    def generate_step(self, inputs, stop_token_ids=None):
        """keras-hub's `T5Seq2SeqLM.generate_step`, with the prompt."""
        return self._t5.generate(
            inputs,
            self.sampler,
            stop_token_ids=stop_token_ids,
            model=self,
            dtype=self.compute_dtype,
        )

    def _with_prompt_mask(self, padding_mask):
        if not self.prompt_length:
            return padding_mask
        batch_size = ops.shape(padding_mask)[0]
        ones = ops.ones((batch_size, self.prompt_length), dtype=padding_mask.dtype)
        return ops.concatenate([ones, padding_mask], axis=1)

    # ------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------
    def preprocess_samples(self, x, y=None, sample_weight=None):
        if isinstance(x, dict) and all(key in x for key in _TOKENIZED_KEYS):
            return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)
        return super().preprocess_samples(x, y=y, sample_weight=sample_weight)

    def compile(
        self,
        optimizer="auto",
        loss="auto",
        *,
        weighted_metrics="auto",
        sampler="greedy",
        **kwargs,
    ):
        """Configures training; defaults follow Lester et al. (2021).

        Args:
            optimizer: `"auto"` gives `PromptAdafactor(learning_rate=0.3)`
                for `tune="prompt"` and `PromptAdafactor(learning_rate=1e-3)`
                (constant, no parameter scaling) for `tune="model"`.
            loss: `"auto"` gives token cross-entropy from logits, averaged over
                the non-padding target tokens (the sample weights).
            weighted_metrics: `"auto"` gives token accuracy.
            sampler: the `generate()` sampler; greedy decoding by default.
        """
        if optimizer == "auto":
            optimizer = PromptAdafactor(learning_rate=DEFAULT_LEARNING_RATES[self.tune])
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, reduction="mean_with_sample_weight"
            )
        super().compile(
            optimizer=optimizer,
            loss=loss,
            weighted_metrics=weighted_metrics,
            sampler=sampler,
            **kwargs,
        )

    # ------------------------------------------------------------------
    # The prompt
    # ------------------------------------------------------------------
    @property
    def prompt_shape(self) -> tuple[int, int]:
        return (self.prompt_length, self.backbone.hidden_dim)

    def require_prompt(self, what: str) -> None:
        """Raises `ValueError` (naming `what`) when the model has no prompt."""
        if self.soft_prompt is None:
            raise ValueError(
                f"{what} needs a prompt, but this model has none "
                f"(tune={self.tune!r}, prompt_length=0)."
            )

    def get_prompt(self) -> np.ndarray:
        """The prompt as a float32 `(prompt_length, hidden_dim)` array."""
        self.require_prompt("get_prompt()")
        return np.array(ops.convert_to_numpy(self.soft_prompt.prompt), "float32")

    def set_prompt(self, prompt) -> None:
        """Replaces the prompt; validates shape and values before assigning."""
        self.require_prompt("set_prompt()")
        values = prompt_files.check_prompt_array(prompt, self.prompt_shape)
        self.soft_prompt.prompt.assign(values)

    def prompt_metadata(self, **extra) -> dict[str, Any]:
        backbone = self.backbone
        optimizer = getattr(self, "optimizer", None)
        steps = None
        if optimizer is not None and getattr(optimizer, "built", False):
            steps = optimizer_step(self)
        summary = backbone_summary(backbone)
        metadata = {
            "backbone": {
                "class_name": summary["class_name"],
                "fingerprint": summary["fingerprint"],
                "preset": getattr(self, "preset", None),
                "hidden_dim": summary["hidden_dim"],
                "num_layers": summary["num_layers"],
                "vocabulary_size": summary["vocabulary_size"],
            },
            "prompt_length": self.prompt_length,
            "hidden_dim": backbone.hidden_dim,
            "init": self._prompt_initializer_config,
            "steps": steps,
            "keras_prompt_version": __version__,
        }
        metadata.update(extra)
        return metadata

    def save_prompt(
        self,
        path: str | os.PathLike,
        *,
        task: str | None = None,
        verbalizers: Sequence[str] | None = None,
        **extra_metadata,
    ) -> Path:
        """Writes `<path>.npy` and `<path>.json` atomically.

        The JSON records the backbone identity and width, prompt length,
        task, verbalizers, initializer, training steps and keras-prompt
        version, so a prompt file explains itself.

        Raises:
            ValueError: with `tune="model"`: the backbone was trained too, so
                a prompt file alone would not reproduce this model's scores
                on the original backbone. Save `model.backbone` (e.g.
                `save_to_preset`) instead.
        """
        if self.tune == "model":
            raise ValueError(
                "save_prompt() refuses a tune='model' model: its backbone weights "
                "were trained too, so the prompt alone does not reproduce it on "
                "the original checkpoint. Save the backbone instead, e.g. "
                "`model.backbone.save_to_preset(dir)` and "
                "`model.preprocessor.tokenizer.save_to_preset(dir)`."
            )
        metadata = self.prompt_metadata(
            task=task,
            verbalizers=list(verbalizers) if verbalizers is not None else None,
            **extra_metadata,
        )
        return prompt_files.save_prompt_file(path, self.get_prompt(), metadata)

    def load_prompt(self, path: str | os.PathLike) -> dict[str, Any]:
        """Loads a prompt file into the model and returns its metadata.

        The array must match this model's `(prompt_length, hidden_dim)`, and
        the metadata's backbone (when recorded) this model's backbone;
        nothing is assigned otherwise.
        """
        values, metadata = prompt_files.load_prompt_file(path)
        if values.shape[1] != self.backbone.hidden_dim:
            raise ValueError(
                f"Prompt file {path} has width {values.shape[1]} but this model's "
                f"backbone has hidden size {self.backbone.hidden_dim}; a prompt only "
                "works with the embedding space it was trained in."
            )
        prompt_files.check_prompt_backbone(
            metadata,
            prompt_files.prompt_paths(path)[1],
            fingerprint=backbone_fingerprint(self.backbone),
            hidden_dim=self.backbone.hidden_dim,
        )
        self.set_prompt(values)
        return metadata

    # ------------------------------------------------------------------
    # Rank classification
    # ------------------------------------------------------------------
    def require_tokenizer(self):
        """The preprocessor's tokenizer; a clear error when there is none."""
        if self.preprocessor is None:
            raise ValueError(
                "This PromptTunedT5 has no preprocessor, so it cannot tokenize "
                "strings; build it with `preprocessor=` or `from_preset()`."
            )
        return self.preprocessor.tokenizer

    def score_tokens(
        self, encoder_ids, encoder_mask, decoder_ids, decoder_mask, prompts=None
    ):
        """Sum of target-token log-probabilities, shape `(batch, candidates)`.

        `decoder_ids` is `(batch, candidates, length + 1)`: a `<pad>` start,
        the candidate's tokens and `</s>`; the encoder runs once per example
        and is shared by all its candidates. Compiled once (`tf.function`).
        """
        if self._score_function is None:

            def score(encoder_ids, encoder_mask, decoder_ids, decoder_mask, prompts):
                encoded, mask = self.encode(encoder_ids, encoder_mask, prompts)
                return self.score_targets(encoded, mask, decoder_ids, decoder_mask)

            self._score_function = tf.function(score, reduce_retracing=True)
        return self._score_function(
            encoder_ids, encoder_mask, decoder_ids, decoder_mask, prompts
        )

    def score(
        self,
        inputs: str | Sequence[str],
        candidates: Sequence[str] | Sequence[Sequence[str]],
        *,
        prompts=None,
        batch_size: int = 32,
        verbose: int | str = 0,
    ) -> np.ndarray:
        """Log-likelihood of each candidate target given each input.

        This is rank classification, how the paper evaluates classification
        tasks: the label is the verbalizer the model finds most likely, so an
        off-vocabulary generation can never count as a wrong class.

        Args:
            inputs: a string or list of `B` strings.
            candidates: `C` strings shared by all inputs, or `B` lists of `C`.
            prompts: optional `(B, prompt_length, hidden_dim)` per-example
                prompts (mixed tasks, ensembles); default is the model's own.
            batch_size: examples per forward pass.
            verbose: 0 (silent), 1 or `"auto"`: a Keras progress bar on
                stderr over the inputs, as `fit` shows (`keras_prompt.progress`).

        Returns:
            float32 array `(B, C)` of summed token log-probabilities
            (including the end-of-sequence token).
        """
        return scoring.score(
            self,
            inputs,
            candidates,
            prompts=prompts,
            batch_size=batch_size,
            verbose=verbose,
        )

    def predict_label(
        self,
        inputs: str | Sequence[str],
        verbalizers: Sequence[str],
        *,
        prompts=None,
        batch_size: int = 32,
    ) -> np.ndarray:
        """Index of the most likely verbalizer for each input (int array)."""
        scores = self.score(inputs, verbalizers, prompts=prompts, batch_size=batch_size)
        return np.argmax(scores, axis=-1)

    # ------------------------------------------------------------------
    # Construction and serialization
    # ------------------------------------------------------------------
    def compile_from_config(self, config):
        # Declared so Keras restores the compile state of a saved model through
        # this class's compile() (with its paper defaults) instead of warning.
        super().compile_from_config(config)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "prompt_length": self.prompt_length,
                "prompt_initializer": self._prompt_initializer_config,
                "tune": self.tune,
                "speed_kernels": (
                    self.speed_kernels
                    if isinstance(self.speed_kernels, (bool, str, type(None)))
                    else list(self.speed_kernels)
                ),
            }
        )
        return config

    @classmethod
    def from_preset(
        cls,
        preset: str | os.PathLike,
        load_weights: bool = True,
        *,
        dtype=None,
        dropout: float | None = None,
        encoder_sequence_length: int = 512,
        decoder_sequence_length: int = 32,
        **kwargs,
    ) -> PromptTunedT5:
        """Builds a prompt-tuned model on a pretrained T5 (keras-hub's signature).

        Args:
            preset: a keras-hub preset name (downloaded when online, e.g.
                `"t5_1.1_small"`), a local keras-hub preset directory, a
                Hugging Face T5 checkpoint directory (`config.json`,
                `model.safetensors` or `tf_model.h5`, `spiece.model`), which
                is imported with `keras_prompt.checkpoints.load_hf_t5`, or
                `"hf://owner/name"`, that checkpoint from the local Hugging
                Face cache (downloaded only when online).
            load_weights: load pretrained weights (else random init).
            dtype: backbone dtype or policy, e.g. `"bfloat16"`.
            dropout: the backbone's dropout rate while training; `None` keeps
                the checkpoint's.
            encoder_sequence_length, decoder_sequence_length: the
                preprocessor's packing lengths for raw-string inputs.
            **kwargs: the constructor's (`prompt_length`, `prompt_initializer`,
                `tune`, `speed_kernels`, ...); see the class docstring.

        Example:

        ```python
        model = PromptTunedT5.from_preset("t5_1.1_small", prompt_length=20)
        ```
        """
        preset_str = os.fspath(preset)
        backbone, tokenizer = load_backbone(
            preset_str, load_weights=load_weights, dtype=dtype, dropout=dropout
        )
        preprocessor = T5Seq2SeqLMPreprocessor(
            tokenizer,
            encoder_sequence_length=encoder_sequence_length,
            decoder_sequence_length=decoder_sequence_length,
        )
        model = cls(backbone, preprocessor, **kwargs)
        model.preset = preset_str
        return model


def _check_tune(tune: str, prompt_length) -> int:
    """The prompt length as an int, after checking it fits the tune mode."""
    if tune not in TUNE_MODES:
        raise ValueError(
            f'`tune` must be one of {list(TUNE_MODES)} ("prompt": train only '
            f'the soft prompt; "model": train every weight); got {tune!r}.'
        )
    minimum = 0 if tune == "model" else 1
    if (
        not isinstance(prompt_length, (int, np.integer))
        or isinstance(prompt_length, bool)
        or prompt_length < minimum
    ):
        raise ValueError(
            f"`prompt_length` must be an integer >= {minimum} with "
            f"tune={tune!r}"
            + (" (0, no prompt, only with tune='model')" if minimum else "")
            + f"; got {prompt_length!r}."
        )
    return int(prompt_length)
