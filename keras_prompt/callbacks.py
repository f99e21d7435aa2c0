"""Prompt-only checkpoints and backups during `fit` (`keras_prompt.prompt_state` files).

* `PromptBackup`: fault tolerance. Saves every `save_freq` steps (or
  epoch); `keras_prompt.training.train_prompt` resumes from it at the exact
  step, mid-epoch included, replaying the same data order.
* `PromptCheckpoint`: the `last` and the `best` (by a monitored metric)
  prompt files, each with its optimizer state beside it.

Keras' own `keras.callbacks.BackupAndRestore` works with `PromptTunedT5` too,
but saves the whole model (frozen weights included) and resumes at epoch
granularity only.

In multi-worker training only the chief writes; the other workers hold the
same prompt (their steps are all-reduced) and write nothing.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

from keras_prompt import compat, distribute
from keras_prompt.prompt_state import (
    STATE_FORMAT_VERSION,
    STATE_KIND,
    check_state_compatible,
    load_prompt_state,
    read_prompt_state,
    save_prompt_state,
)
from keras_prompt.steps import StepCounter

BACKUP_FILENAME = "prompt_backup.npz"


# ----------------------------------------------------------------------
# Callbacks
# ----------------------------------------------------------------------
class _PromptOnlyStepCounter(StepCounter):
    """A `StepCounter` for callbacks that save only the prompt."""

    def set_model(self, model):
        tune = getattr(model, "tune", "prompt")
        if tune != "prompt":
            raise ValueError(
                f"{type(self).__name__} saves only the prompt, but this model has "
                f"tune={tune!r} (its backbone trains too), so a prompt-only "
                "backup could not restore it; use keras.callbacks.BackupAndRestore "
                "or ModelCheckpoint for model tuning."
            )
        super().set_model(model)


def _check_save_freq(save_freq) -> None:
    if save_freq != "epoch" and (
        not isinstance(save_freq, int) or isinstance(save_freq, bool) or save_freq < 1
    ):
        raise ValueError(
            f"`save_freq` must be 'epoch' or a positive number of steps; got "
            f"{save_freq!r}."
        )


class PromptBackup(_PromptOnlyStepCounter):
    """Backs up the training state (prompt-only) so a killed run can resume.

    Writes `backup_dir/prompt_backup.npz` (prompt, optimizer slots and step,
    dropout RNG states, completed epochs, the run configuration) every
    `save_freq` optimizer steps, at the end of every epoch, and when training
    ends. Each write replaces the previous one atomically.

    Resuming: `keras_prompt.training.train_prompt` calls `restore()` before
    it builds its dataset, then skips the batches already trained on and
    runs exactly the remaining steps (mid-epoch too), so an interrupted and
    resumed run ends at the same step, on the same data, as an uninterrupted
    one. With a plain `model.fit`, `on_train_begin` restores the state and
    the epoch counter like `keras.callbacks.BackupAndRestore`; fit then
    re-runs a partly done epoch from its start.

    A backup written for another prompt length or backbone is refused with
    both shapes named. Only the chief writes (see `distribute.is_chief`); in
    multi-worker training `backup_dir` must be storage all workers can read.

    Args:
        backup_dir: directory for the backup; created when needed.
        save_freq: `"epoch"`, or an integer: save whenever the optimizer step
            count is a multiple of it.
        run_config: JSON-serialisable settings that decide the data order
            (task, batch size, seed...); a backup made under different ones
            resumes with a warning, since its data position no longer means
            the same thing.
        delete_on_end: remove the backup once `fit` ends normally.
    """

    def __init__(
        self,
        backup_dir: str | os.PathLike,
        save_freq: int | str = "epoch",
        *,
        run_config: dict[str, Any] | None = None,
        delete_on_end: bool = False,
    ):
        super().__init__()
        if not backup_dir:
            raise ValueError("`backup_dir` is empty.")
        _check_save_freq(save_freq)
        self.backup_dir = Path(backup_dir)
        self.save_freq = save_freq
        self.run_config = dict(run_config or {})
        self.delete_on_end = delete_on_end
        self.restored_meta: dict[str, Any] | None = None
        #: Optimizer step at which the backed-up run began (0 for a fresh
        #: model), so `step - run_start_step` steps of it are done.
        self.run_start_step: int | None = None
        self._restored = False
        self._epochs_done = 0
        self._last_saved_step = -1

    @property
    def path(self) -> Path:
        return self.backup_dir / BACKUP_FILENAME

    def restore(self, model=None) -> dict[str, Any] | None:
        """Loads the backup into `model` if there is one; returns its metadata.

        Idempotent: later calls (and `on_train_begin`) do nothing.
        """
        if model is not None:
            self.set_model(model)
        if self._restored:
            return self.restored_meta
        self._restored = True
        if not self.path.exists():
            return None
        meta = load_prompt_state(self.model, self.path)
        saved_config = meta.get("run_config") or {}
        differing = sorted(
            key
            for key in set(saved_config) | set(self.run_config)
            if key in saved_config
            and key in self.run_config
            and saved_config[key] != self.run_config[key]
        )
        if differing:
            warnings.warn(
                f"Resuming {self.path} with different settings "
                + ", ".join(
                    f"{k}: {saved_config[k]!r} -> {self.run_config[k]!r}"
                    for k in differing
                )
                + "; the data order will not continue where it stopped.",
                stacklevel=2,
            )
        self._epochs_done = int(meta.get("epoch", 0))
        self._last_saved_step = int(meta["step"])
        self.run_start_step = int(meta.get("run_start_step", 0))
        self.restored_meta = meta
        return meta

    def save(self, **metadata) -> Path | None:
        """Writes the backup now (chief only); returns its path, or `None`."""
        if not distribute.is_chief(self.model.distribute_strategy):
            return None
        path = save_prompt_state(
            self.model,
            self.path,
            epoch=self._epochs_done,
            run_start_step=self.run_start_step or 0,
            run_config=self.run_config,
            **metadata,
        )
        self._last_saved_step = self.step
        return path

    def on_train_begin(self, logs=None):
        if not self._restored:
            meta = self.restore()
            if meta is not None and meta.get("epoch"):
                # As keras.callbacks.BackupAndRestore does, for plain `fit`.
                compat.set_initial_epoch(self.model, meta["epoch"])
        super().on_train_begin(logs)
        if self.run_start_step is None:
            self.run_start_step = self.step

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        if self.save_freq == "epoch":
            return
        step = self.step
        if step % self.save_freq == 0 and step != self._last_saved_step:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self._epochs_done = epoch + 1
        self.save()

    def on_train_end(self, logs=None):
        if self.delete_on_end:
            if distribute.is_chief(self.model.distribute_strategy):
                self.path.unlink(missing_ok=True)
        elif self.step != self._last_saved_step:
            self.save()


def _resolve_mode(monitor: str, mode: str) -> str:
    if mode in ("min", "max"):
        return mode
    if mode != "auto":
        raise ValueError(f"`mode` must be 'auto', 'min' or 'max'; got {mode!r}.")
    name = monitor.removeprefix("val_")
    if "loss" in name or "error" in name:
        return "min"
    if any(key in name for key in ("accuracy", "acc", "f1", "auc", "precision")):
        return "max"
    raise ValueError(
        f"Cannot tell whether {monitor!r} should go up or down; pass mode='min' "
        "or mode='max'."
    )


class PromptCheckpoint(_PromptOnlyStepCounter):
    """Keeps the last and the best prompt of a run as prompt files.

    In `directory` it writes `last.npy`/`last.json` and, whenever `monitor`
    improves, `best.npy`/`best.json`: ordinary prompt files (load them with
    `PromptTunedT5.load_prompt` or `keras-prompt eval --prompt`), whose JSON
    also records the step, epoch and monitored value. With
    `include_optimizer=True` (default) a `last.state.npz`/`best.state.npz`
    beside each holds the optimizer slots too (`load_prompt_state`), so
    training can continue from either. All writes are atomic and chief-only.

    The best value so far is read back from an existing `best.json`, so a
    restarted run does not overwrite a better prompt with a worse one.

    Args:
        directory: output folder.
        monitor: a `logs` key, e.g. `"loss"` or `"val_loss"`.
        mode: `"min"`, `"max"` or `"auto"` (from the name).
        save_freq: `"epoch"` or an integer number of steps (then the
            monitored value is the running mean of the current epoch).
        save_best, save_last: which of the two to keep.
        include_optimizer: also write the `.state.npz` files.
        metadata: extra JSON fields for every prompt file (task, verbalizers).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        monitor: str = "loss",
        mode: str = "auto",
        save_freq: int | str = "epoch",
        *,
        save_best: bool = True,
        save_last: bool = True,
        include_optimizer: bool = True,
        metadata: dict[str, Any] | None = None,
    ):
        super().__init__()
        _check_save_freq(save_freq)
        self.directory = Path(directory)
        self.monitor = monitor
        self.mode = _resolve_mode(monitor, mode)
        self.save_freq = save_freq
        self.save_best = save_best
        self.save_last = save_last
        self.include_optimizer = include_optimizer
        self.metadata = dict(metadata or {})
        self.best: float | None = None
        self._epoch = 0

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        best_json = self.directory / "best.json"
        if self.best is None and best_json.is_file():
            try:
                saved = json.loads(best_json.read_text("utf-8"))
            except (OSError, json.JSONDecodeError):
                saved = {}
            if saved.get("monitor") == self.monitor and saved.get("value") is not None:
                self.best = float(saved["value"])

    def _write(self, name: str, value: float | None) -> None:
        extra = {
            **self.metadata,
            "checkpoint": name,
            "epoch": self._epoch,
            "monitor": self.monitor,
            "value": value,
        }
        self.model.save_prompt(self.directory / name, **extra)
        if self.include_optimizer:
            save_prompt_state(self.model, self.directory / f"{name}.state.npz", **extra)

    def _checkpoint(self, logs) -> None:
        if not distribute.is_chief(self.model.distribute_strategy):
            return
        value = (logs or {}).get(self.monitor)
        value = None if value is None else float(value)
        if self.save_last:
            self._write("last", value)
        if self.save_best:
            if value is None:
                warnings.warn(
                    f"PromptCheckpoint: '{self.monitor}' is not in the logs "
                    f"({sorted(logs or {})}); no best prompt is kept.",
                    stacklevel=2,
                )
            elif math.isfinite(value) and self._improved(value):
                self.best = value
                self._write("best", value)

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        if self.save_freq != "epoch" and self.step % self.save_freq == 0:
            self._checkpoint(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._epoch = epoch + 1
        if self.save_freq == "epoch":
            self._checkpoint(logs)


__all__ = [
    "BACKUP_FILENAME",
    "STATE_FORMAT_VERSION",
    "STATE_KIND",
    "PromptBackup",
    "PromptCheckpoint",
    "check_state_compatible",
    "load_prompt_state",
    "read_prompt_state",
    "save_prompt_state",
]
