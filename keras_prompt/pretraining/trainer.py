"""`pretrain()`: LM adaptation (and optional span corruption) with `model.fit`.

One run writes, under ``out``:

* ``checkpoint/``: the latest state (``model.weights.h5``, ``optimizer.npz``,
  ``state.json`` with the step and the backbone config), replaced atomically,
  written at every evaluation, every ``checkpoint_seconds`` and when the run
  is interrupted (SIGINT/SIGTERM) or stops at its time budget. Running the
  same command again resumes from it at the exact step.
* ``metrics.jsonl``: one line per evaluation (step, training loss, held-out
  loss and perplexity, corpus tokens seen, tokens/s).
* ``preset/``: a keras-hub preset (``config.json``, ``model.weights.h5``,
  ``tokenizer.json``, ``assets/tokenizer/vocabulary.spm``, ``MODEL_CARD.md``),
  loadable by ``keras_hub.models.T5Backbone.from_preset`` and
  ``keras_prompt.PromptTunedT5.from_preset``.

Training is a plain ``model.fit`` on a ``tf.data`` pipeline, so it runs under
any ``tf.distribute`` strategy in scope and under any dtype policy
(``mixed_bfloat16``; docs/pretraining.md compares it with float32).

Seeding: this module never calls ``keras.utils.set_random_seed`` (it would
destroy the SentencePiece resources of tokenizers that already exist in the
process); the CLI seeds before anything else. ``seed`` here fixes the data
order and split points.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import keras_hub

from keras_prompt import compat
from keras_prompt import health as backbone_health
from keras_prompt.models.geometries import geometry_config, initialize_embeddings
from keras_prompt.models.identity import backbone_architecture as _architecture
from keras_prompt.pretraining import data as pretrain_data
from keras_prompt.pretraining.checkpoint import (  # noqa: F401  (re-exported)
    CheckpointMismatchError,
    find_checkpoint,
    read_checkpoint_state,
    restore_checkpoint,
    save_checkpoint,
)
from keras_prompt.pretraining.config import PretrainConfig
from keras_prompt.pretraining.corpus import (
    check_corpus_text,
    find_corpus_files,
    load_vocabulary,
    read_text_pairs,
)
from keras_prompt.pretraining.model import T5Pretrainer
from keras_prompt.pretraining.objectives import FIRST_SENTINEL_ID
from keras_prompt.pretraining.preset import save_preset
from keras_prompt.steps import optimizer_step

CHECKPOINT_DIR = "checkpoint"
PRESET_DIR = "preset"
METRICS_FILE = "metrics.jsonl"


# ---------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------


class _Interrupted(Exception):
    """Raised from a signal handler to stop training between steps."""


class _RunMonitor(keras.callbacks.Callback):
    """Evaluation log, periodic/interrupt checkpoints and the time budget."""

    def __init__(self, run: _Run):
        super().__init__()
        self.run = run

    def on_train_batch_end(self, batch, logs=None):
        run = self.run
        if run.deadline is not None and time.monotonic() >= run.deadline:
            run.budget_reached = True
            self.model.stop_training = True
        elif time.monotonic() - run.last_save >= run.config.checkpoint_seconds:
            run.checkpoint()

    def on_epoch_end(self, epoch, logs=None):
        self.run.log_evaluation(logs or {})
        self.run.checkpoint()


class _Run:
    """Mutable state of one invocation: step, time accounting, checkpoints, log.

    The step is the optimizer's ``iterations`` (restored with the optimizer
    state), so everything derived from it (stage, tokens seen, the learning
    rate schedule) survives a resume exactly.
    """

    def __init__(self, config: PretrainConfig):
        self.config = config
        self.out = Path(config.out)
        self.started = time.monotonic()
        self.deadline = (
            None
            if config.max_minutes is None
            else self.started + 60 * config.max_minutes
        )
        self.budget_reached = False
        self.last_save = time.monotonic()
        self.model: T5Pretrainer | None = None
        self.stage = "lm_adaptation"
        self.tokens_at_start = 0
        self.train_seconds_at_start = 0.0
        self.train_seconds = 0.0
        self.fit_started: float | None = None
        self.metrics_path = self.out / METRICS_FILE
        # Held-out LM-adaptation and span-corruption batches (set by pretrain).
        self.eval_ds = None
        self.span_eval_ds = None
        # Labelled (inputs, targets) mixed into LM adaptation, if any.
        self.supervised: tuple[list[str], list[str]] | None = None
        # Packed LM-adaptation rows vary in density; measured on held-out rows.
        self.lm_tokens_per_row = pretrain_data.corpus_tokens_per_row(
            "lm_adaptation", config.sequence_length
        )

    # -- state ---------------------------------------------------------
    @property
    def step(self) -> int:
        return optimizer_step(self.model)

    def _tokens_now(self) -> int:
        c = self.config
        sc_steps = min(self.step, c.span_corruption_steps)
        lm_steps = self.step - sc_steps
        sc_per_row = pretrain_data.corpus_tokens_per_row(
            "span_corruption", c.sequence_length
        )
        return round(
            c.batch_size * (sc_steps * sc_per_row + lm_steps * self.lm_tokens_per_row)
        )

    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "tokens_seen": self._tokens_now(),
            "train_seconds": round(self.train_seconds + self._elapsed_fit(), 1),
            "config": dataclasses.asdict(self.config),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    def _elapsed_fit(self) -> float:
        return 0.0 if self.fit_started is None else time.monotonic() - self.fit_started

    def checkpoint(self) -> None:
        save_checkpoint(self.out / CHECKPOINT_DIR, self.model, self.state())
        self.last_save = time.monotonic()

    def health(self) -> dict[str, Any]:
        """Embedding collapse, encoder use and the span-corruption loss."""
        record = {
            "embedding_collapse": backbone_health.embedding_collapse(
                self.model.backbone
            )
        }
        use = backbone_health.encoder_use(self.model, self.eval_ds)
        x = next(iter(self.eval_ds))[0]
        record["encoder_similarity"] = backbone_health.encoder_similarity(
            self.model, {k: v.numpy() for k, v in x.items()}
        )
        record["shuffled_encoder_loss"] = use["shuffled_encoder_loss"]
        record["encoder_use"] = use["encoder_use"]
        record["heldout_span_corruption_loss"] = float(
            self.model.evaluate(self.span_eval_ds, verbose=0, return_dict=True)["loss"]
        )
        return {k: round(v, 4) for k, v in record.items()}

    def log_evaluation(self, logs: dict[str, Any]) -> dict[str, Any]:
        val_loss = logs.get("val_loss")
        elapsed = self.train_seconds + self._elapsed_fit()
        record = {
            "step": self.step,
            "stage": self.stage,
            "loss": None if logs.get("loss") is None else float(logs["loss"]),
            "heldout_loss": None if val_loss is None else float(val_loss),
            "heldout_perplexity": None
            if val_loss is None
            else float(math.exp(min(val_loss, 50))),
            "tokens_seen": self._tokens_now(),
            "train_seconds": round(elapsed, 1),
            # This invocation's corpus tokens per second of fitting.
            "tokens_per_second": round(
                (self._tokens_now() - self.tokens_at_start)
                / max(elapsed - self.train_seconds_at_start, 1e-9),
                1,
            ),
        }
        record.update(self.health())
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(
            f"[lm-adapt] step {record['step']} {record['stage']}: loss "
            f"{record['loss']}, held-out loss {record['heldout_loss']}, "
            f"perplexity {record['heldout_perplexity']}, span-corruption loss "
            f"{record['heldout_span_corruption_loss']}, encoder use "
            f"{record['encoder_use']}, encoder similarity "
            f"{record['encoder_similarity']}, embedding collapse "
            f"{record['embedding_collapse']}",
            flush=True,
        )
        return record


def _build_backbone(config: PretrainConfig) -> keras_hub.models.T5Backbone:
    if config.geometry is not None:
        arguments = geometry_config(
            config.geometry,
            dropout=0.0 if config.dropout is None else config.dropout,
            dtype=config.dtype,
        )
        return initialize_embeddings(keras_hub.models.T5Backbone(**arguments))
    backbone = keras_hub.models.T5Backbone.from_preset(config.model, dtype=config.dtype)
    if config.dropout is not None:
        for layer in compat.sublayers(backbone):
            if isinstance(layer, keras.layers.Dropout):
                layer.rate = config.dropout
    return backbone


def _supervised_examples(
    config: PretrainConfig,
) -> tuple[list[str], list[str]] | None:
    """The mixed-in labelled pairs: tasks' training examples (their validation
    rows held out) and the pairs of the TSV files."""
    if not (config.supervised_tasks or config.supervised_files):
        return None
    from keras_prompt.data import load_examples

    inputs, targets = [], []
    for name in config.supervised_tasks:
        examples = load_examples(name, "train", data_dir=config.data_dir)
        inputs += [e.inputs for e in examples]
        targets += [e.targets for e in examples]
    for path in config.supervised_files:
        pairs = read_text_pairs(path)
        inputs += [a for a, _ in pairs]
        targets += [b for _, b in pairs]
    return inputs, targets


def _optimizer(config: PretrainConfig) -> keras.optimizers.Optimizer:
    warmup = min(config.warmup_steps, max(config.steps - 1, 0))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else config.learning_rate,
        decay_steps=max(config.steps - warmup, 1),
        alpha=0.1,
        warmup_target=config.learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    if config.optimizer == "adafactor":
        # T5's optimizer: updates scaled by each weight's RMS (parameter
        # scaling), factored second moments, update clipping.
        return keras.optimizers.Adafactor(
            learning_rate=schedule,
            relative_step=False,
            clip_threshold=1.0,
        )
    return keras.optimizers.AdamW(
        learning_rate=schedule,
        weight_decay=config.weight_decay,
        beta_2=0.98,
        global_clipnorm=config.clipnorm,
    )


def _model_card(config: PretrainConfig, backbone, result: dict[str, Any]) -> str:
    geometry = config.geometry or f"from preset {config.model}"
    arch = _architecture(backbone)
    command = config.command or "(library call: keras_prompt.pretraining.pretrain)"
    return (
        f"# T5 pretrained by `keras-prompt lm-adapt` ({geometry})\n\n"
        f"- Parameters: {backbone.count_params():,}\n"
        f"- Architecture: `{json.dumps(arch, sort_keys=True)}`\n"
        f"- Corpus: {', '.join(map(str, config.corpus))}\n"
        f"- Objective: {config.span_corruption_steps} steps of span corruption, "
        f"then {config.steps - config.span_corruption_steps} steps of LM "
        "adaptation (prefix -> continuation)\n"
        f"- Labelled data seen: {_supervised_summary(config)}\n"
        f"- Steps completed: {result['step']} of {config.steps} (batch "
        f"{config.batch_size} x {config.sequence_length} tokens); corpus tokens "
        f"seen: {result['tokens_seen']:,}\n"
        f"- Final held-out loss / perplexity (LM adaptation): "
        f"{result.get('heldout_loss')} / {result.get('heldout_perplexity')}\n"
        f"- Held-out span-corruption loss: "
        f"{result.get('heldout_span_corruption_loss')}\n"
        f"- Health (keras_prompt.health): embedding collapse "
        f"{result.get('embedding_collapse')}, encoder use "
        f"{result.get('encoder_use')} nats/token (held-out loss with shuffled "
        f"encoder inputs {result.get('shuffled_encoder_loss')})\n"
        f"- Training dtype policy: {config.dtype or 'float32'}; weights stored as "
        f"{config.preset_weights_dtype}\n\n"
        f"Command:\n\n```\n{command}\n```\n"
    )


def _supervised_summary(config: PretrainConfig) -> str:
    if not (config.supervised_tasks or config.supervised_files):
        return "none (self-supervised objectives only)"
    sources = [
        f"the `train` split of {name} (keras_prompt.data; its held-out "
        "validation rows excluded)"
        for name in config.supervised_tasks
    ]
    sources += [f"the pairs in {path}" for path in config.supervised_files]
    return (
        f"{'; '.join(sources)}; together "
        f"{config.supervised_rate:.0%} of the LM-adaptation examples"
    )


def pretrain(config: PretrainConfig, *, verbose: int | str = 2) -> dict[str, Any]:
    """Runs (or resumes) a pretraining run and writes its preset.

    Returns:
        A summary: steps completed, corpus tokens seen, final held-out loss and
        perplexity, preset path, whether the time budget stopped the run.

    Raises:
        CorpusError: missing/empty corpus, no text after filtering, a vocabulary
            that is not SentencePiece, too little held-out text.
        CheckpointMismatchError: resuming a checkpoint of another geometry.
        ValueError: inconsistent settings.
    """
    config.validate()
    proto = load_vocabulary(config.vocab)
    files = find_corpus_files(config.corpus)
    check_corpus_text(
        files, min_chars=config.min_chars, heldout_fraction=config.heldout_fraction
    )
    out = Path(config.out)
    resume = Path(config.resume_from) if config.resume_from else None
    if resume is not None and find_checkpoint(resume) is None:
        raise FileNotFoundError(
            f"--resume-from {resume}: no checkpoint (state.json) there."
        )
    if resume is None:
        resume = find_checkpoint(out / CHECKPOINT_DIR)
    else:
        resume = find_checkpoint(resume)
    supervised = _supervised_examples(config)
    out.mkdir(parents=True, exist_ok=True)

    backbone = _build_backbone(config)
    if config.span_corruption_steps and backbone.vocabulary_size <= FIRST_SENTINEL_ID:
        raise ValueError(
            f"Span corruption uses sentinel ids up to {FIRST_SENTINEL_ID}, but the "
            f"backbone's vocabulary has {backbone.vocabulary_size} rows."
        )
    eval_ds, eval_tokens = pretrain_data.heldout_dataset(
        files,
        proto,
        sequence_length=config.sequence_length,
        batch_size=config.batch_size,
        num_batches=config.eval_batches,
        heldout_fraction=config.heldout_fraction,
        min_chars=config.min_chars,
    )
    span_eval_ds, _ = pretrain_data.heldout_dataset(
        files,
        proto,
        sequence_length=config.sequence_length,
        batch_size=config.batch_size,
        num_batches=config.eval_batches,
        heldout_fraction=config.heldout_fraction,
        min_chars=config.min_chars,
        objective="span_corruption",
    )
    model = T5Pretrainer(backbone)
    model.compile(optimizer=_optimizer(config))
    run = _Run(config)
    run.model = model
    run.eval_ds, run.span_eval_ds = eval_ds, span_eval_ds
    run.supervised = supervised
    run.lm_tokens_per_row = pretrain_data.packing_density(eval_ds)
    # Build the model's variables with one held-out batch.
    model(next(iter(eval_ds))[0])
    if resume is not None:
        state = restore_checkpoint(resume, model)
        run.train_seconds = float(state.get("train_seconds", 0.0))
        _truncate_metrics(run.metrics_path, run.step)
        print(f"[lm-adapt] resumed from {resume} at step {run.step}", flush=True)
    else:
        optimizer = model.optimizer
        optimizer.build(model.trainable_variables)
        run.metrics_path.unlink(missing_ok=True)
    run.tokens_at_start = run._tokens_now()
    run.train_seconds_at_start = run.train_seconds

    interrupted = False
    previous_handler = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        raise _Interrupted()

    if _in_main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)
    try:
        stages = [
            ("span_corruption", 0, config.span_corruption_steps),
            ("lm_adaptation", config.span_corruption_steps, config.steps),
        ]
        for stage, first, last in stages:
            if run.step >= last or run.budget_reached:
                continue
            run.stage = stage
            _fit_stage(
                run, stage, max(run.step, first), last, files, proto, eval_ds, verbose
            )
    except (KeyboardInterrupt, _Interrupted):
        interrupted = True
    finally:
        if _in_main_thread():
            signal.signal(signal.SIGTERM, previous_handler)
        if run.fit_started is not None:
            run.train_seconds += run._elapsed_fit()
            run.fit_started = None
    run.checkpoint()
    if interrupted:
        print(
            f"[lm-adapt] interrupted at step {run.step}; checkpoint saved to "
            f"{out / CHECKPOINT_DIR}; run the same command again to resume.",
            file=sys.stderr,
            flush=True,
        )
        raise KeyboardInterrupt
    final = model.evaluate(eval_ds, verbose=0, return_dict=True)
    result = {
        "step": run.step,
        "steps": config.steps,
        "tokens_seen": run._tokens_now(),
        "train_seconds": round(run.train_seconds, 1),
        "heldout_loss": round(float(final["loss"]), 4),
        "heldout_perplexity": round(math.exp(float(final["loss"])), 3),
        "heldout_target_tokens": eval_tokens,
        "budget_reached": run.budget_reached,
        **run.health(),
        "parameters": int(backbone.count_params()),
        "checkpoint": str(out / CHECKPOINT_DIR),
    }
    preset = save_preset(
        backbone,
        config.vocab,
        out / PRESET_DIR,
        weights_dtype=config.preset_weights_dtype,
        dropout=config.preset_dropout,
        model_card=_model_card(config, backbone, result),
    )
    result["preset"] = str(preset)
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _truncate_metrics(path: Path, step: int) -> None:
    """Drops log lines past the resumed step (written after the last checkpoint)."""
    if not path.is_file():
        return
    lines = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line)["step"] <= step
    ]
    path.write_text("".join(line + "\n" for line in lines))


def _fit_stage(
    run: _Run,
    stage: str,
    start: int,
    stop: int,
    files: Sequence[str],
    proto: bytes,
    eval_ds,
    verbose: int | str,
) -> None:
    """`model.fit` from global step ``start`` to ``stop`` for one objective.

    Keras epochs are evaluation intervals of ``eval_every`` steps aligned to
    multiples of it; a run resumed mid-interval first fits up to the next
    boundary. Each `fit` reads a fresh stream seeded by its start step, so a
    resumed run does not replay the batches it already trained on.
    """
    config = run.config
    every = config.eval_every
    monitor = _RunMonitor(run)
    step = start
    while step < stop and not run.budget_reached:
        if step % every:
            steps_per_epoch, epochs = min(every - step % every, stop - step), 1
        elif stop - step >= every:
            steps_per_epoch, epochs = every, (stop - step) // every
        else:
            steps_per_epoch, epochs = stop - step, 1
        dataset = pretrain_data.training_dataset(
            files,
            proto,
            objective=stage,
            sequence_length=config.sequence_length,
            batch_size=config.batch_size,
            seed=config.seed + 1_000_003 * step,
            heldout_fraction=config.heldout_fraction,
            min_chars=config.min_chars,
            supervised=run.supervised,
            supervised_rate=config.supervised_rate,
        )
        run.fit_started = time.monotonic()
        run.model.fit(
            dataset,
            steps_per_epoch=steps_per_epoch,
            epochs=epochs,
            validation_data=eval_ds,
            callbacks=[monitor],
            verbose=verbose,
        )
        run.train_seconds += run._elapsed_fit()
        run.fit_started = None
        step = run.step
