"""The one switch that puts speed kernels into (or out of) a keras-hub T5 backbone.

A speed kernel is a subclass of a keras-hub / Keras layer that computes the
same thing faster on the TensorFlow backend. Switching sets the `__class__`
of the backbone's existing layer objects, so weights, configs, seed
generators and weight files stay keras-hub's; rebuilding a backbone from its
config gives keras-hub's layers again.

* `"attention"`: self-attention becomes `FusedSelfAttention`, decoder
  cross-attention `ShortQueryCrossAttention`. Results change by float
  rounding only; cached decoding is keras-hub's.
* `"layer_norm"`: `T5LayerNorm` becomes `FastT5LayerNorm`. The forward pass
  is bit-identical, the gradient equal up to rounding.
* `"dropout"`: `keras.layers.Dropout` becomes `FastDropout`. This one changes
  the statistics: the elements of one call share an 8-bit threshold (the
  marginal rate is exact; see `dropout.py`).

Defaults (`"auto"`): all three on the TensorFlow backend when TensorFlow
sees no GPU or TPU, the CPU setting where they were measured to speed up
training (docs/benchmarks.md, "Speed kernels"); none elsewhere, where nothing
was measured, so keras-hub's layers and Keras' dropout run unchanged. Pass
`True` for all of them anywhere, `False` for none, or a list of names.

Example:

```python
import keras_hub
from keras_prompt.layers.speed_kernels import set_speed_kernels
backbone = keras_hub.models.T5Backbone(
    vocabulary_size=100, num_layers=1, num_heads=2, hidden_dim=8,
    intermediate_dim=16, dropout=0.1,
)
set_speed_kernels(backbone, ["layer_norm"])  # {"layer_norm": 3, ...}
set_speed_kernels(backbone, False)           # keras-hub's layers back
```
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import keras

from keras_prompt import compat
from keras_prompt.layers.speed_kernels.attention import (
    FusedSelfAttention,
    ShortQueryCrossAttention,
    T5MultiHeadAttention,
)
from keras_prompt.layers.speed_kernels.dropout import FastDropout
from keras_prompt.layers.speed_kernels.layer_norm import FastT5LayerNorm, T5LayerNorm

#: Every speed kernel, by name.
KERNELS: tuple[str, ...] = ("attention", "layer_norm", "dropout")

SpeedKernels = bool | str | Sequence[str] | None


def default_speed_kernels() -> tuple[str, ...]:
    """What `"auto"` means here: every kernel on a CPU-only TensorFlow, else none."""
    if keras.config.backend() != "tensorflow":
        return ()
    import tensorflow as tf

    devices = tf.config.list_logical_devices()
    if any(device.device_type in ("GPU", "TPU") for device in devices):
        return ()
    return KERNELS


def resolve_speed_kernels(value: SpeedKernels) -> tuple[str, ...]:
    """`"auto"`, `True`, `False`/`None` or kernel names -> the kernel names."""
    if value is None or value is False:
        return ()
    if value is True:
        return KERNELS
    if isinstance(value, str):
        if value == "auto":
            return default_speed_kernels()
        value = [value]
    names = tuple(value)
    unknown = sorted(set(names) - set(KERNELS))
    if unknown:
        raise ValueError(
            f"Unknown speed kernel(s) {unknown}; use 'auto', True, False or names "
            f"from {list(KERNELS)}."
        )
    return tuple(name for name in KERNELS if name in names)


def _roles(backbone) -> Iterator[tuple[keras.layers.Layer, str, type, type]]:
    """`(layer, kernel, keras-hub class, fast class)` for every swappable layer."""
    attention = compat.t5_layers_have_cache()
    for layer in compat.sublayers(backbone):
        if isinstance(layer, keras.layers.Dropout):
            yield layer, "dropout", keras.layers.Dropout, FastDropout
        elif isinstance(layer, T5LayerNorm):
            yield layer, "layer_norm", T5LayerNorm, FastT5LayerNorm
        elif attention and hasattr(layer, "self_attention"):
            # A T5 transformer layer: which attention is which is known here.
            yield (
                layer.self_attention,
                "attention",
                T5MultiHeadAttention,
                (FusedSelfAttention),
            )
            if getattr(layer, "cross_attention", None) is not None:
                yield (
                    layer.cross_attention,
                    "attention",
                    T5MultiHeadAttention,
                    (ShortQueryCrossAttention),
                )


def set_speed_kernels(backbone, kernels: SpeedKernels = "auto") -> dict[str, int]:
    """Puts exactly `kernels` into `backbone`; other layers get keras-hub's class.

    Only layers of exactly the keras-hub (or fast) class change, so layers a
    user subclassed are left alone. Does nothing on other backends (the
    kernels use TensorFlow ops). Returns how many layers each kernel switched
    to its fast class in this call.
    """
    wanted = resolve_speed_kernels(kernels)
    switched = dict.fromkeys(KERNELS, 0)
    if keras.config.backend() != "tensorflow":
        return switched
    for layer, kernel, original, fast in _roles(backbone):
        if kernel in wanted and type(layer) is original:
            layer.__class__ = fast
            switched[kernel] += 1
        elif kernel not in wanted and type(layer) is fast:
            layer.__class__ = original
    return switched


def active_speed_kernels(backbone) -> tuple[str, ...]:
    """The kernels at work in `backbone` (some of its layers switched)."""
    if keras.config.backend() != "tensorflow":
        return ()
    roles = _roles(backbone)
    active = {kernel for layer, kernel, _, fast in roles if type(layer) is fast}
    return tuple(name for name in KERNELS if name in active)
