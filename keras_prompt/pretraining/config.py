"""`PretrainConfig`: the settings of one `lm-adapt` run.

Kept free of TensorFlow imports, so the command line takes its defaults from
here and checks its arguments before anything heavy is loaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

OPTIMIZERS = ("adamw", "adafactor")
PRESET_WEIGHT_DTYPES = ("float32", "float16", "bfloat16")


@dataclasses.dataclass
class PretrainConfig:
    """Settings of one pretraining run (also recorded in checkpoints and cards).

    Attributes:
        corpus: text files and/or directories (see
            :func:`~keras_prompt.pretraining.corpus.find_corpus_files`).
        out: run directory (checkpoint, metrics, preset).
        vocab: SentencePiece model (T5's ``spiece.model``).
        geometry: named geometry to build from scratch (``model`` unset).
        model: keras-hub preset to continue from (``geometry`` unset).
        steps: total optimizer steps, both objectives together.
        span_corruption_steps: the first steps use T5's span corruption (for
            from-scratch pretraining); the rest use LM adaptation.
        sequence_length: encoder (and LM-adaptation decoder) row length.
        learning_rate, warmup_steps, weight_decay, clipnorm: peak learning
            rate, linear warmup, then cosine decay to 10% over ``steps``.
        optimizer: ``"adafactor"`` (T5's; the default, because with AdamW
            the encoder of a small T5 stopped depending on its input, see
            docs/pretraining.md) or ``"adamw"`` (with ``weight_decay`` and
            ``clipnorm``).
        dropout: dropout while pretraining (T5 1.1 used none); ``None``
            keeps the preset's.
        dtype: dtype policy, e.g. ``"mixed_bfloat16"``; ``None`` = global.
        eval_every: steps between held-out evaluations (and checkpoints).
        eval_batches: held-out batches per evaluation.
        heldout_fraction: share of corpus lines (by hash) held out.
        min_chars: lines shorter than this (stripped) are skipped.
        checkpoint_seconds: also checkpoint at least this often.
        max_minutes: wall-clock budget of this invocation; on reaching it the
            run checkpoints, writes the preset and stops (resumable).
        seed: data order and split points.
        preset_weights_dtype: storage dtype of the preset's weights
            (``"float16"`` halves the file; weights load into float32).
        preset_dropout: dropout recorded in the preset (used by later
            prompt tuning; 0 by default: see docs/results.md, "Backbone dropout").
        resume_from: a checkpoint directory to resume from; default
            ``out/checkpoint`` when it exists.
        command: the command line, recorded in the model card.
        supervised_tasks: task names (``keras_prompt.data``) whose labelled
            ``train`` split is mixed into LM adaptation, as T5 1.0 mixed
            supervised tasks into pretraining; the model card lists them.
            The tasks' held-out validation rows are never used.
        supervised_files: text-to-text TSV files (``inputs<TAB>targets``, one
            pair per line, no header) mixed in like ``supervised_tasks``, e.g.
            word-sentiment pairs written by
            ``scripts/word_sentiment_pairs.py``.
        supervised_rate: share of LM-adaptation examples drawn from those
            tasks and files (examples-proportional across them).
        data_dir: where the tasks' files are (``keras_prompt.data``).
    """

    corpus: Sequence[str]
    out: str
    vocab: str
    geometry: str | None = None
    model: str | None = None
    steps: int = 1000
    span_corruption_steps: int = 0
    batch_size: int = 32
    sequence_length: int = 128
    learning_rate: float = 1e-2
    optimizer: str = "adafactor"
    warmup_steps: int = 200
    weight_decay: float = 0.01
    clipnorm: float = 1.0
    dropout: float | None = 0.0
    dtype: str | None = None
    eval_every: int = 200
    eval_batches: int = 16
    heldout_fraction: float = 0.005
    min_chars: int = 20
    checkpoint_seconds: float = 300.0
    max_minutes: float | None = None
    seed: int = 0
    preset_weights_dtype: str = "float16"
    preset_dropout: float = 0.0
    resume_from: str | None = None
    command: str | None = None
    supervised_tasks: Sequence[str] = ()
    supervised_files: Sequence[str] = ()
    supervised_rate: float = 0.0
    data_dir: str | None = None

    def validate(self) -> None:
        """Rejects inconsistent settings before any work is done."""
        if (self.geometry is None) == (self.model is None):
            raise ValueError(
                "Give exactly one of `geometry` (train from scratch) or `model` "
                "(a keras-hub preset to continue from)."
            )
        if self.geometry is not None:
            from keras_prompt.models.geometries import geometry_config

            geometry_config(self.geometry)
        for name in ("steps", "batch_size", "eval_every", "eval_batches"):
            value = getattr(self, name)
            minimum = 0 if name == "steps" else 1
            if not isinstance(value, int) or value < minimum:
                raise ValueError(
                    f"`{name}` must be an integer >= {minimum}; got {value!r}."
                )
        if not 0 <= self.span_corruption_steps <= self.steps:
            raise ValueError(
                f"`span_corruption_steps` ({self.span_corruption_steps}) must be "
                f"between 0 and `steps` ({self.steps})."
            )
        if self.sequence_length < 8:
            raise ValueError(
                f"`sequence_length` must be >= 8; got {self.sequence_length}."
            )
        if not 0 < self.heldout_fraction < 1:
            raise ValueError(
                f"`heldout_fraction` must be in (0, 1); got {self.heldout_fraction}."
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"`optimizer` must be 'adamw' or 'adafactor'; got {self.optimizer!r}."
            )
        if not 0 <= self.supervised_rate < 1:
            raise ValueError(
                f"`supervised_rate` must be in [0, 1); got {self.supervised_rate}."
            )
        if bool(self.supervised_tasks or self.supervised_files) != (
            self.supervised_rate > 0
        ):
            raise ValueError(
                "Give both `supervised_tasks`/`supervised_files` and a "
                "`supervised_rate` > 0 (or neither); got tasks "
                f"{list(self.supervised_tasks)}, files "
                f"{list(self.supervised_files)} and rate {self.supervised_rate}."
            )
        if self.preset_weights_dtype not in PRESET_WEIGHT_DTYPES:
            raise ValueError(
                "`preset_weights_dtype` must be float32, float16 or bfloat16; got "
                f"{self.preset_weights_dtype!r}."
            )
