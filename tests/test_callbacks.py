"""Prompt-only backups and checkpoints; Keras' own BackupAndRestore alongside."""

import json

import keras
import keras_hub
import numpy as np
import pytest
from conftest import make_tiny_backbone

from keras_prompt import PromptAdafactor, PromptTunedT5, distribute
from keras_prompt.callbacks import (
    BACKUP_FILENAME,
    PromptBackup,
    PromptCheckpoint,
    load_prompt_state,
    save_prompt_state,
)
from keras_prompt.data import Example
from keras_prompt.training import train_prompt

EXAMPLES = [
    Example(
        f"sst2 sentence: review {i} was {'great' if i % 2 else 'awful'} "
        + "so " * (i % 5),
        "positive" if i % 2 else "negative",
        i % 2,
    )
    for i in range(24)
]


def _model(tokenizer, prompt_length=4, hidden_dim=16):
    preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=32, decoder_sequence_length=4
    )
    model = PromptTunedT5(
        make_tiny_backbone(hidden_dim=hidden_dim),
        preprocessor,
        prompt_length=prompt_length,
        prompt_initializer=keras.initializers.RandomUniform(-0.5, 0.5, seed=1),
    )
    model.compile(optimizer=PromptAdafactor(learning_rate=0.01))
    return model


def _train(model, steps, callbacks=(), steps_per_epoch=3):
    return train_prompt(
        model,
        "sst2",
        EXAMPLES,
        steps=steps,
        batch_size=4,
        max_input_length=32,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        verbose=0,
    )


class _Interrupted(Exception):
    pass


