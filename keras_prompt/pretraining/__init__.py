"""Pretraining a T5 for prompt tuning: LM adaptation and span corruption.

Prompt tuning needs a *pretrained* frozen model, ideally LM-adapted
(Lester et al. 2021 §2.2: T5 trained further to continue a prefix, so its
decoder emits natural text rather than sentinel spans). This package trains
one from a preset or from scratch on a plain-text corpus:

    from keras_prompt.pretraining import PretrainConfig, pretrain
    pretrain(PretrainConfig(corpus=["corpus/"], out="run", vocab="spiece.model",
                            geometry="t5_1_1_mini", steps=2000,
                            span_corruption_steps=1000, dtype="mixed_bfloat16"))

or ``keras-prompt lm-adapt`` on the command line (see ``docs/pretraining.md``).
"""

import importlib

# Imported on first use (PEP 562), so `keras_prompt.pretraining.config` (the
# command line's defaults) loads without TensorFlow.
_ATTRIBUTES = {
    "CheckpointMismatchError": "keras_prompt.pretraining.checkpoint",
    "CorpusError": "keras_prompt.pretraining.corpus",
    "PretrainConfig": "keras_prompt.pretraining.config",
    "T5Pretrainer": "keras_prompt.pretraining.model",
    "check_corpus_text": "keras_prompt.pretraining.corpus",
    "count_parameters": "keras_prompt.models.geometries",
    "find_corpus_files": "keras_prompt.pretraining.corpus",
    "heldout_dataset": "keras_prompt.pretraining.data",
    "load_vocabulary": "keras_prompt.pretraining.corpus",
    "pack_examples": "keras_prompt.pretraining.objectives",
    "prefix_lm_examples": "keras_prompt.pretraining.objectives",
    "pretrain": "keras_prompt.pretraining.trainer",
    "read_checkpoint_state": "keras_prompt.pretraining.checkpoint",
    "restore_checkpoint": "keras_prompt.pretraining.checkpoint",
    "save_checkpoint": "keras_prompt.pretraining.checkpoint",
    "save_preset": "keras_prompt.pretraining.preset",
    "span_corruption_example": "keras_prompt.pretraining.objectives",
    "span_corruption_lengths": "keras_prompt.pretraining.objectives",
    "training_dataset": "keras_prompt.pretraining.data",
}

__all__ = sorted(_ATTRIBUTES)


def __getattr__(name: str):
    if name not in _ATTRIBUTES:
        raise AttributeError(
            f"module 'keras_prompt.pretraining' has no attribute {name!r}"
        )
    value = getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
