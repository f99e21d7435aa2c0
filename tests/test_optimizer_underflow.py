"""PromptAdafactor stays finite when its factored second moment underflows.

Model tuning (`PromptTunedT5(tune="model")`) trains kernels whose gradients
are exactly zero in some entries while other rows are large; the product of a
tiny row factor and a tiny column mean then underflows to 0 in float32 and
`0 / sqrt(0)` was NaN after the first step.
"""

import keras
import numpy as np

from keras_prompt import PromptAdafactor


def test_zero_gradient_entries_with_underflowing_factors_stay_finite():
    gradient = np.zeros((4, 6), "float32")
    gradient[0, 0] = 1e3  # one large entry: the other rows' factors are ~1e-36
    variable = keras.Variable(np.full((4, 6), 0.5, "float32"))
    optimizer = PromptAdafactor(learning_rate=1e-3)
    for _ in range(3):
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(gradient), variable)])
    after = keras.ops.convert_to_numpy(variable)
    assert np.all(np.isfinite(after))
    # Entries with zero gradient only decay (weight decay 1e-5), never jump.
    np.testing.assert_allclose(after[1:, 1:], 0.5, atol=1e-5)
    assert after[0, 0] < 0.5
