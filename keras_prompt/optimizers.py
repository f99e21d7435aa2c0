"""Adafactor configured the way the prompt-tuning paper trains prompts."""

from __future__ import annotations

import keras
from keras import ops

from keras_prompt import compat


def _rms(x):
    """Root mean square of `x`, as keras' Adafactor measures steps."""
    return ops.sqrt(ops.mean(ops.square(x)))


@keras.saving.register_keras_serializable(package="keras_prompt")
class PromptAdafactor(keras.optimizers.Adafactor):
    """Adafactor with a constant learning rate and no parameter scaling.

    Lester et al. (2021) train prompts with Adafactor at learning rate 0.3,
    second-moment decay exponent 0.8, update clipping 1.0, weight decay 1e-5
    and *parameter scaling off*. `keras.optimizers.Adafactor` always scales the
    step by the variable's RMS and caps it at `1/sqrt(step)`, which together
    shrink a 0.3 step on a ~0.3-RMS prompt below 0.01 after a hundred steps;
    this subclass makes both behaviours switchable and defaults them off.

    Args:
        learning_rate: float or schedule. Defaults to 0.3.
        multiply_by_parameter_scale: bool. Scale steps by the variable's RMS.
        relative_step: bool. Cap the learning rate at `1/sqrt(step)`.
        Other arguments are `keras.optimizers.Adafactor`'s.
    """

    def __init__(
        self,
        learning_rate=0.3,
        beta_2_decay: float = -0.8,
        epsilon_1: float = 1e-30,
        epsilon_2: float = 1e-3,
        clip_threshold: float = 1.0,
        relative_step: bool = False,
        multiply_by_parameter_scale: bool = False,
        weight_decay: float | None = 1e-5,
        name: str = "prompt_adafactor",
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate,
            beta_2_decay=beta_2_decay,
            epsilon_1=epsilon_1,
            epsilon_2=epsilon_2,
            clip_threshold=clip_threshold,
            relative_step=relative_step,
            weight_decay=weight_decay,
            name=name,
            **kwargs,
        )
        self.multiply_by_parameter_scale = multiply_by_parameter_scale

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        one = ops.cast(1.0, variable.dtype)
        local_step = ops.cast(self.iterations + 1, variable.dtype)
        if self.relative_step:
            lr = ops.minimum(lr, 1 / ops.sqrt(local_step))
        if self.multiply_by_parameter_scale:
            epsilon_2 = ops.cast(self.epsilon_2, variable.dtype)
            lr = ops.maximum(epsilon_2, _rms(variable)) * lr

        r, c, v = compat.adafactor_moments(self, variable)
        grad_square = ops.add(ops.square(gradient), self.epsilon_1)
        beta_2_t = ops.subtract(1, ops.power(local_step, self.beta_2_decay))

        if len(variable.shape) >= 2:
            # Factored second moment: row and column means instead of a full
            # matrix, which is what makes Adafactor's state small.
            self.assign(
                r,
                beta_2_t * r + (1 - beta_2_t) * ops.mean(grad_square, axis=-1),
            )
            self.assign(
                c,
                beta_2_t * c + (1 - beta_2_t) * ops.mean(grad_square, axis=-2),
            )
            row_factor = ops.expand_dims(r / ops.mean(r, axis=-1, keepdims=True), -1)
            # The factored estimate of E[g^2 + epsilon_1] is >= epsilon_1 by
            # definition, but the product of a tiny row factor and a tiny
            # column mean underflows to 0 in float32, and 0 / sqrt(0) is NaN
            # for an exactly-zero gradient entry (seen when model tuning
            # every weight: decoder attention kernels get such rows).
            epsilon_1 = ops.cast(self.epsilon_1, variable.dtype)
            self.assign(
                v, ops.maximum(row_factor * ops.expand_dims(c, -2), epsilon_1)
            )
        else:
            self.assign(v, beta_2_t * v + (1 - beta_2_t) * grad_square)

        update = gradient / ops.sqrt(v)
        update = update / ops.maximum(one, _rms(update) / self.clip_threshold)
        self.assign_sub(variable, lr * update)

    def get_config(self):
        config = super().get_config()
        config["multiply_by_parameter_scale"] = self.multiply_by_parameter_scale
        return config
