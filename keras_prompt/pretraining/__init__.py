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

from keras_prompt.models.geometries import count_parameters
from keras_prompt.pretraining.checkpoint import (
    CheckpointMismatchError,
    read_checkpoint_state,
    restore_checkpoint,
    save_checkpoint,
)
from keras_prompt.pretraining.corpus import (
    CorpusError,
    check_corpus_text,
    find_corpus_files,
    load_vocabulary,
)
from keras_prompt.pretraining.data import heldout_dataset, training_dataset
from keras_prompt.pretraining.model import T5Pretrainer
from keras_prompt.pretraining.objectives import (
    pack_examples,
    prefix_lm_examples,
    span_corruption_example,
    span_corruption_lengths,
)
from keras_prompt.pretraining.preset import save_preset
from keras_prompt.pretraining.trainer import PretrainConfig, pretrain

__all__ = [
    "CheckpointMismatchError",
    "CorpusError",
    "PretrainConfig",
    "T5Pretrainer",
    "check_corpus_text",
    "count_parameters",
    "find_corpus_files",
    "heldout_dataset",
    "pack_examples",
    "prefix_lm_examples",
    "load_vocabulary",
    "pretrain",
    "read_checkpoint_state",
    "restore_checkpoint",
    "save_checkpoint",
    "save_preset",
    "span_corruption_example",
    "span_corruption_lengths",
    "training_dataset",
]
