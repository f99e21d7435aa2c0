"""Every use of keras' and keras-hub's internals, in one place, version-guarded.

keras-prompt needs a few things neither library offers publicly: keras-hub's
T5 layer classes (to subclass them), a recursive walk over a layer's
sublayers, some optimizer and trainer attributes, and three patches of keras
functions while a block runs. Each use is a function or constant below,
registered in `SHIMS` with the releases it was written for and tested on
(the two stacks of setup.cfg: keras 3.12 + keras-hub 0.25 beside TFX, keras
3.15 + keras-hub 0.32). Nothing else in keras-prompt imports `keras.src` or
`keras_hub.src` or touches a private attribute of theirs
(`scripts/module_stats.py` counts the imports).

A shim checks the installed version when it is used, not when this module is
imported, and raises `UnsupportedVersionError`, naming itself and the
versions it knows, on any other release: an internal that moved would
otherwise fail somewhere far from the cause, or silently do something
else. To try an untested release anyway, set
`KERAS_PROMPT_ALLOW_UNTESTED_VERSIONS=1`; the shims then run unchecked.

Example:

```python
from keras_prompt import compat
compat.check_versions()  # raises on an untested keras / keras-hub
len(list(compat.sublayers(layer)))  # every layer inside `layer`, itself included
```
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import keras
import keras_hub

#: Environment variable that turns the version checks off.
ALLOW_UNTESTED_ENV = "KERAS_PROMPT_ALLOW_UNTESTED_VERSIONS"


class UnsupportedVersionError(RuntimeError):
    """A shim met a keras / keras-hub release it was not written for."""


@dataclasses.dataclass(frozen=True)
class Shim:
    """One use of an internal: what it touches and the releases it knows.

    Attributes:
        package: `"keras"` or `"keras_hub"`.
        first, last: the oldest and newest `major.minor` it was tested on.
        touches: the internal it relies on.
    """

    package: str
    first: str
    last: str
    touches: str


_KERAS = ("keras", "3.12", "3.15")
_KERAS_HUB = ("keras_hub", "0.25", "0.32")

#: Every internal keras-prompt relies on, by shim name.
SHIMS: dict[str, Shim] = {
    "sublayers": Shim(*_KERAS, "keras.layers.Layer._flatten_layers"),
    "keep_class_name": Shim(
        *_KERAS, "weight files key layers held in lists by class __name__"
    ),
    "learning_rate_variable": Shim(*_KERAS, "Optimizer._learning_rate"),
    "adafactor_moments": Shim(
        *_KERAS, "Adafactor._r/_c/_v, Optimizer._get_variable_index"
    ),
    "set_initial_epoch": Shim(*_KERAS, "Model._initial_epoch (read by fit)"),
    "build_fit_state_from_spec": Shim(
        *_KERAS, "Model._maybe_symbolic_build, Trainer._symbolic_build"
    ),
    "scalar_logs_across_workers": Shim(
        *_KERAS, "keras.src.backend.tensorflow.trainer.reduce_per_replica"
    ),
    "core_tf_slice_update": Shim(
        *_KERAS, "keras.src.backend.tensorflow.core.dynamic_update_slice"
    ),
    "t5_layer_classes": Shim(
        *_KERAS_HUB,
        "keras_hub.src.models.t5: T5LayerNorm, T5MultiHeadAttention",
    ),
}


def _minor(version: str) -> tuple[int, int]:
    numbers = re.findall(r"\d+", version)[:2]
    return (int(numbers[0]), int(numbers[1]) if len(numbers) > 1 else 0)


def _installed(package: str) -> str:
    return keras.__version__ if package == "keras" else keras_hub.__version__


def require(name: str) -> None:
    """Raises `UnsupportedVersionError` unless shim `name` knows this release."""
    shim = SHIMS[name]
    version = _installed(shim.package)
    if os.environ.get(ALLOW_UNTESTED_ENV) == "1":
        return
    if not _minor(shim.first) <= _minor(version) <= _minor(shim.last):
        raise UnsupportedVersionError(
            f"keras-prompt's {name!r} shim relies on {shim.touches}, written for "
            f"{shim.package} {shim.first} to {shim.last}; this is {shim.package} "
            f"{version}. Install a tested release, or set {ALLOW_UNTESTED_ENV}=1 "
            "to try this one (see keras_prompt/compat.py)."
        )


def check_versions() -> None:
    """Runs every shim's version check (what the CI stacks assert)."""
    for name in SHIMS:
        require(name)