class _KillAtStep(keras.callbacks.Callback):
    """Stands in for a preemption: stops the process's training abruptly."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            raise _Interrupted


def test_backup_resumes_mid_epoch_exactly(tokenizer, tmp_path):
    reference = _model(tokenizer)
    history = _train(reference, steps=7)
    assert history.epoch == [0, 1, 2]  # epochs of 3, 3 and the last 1 step

    victim = _model(tokenizer)
    backup = PromptBackup(tmp_path / "backup", save_freq=2)
    with pytest.raises(_Interrupted):
        _train(victim, steps=7, callbacks=[backup, _KillAtStep(5)])
    # The last backup is from step 4: in the middle of the second epoch.
    resumed = _model(tokenizer)
    backup = PromptBackup(tmp_path / "backup", save_freq=2)
    history = _train(resumed, steps=7, callbacks=[backup])
    assert backup.restored_meta["step"] == 4
    assert int(resumed.optimizer.iterations.numpy()) == 7
    assert history.epoch == [1, 2]
    np.testing.assert_allclose(
        resumed.get_prompt(), reference.get_prompt(), rtol=1e-6, atol=1e-7
    )

    # Prompt-only: KBs, against the frozen backbone's MBs.
    backup_bytes = (tmp_path / "backup" / BACKUP_FILENAME).stat().st_size
    backbone_bytes = sum(v.numpy().nbytes for v in resumed.backbone.weights)
    assert backup_bytes < 32_000 and backbone_bytes > 2_000_000
    assert not list((tmp_path / "backup").glob("*.tmp"))

    # A finished run's backup resumes to "nothing left to do" (into any model
    # of this geometry: the interrupted one is at step 5 of its own run).
    history = _train(victim, steps=7, callbacks=[PromptBackup(tmp_path / "backup")])
    assert history.history == {} and int(victim.optimizer.iterations.numpy()) == 7
    np.testing.assert_array_equal(victim.get_prompt(), resumed.get_prompt())


def test_backup_from_another_geometry_is_refused_naming_both_shapes(
    tokenizer, tmp_path
):
    save_prompt_state(_model(tokenizer, prompt_length=4), tmp_path / BACKUP_FILENAME)
    longer = _model(tokenizer, prompt_length=6)
    with pytest.raises(ValueError, match=r"\(4, 16\).*\(6, 16\)"):
        PromptBackup(tmp_path).restore(longer)
    narrower = _model(tokenizer, hidden_dim=8)
    before = narrower.get_prompt()
    with pytest.raises(ValueError, match=r"\(4, 16\).*\(4, 8\)"):
        _train(narrower, steps=1, callbacks=[PromptBackup(tmp_path)])
    np.testing.assert_array_equal(narrower.get_prompt(), before)  # untouched


def test_unreadable_state_file_is_a_clear_error(tokenizer, tmp_path):
    model = _model(tokenizer)
    path = save_prompt_state(model, tmp_path / "state.npz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="not a readable keras-prompt state"):
        load_prompt_state(model, path)


def test_prompt_checkpoint_keeps_last_and_best(tokenizer, tmp_path):
    model = _model(tokenizer)
    checkpoint = PromptCheckpoint(tmp_path, metadata={"task": "sst2"})
    history = _train(model, steps=6, callbacks=[checkpoint], steps_per_epoch=2)
    losses = history.history["loss"]
    best = json.loads((tmp_path / "best.json").read_text())
    last = json.loads((tmp_path / "last.json").read_text())
    assert best["value"] == pytest.approx(min(losses))
    assert best["epoch"] == 1 + int(np.argmin(losses))
    assert last["epoch"] == 3 and last["value"] == pytest.approx(losses[-1])
    assert last["steps"] == 6 and last["task"] == "sst2"
    np.testing.assert_array_equal(np.load(tmp_path / "last.npy"), model.get_prompt())

    fresh = _model(tokenizer)
    fresh.load_prompt(tmp_path / "last.npy")
    np.testing.assert_array_equal(fresh.get_prompt(), model.get_prompt())
    meta = load_prompt_state(fresh, tmp_path / "last.state.npz")
    assert meta["step"] == 6 and int(fresh.optimizer.iterations.numpy()) == 6
    assert not list(tmp_path.glob("*.tmp"))

    # A restarted run keeps the best value it had, not the first it sees.
    restarted = PromptCheckpoint(tmp_path)
    restarted.set_model(fresh)
    restarted.on_train_begin()
    assert restarted.best == pytest.approx(min(losses))


def test_only_the_chief_writes(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setattr(distribute, "is_chief", lambda strategy=None: False)
    model = _model(tokenizer)
    backup = PromptBackup(tmp_path / "backup", save_freq=1)
    checkpoint = PromptCheckpoint(tmp_path / "checkpoints")
    for callback in (backup, checkpoint):
        callback.set_model(model)
        callback.on_train_begin()
        callback.on_epoch_begin(0)
        callback.on_train_batch_end(0, {"loss": 1.0})
        callback.on_epoch_end(0, {"loss": 1.0})
        callback.on_train_end()
    assert backup.save() is None
    assert not (tmp_path / "backup").exists()
    assert not (tmp_path / "checkpoints").exists()


def test_keras_backup_and_restore_works_but_saves_the_backbone(tokenizer, tmp_path):
    rng = np.random.default_rng(0)
    x = {
        "encoder_token_ids": rng.integers(1, 100, (16, 6)).astype("int32"),
        "encoder_padding_mask": np.ones((16, 6), "int32"),
        "decoder_token_ids": rng.integers(1, 100, (16, 3)).astype("int32"),
        "decoder_padding_mask": np.ones((16, 3), "int32"),
    }
    y = rng.integers(1, 100, (16, 3)).astype("int32")

    class InterruptAtEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise _Interrupted

    def fit(model, callbacks, epochs=4):
        return model.fit(
            x,
            y,
            batch_size=8,
            epochs=epochs,
            shuffle=False,
            verbose=0,
            callbacks=callbacks,
        )

    victim = _model(tokenizer)
    backup_dir = tmp_path / "keras_backup"
    with pytest.raises(_Interrupted):
        fit(
            victim,
            [
                keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False),
                InterruptAtEpoch(),
            ],
        )
    keras_bytes = (backup_dir / "latest.weights.h5").stat().st_size
    resumed = _model(tokenizer)
    history = fit(resumed, [keras.callbacks.BackupAndRestore(backup_dir)])
    assert len(history.history["loss"]) == 2  # epochs 2 and 3 only
    assert int(resumed.optimizer.iterations.numpy()) == 8
    # The uninterrupted run: the victim itself, going on for its last 2 epochs.
    fit(victim, [], epochs=2)
    np.testing.assert_allclose(
        resumed.get_prompt(), victim.get_prompt(), rtol=1e-6, atol=1e-7
    )
    # Keras backs up every frozen weight; the prompt-only state is ~1000x less.
    ours = save_prompt_state(resumed, tmp_path / "state.npz").stat().st_size
    assert keras_bytes > 2_000_000 and ours * 100 < keras_bytes
