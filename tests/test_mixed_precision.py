"""bf16 training paths agree with float32 and keep the prompt's state in float32."""

import keras
import numpy as np
import pytest
from conftest import make_tiny_backbone

from keras_prompt import PromptAdafactor, PromptTunedT5


def _batch():
    rng = np.random.default_rng(0)
    x = {
        "encoder_token_ids": rng.integers(3, 32000, (4, 12)).astype("int32"),
        "encoder_padding_mask": np.array([[1] * 12] * 3 + [[1] * 7 + [0] * 5], "int32"),
        "decoder_token_ids": rng.integers(3, 32000, (4, 3)).astype("int32"),
        "decoder_padding_mask": np.ones((4, 3), "int32"),
    }
    y = rng.integers(3, 32000, (4, 3)).astype("int32")
    return x, y, np.ones((4, 3), "float32")


def _model(kind: str, prompt: np.ndarray) -> PromptTunedT5:
    """`kind`: float32, mixed_bfloat16 (policy) or bfloat16 (bf16 backbone)."""
    previous = keras.config.dtype_policy()
    if kind == "mixed_bfloat16":
        keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        backbone = make_tiny_backbone(dtype="bfloat16" if kind == "bfloat16" else None)
        model = PromptTunedT5(backbone, prompt_length=prompt.shape[0])
    finally:
        keras.config.set_dtype_policy(previous)
    model.set_prompt(prompt)
    return model


@pytest.mark.parametrize("kind", ["mixed_bfloat16", "bfloat16"])
def test_bf16_logits_and_loss_agree_with_float32(kind):
    prompt = np.random.default_rng(1).uniform(-0.5, 0.5, (3, 16)).astype("float32")
    x, y, weights = _batch()
    reference_model = _model("float32", prompt)
    model = _model(kind, prompt)
    assert model.soft_prompt.prompt.dtype == "float32"
    assert model.backbone.compute_dtype == "bfloat16"
    reference = keras.ops.convert_to_numpy(reference_model(x))
    logits = keras.ops.convert_to_numpy(model(x)).astype("float32")
    # bfloat16 keeps 8 bits of mantissa: through 2+2 layers of this random
    # network the logits move ~3.5% (relative norm), as with keras-hub's own
    # attention; a wrong path (dtype, mask, prompt) moves them by O(100%).
    error = np.linalg.norm(logits - reference) / np.linalg.norm(reference)
    assert error < 0.06
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert float(loss(y, logits, weights)) == pytest.approx(
        float(loss(y, reference, weights)), rel=0.03
    )


@pytest.mark.parametrize("kind", ["mixed_bfloat16", "bfloat16"])
def test_bf16_training_state_is_float32_and_prompt_sized(kind):
    prompt = np.random.default_rng(2).uniform(-0.5, 0.5, (3, 16)).astype("float32")
    model = _model(kind, prompt)
    model.compile(optimizer=PromptAdafactor(learning_rate=0.01))
    x, y, weights = _batch()
    model.fit(x, y, sample_weight=weights, batch_size=4, epochs=1, verbose=0)
    assert not np.allclose(model.get_prompt(), prompt)
    # Optimizer state exists for the prompt only (Adafactor: row, column and
    # full second moments of a 3 x 16 matrix), all float32; none for the
    # frozen backbone.
    state = [v for v in model.optimizer.variables if len(v.shape) > 0]
    assert {str(v.dtype) for v in state} == {"float32"}
    assert sum(int(np.prod(v.shape)) for v in state) == 3 + 16 + 3 * 16
