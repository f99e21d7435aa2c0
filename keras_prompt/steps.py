"""Step counting: the optimizer's step, read once, then followed batch by batch.

The training step is the optimizer's `iterations` counter, which checkpoints
and backups restore, so resumed runs keep counting where they stopped.
Reading it after every batch would force a host-device sync per step on
accelerators, so callbacks read it once when `fit` starts and follow the
batch indices `fit` reports (`StepCounter`).

Example:

```python
class EveryHundred(StepCounter):
    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        if self.step % 100 == 0:
            print("step", self.step)
```
"""

from __future__ import annotations

import keras


def optimizer_step(model) -> int:
    """The optimizer steps `model` has taken (0 without an optimizer)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return 0
    return int(keras.ops.convert_to_numpy(optimizer.iterations))


class StepCounter(keras.callbacks.Callback):
    """A callback that knows the optimizer step after every batch (`self.step`)."""

    def __init__(self):
        super().__init__()
        self.step = 0
        self._epoch_start_step = 0

    def on_train_begin(self, logs=None):
        self.step = optimizer_step(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start_step = self.step

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the index, within the epoch, of the step just run.
        self.step = self._epoch_start_step + batch + 1
