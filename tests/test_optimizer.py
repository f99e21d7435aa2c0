import keras
import numpy as np
import pytest

from keras_prompt import PromptAdafactor


def _step(optimizer, value, gradient):
    variable = keras.Variable(value)
    optimizer.apply_gradients([(keras.ops.convert_to_tensor(gradient), variable)])
    return keras.ops.convert_to_numpy(variable)


def test_constant_learning_rate_without_parameter_scaling():
    """With factored second moments and clipping, a first step is lr * sign-ish."""
    value = np.full((4, 6), 0.01, "float32")
    gradient = np.ones((4, 6), "float32")
    after = _step(
        PromptAdafactor(learning_rate=0.3, weight_decay=None), value, gradient
    )
    # A uniform gradient normalises to exactly 1 per entry: step = lr.
    np.testing.assert_allclose(value - after, 0.3, rtol=1e-4)
    # Keras' own Adafactor scales by RMS(variable)=0.01 -> a 1000x smaller step
    # (max(epsilon_2=1e-3, 0.01) * 0.3).
    keras_after = _step(keras.optimizers.Adafactor(learning_rate=0.3), value, gradient)
    np.testing.assert_allclose(value - keras_after, 0.003, rtol=1e-3)


def test_options_restore_keras_behaviour():
    value = np.full((4, 6), 0.01, "float32")
    gradient = np.ones((4, 6), "float32")
    ours = _step(
        PromptAdafactor(
            learning_rate=0.3,
            multiply_by_parameter_scale=True,
            relative_step=True,
            weight_decay=None,
        ),
        value,
        gradient,
    )
    reference = _step(keras.optimizers.Adafactor(learning_rate=0.3), value, gradient)
    np.testing.assert_allclose(ours, reference, rtol=1e-6)


def test_config_round_trip():
    optimizer = PromptAdafactor(learning_rate=0.1, multiply_by_parameter_scale=True)
    clone = PromptAdafactor.from_config(optimizer.get_config())
    assert clone.multiply_by_parameter_scale is True
    assert float(clone.learning_rate) == pytest.approx(0.1)
