"""Speed kernels for keras-hub's T5 layers, behind one switch (see `switch`).

* `attention.py`: fused-QKV self-attention and reassociated short-query
  cross-attention (same weights and results);
* `layer_norm.py`: T5's RMS norm with a closed-form, one-branch gradient;
* `dropout.py`: dropout masks from 8-bit Philox uniforms;
* `switch.py`: `set_speed_kernels(backbone, kernels)`, the one place they
  are put in (and taken out), and the `"auto"` default.

`PromptTunedT5(speed_kernels=...)` calls the switch.
"""

from keras_prompt.layers.speed_kernels.switch import (
    KERNELS,
    active_speed_kernels,
    default_speed_kernels,
    resolve_speed_kernels,
    set_speed_kernels,
)

__all__ = [
    "KERNELS",
    "active_speed_kernels",
    "default_speed_kernels",
    "resolve_speed_kernels",
    "set_speed_kernels",
]