# ----------------------------------------------------------------------
# Layers.
# ----------------------------------------------------------------------
def sublayers(layer: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """`layer` and every layer inside it, recursively (keras has no public walk)."""
    require("sublayers")
    return layer._flatten_layers(include_self=True, recursive=True)


def keep_class_name(new_class: type, old_class: type) -> None:
    """Gives `new_class` the `__name__` of `old_class`.

    Keras' weight files key layers held in lists (a functional backbone's
    `layers`, where keras-hub's final encoder/decoder norms live) by their
    class name. A drop-in subclass that keeps the name keeps those keys, so
    weights saved with and without it load into each other.
    """
    require("keep_class_name")
    new_class.__name__ = old_class.__name__


def t5_layer_classes() -> tuple[type, type]:
    """keras-hub's `(T5LayerNorm, T5MultiHeadAttention)` classes."""
    require("t5_layer_classes")
    from keras_hub.src.models.t5.t5_layer_norm import T5LayerNorm
    from keras_hub.src.models.t5.t5_multi_head_attention import (
        T5MultiHeadAttention,
    )

    return T5LayerNorm, T5MultiHeadAttention


def t5_layers_have_cache() -> bool:
    """Whether keras-hub's T5 layers take key/value caches (keras-hub >= 0.32).

    keras-hub 0.32 added the caches and `T5Seq2SeqLM` together; before it,
    `keras_prompt.models.t5_seq2seq_lm` backports the task model.
    """
    import inspect

    attention = t5_layer_classes()[1]
    return "cache_update_index" in inspect.signature(attention.call).parameters


# ----------------------------------------------------------------------
# Optimizers and training loops.
# ----------------------------------------------------------------------
def learning_rate_variable(optimizer) -> Any:
    """The optimizer's learning-rate variable (or schedule, or `None`)."""
    require("learning_rate_variable")
    return getattr(optimizer, "_learning_rate", None)


def adafactor_moments(optimizer, variable) -> tuple[Any, Any, Any]:
    """`(row, column, full)` second-moment slots of `variable` in a keras Adafactor."""
    require("adafactor_moments")
    index = optimizer._get_variable_index(variable)
    return optimizer._r[index], optimizer._c[index], optimizer._v[index]


def set_initial_epoch(model, epoch: int) -> None:
    """Makes the next `fit` start at `epoch`, as BackupAndRestore does."""
    require("set_initial_epoch")
    model._initial_epoch = int(epoch)


@contextlib.contextmanager
def build_fit_state_from_spec(model, element_spec) -> Iterator[None]:
    """While the block runs, `fit` builds its loss/metric state from `element_spec`.

    Keras' TensorFlow `fit` (`_maybe_symbolic_build`), for a model made under
    a strategy scope, pulls one batch from a throw-away iterator and averages
    it across replicas only to learn its shapes. That fails on boolean
    tensors such as padding masks (`AddN` has no bool kernel) and advances
    the shuffle seeds of a `reshuffle_each_iteration` dataset by an amount
    that depends on prefetch timing, so replicas, workers and resumed runs
    would not see a reproducible order. The dataset's `element_spec` carries
    the same shapes and dtypes. A model made outside any strategy scope
    builds at trace time instead, and is left alone.
    """
    if getattr(model, "_distribute_strategy", None) is None:
        yield
        return
    require("build_fit_state_from_spec")
    build = model._symbolic_build

    def build_from_spec(iterator=None, data_batch=None):
        with model.distribute_strategy.scope():
            build(data_batch=element_spec)

    model._maybe_symbolic_build = build_from_spec
    try:
        yield
    finally:
        del model._maybe_symbolic_build


@contextlib.contextmanager
def scalar_logs_across_workers(is_scalar: Callable[[Any], bool], reduce_scalar):
    """While the block runs, keras' TF trainer reduces scalar logs with `reduce_scalar`.

    Under a multi-worker `MultiWorkerMirroredStrategy`, keras' TF trainer
    reduces each replica's logs with `strategy.reduce("MEAN", v, axis=0)`,
    which fails for the scalar loss and metrics ("Invalid reduction dimension
    0 for input with 0 dimensions";
    https://github.com/tensorflow/tensorflow/issues/72388). Values for which
    `is_scalar(value)` holds go to `reduce_scalar(value, strategy)` instead;
    everything else to keras' own function.
    """
    require("scalar_logs_across_workers")
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean"):
            return original(values, strategy, reduction)

        def reduce(value):
            if is_scalar(value):
                return reduce_scalar(value, strategy)
            return original(value, strategy, reduction)

        import tensorflow as tf

        return tf.nest.map_structure(reduce, values)

    tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = original


@contextlib.contextmanager
def core_tf_slice_update(dynamic_update_slice: Callable) -> Iterator[None]:
    """While the block runs, `ops.slice_update` traces to `dynamic_update_slice`.

    keras' TensorFlow backend implements `ops.slice_update` (used by
    keras-hub's attention caches) with `XlaDynamicUpdateSlice`, a tf2xla op
    outside core TF's kernel set, which the stock model server lacks. The
    serving export swaps in a core-TF equivalent while it traces.
    """
    require("core_tf_slice_update")
    from keras.src.backend.tensorflow import core as keras_tf_core

    original = keras_tf_core.dynamic_update_slice
    keras_tf_core.dynamic_update_slice = dynamic_update_slice
    try:
        yield
    finally:
        keras_tf_core.dynamic_update_slice = original


__all__ = [
    "ALLOW_UNTESTED_ENV",
    "SHIMS",
    "Shim",
    "UnsupportedVersionError",
    "adafactor_moments",
    "build_fit_state_from_spec",
    "check_versions",
    "core_tf_slice_update",
    "keep_class_name",
    "learning_rate_variable",
    "require",
    "scalar_logs_across_workers",
    "set_initial_epoch",
    "sublayers",
    "t5_layer_classes",
    "t5_layers_have_cache",
]
