"""Helpers shared by the interoperability tests: tiny T5 backbones of both
flavours, presets, and the same batch run through keras-prompt and through
transformers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Encoder batch with right padding in the second row; decoder likewise (the
# decoder starts with the pad id, T5's decoder start token).
ENCODER_IDS = np.array([[37, 1782, 19, 5, 207, 7, 1], [8, 1782, 1, 0, 0, 0, 0]])
DECODER_IDS = np.array([[0, 37, 1782, 19, 1], [0, 1782, 1, 0, 0]])

# T5 1.0: ReLU FFN, tied embedding (logits scaled by d_model**-0.5);
# T5 1.1: gated tanh-GELU FFN, separate LM head.
FLAVOURS = {
    "t5_1.0": dict(
        activation="relu", use_gated_activation=False, tie_embedding_weights=True
    ),
    "t5_1.1": {},
}


def decoder_mask() -> np.ndarray:
    mask = DECODER_IDS != 0
    mask[:, 0] = True
    return mask


def tiny_backbone(flavour: str, seed: int = 0):
    """A ``t5_1_1_tiny``-sized backbone of ``flavour`` with T5's init and
    random layer-norm scales (so a swapped norm cannot go unnoticed)."""
    from keras_prompt.models.geometries import build_backbone

    backbone = build_backbone(
        "t5_1_1_tiny", seed=seed, dropout=0.0, **FLAVOURS[flavour]
    )
    rng = np.random.default_rng(seed + 100)
    for variable in backbone.weights:
        if "layer_norm" in variable.path:
            noise = rng.standard_normal(tuple(variable.shape)).astype("float32")
            variable.assign(1.0 + 0.2 * noise)
    return backbone


def write_preset(backbone, spiece_path: Path, directory: Path) -> Path:
    import keras_hub

    tokenizer = keras_hub.models.T5Tokenizer(proto=str(spiece_path))
    backbone.save_to_preset(str(directory))
    tokenizer.save_to_preset(str(directory))
    return directory


def keras_prompt_outputs(backbone, prompt=None) -> tuple[np.ndarray, np.ndarray]:
    """Encoder output and logits from keras-prompt's own forward pass."""
    import keras

    from keras_prompt import PromptTunedT5

    if prompt is None:
        model = PromptTunedT5(backbone, prompt_length=0, tune="model")
    else:
        model = PromptTunedT5(backbone, prompt_length=len(prompt))
        model.set_prompt(prompt)
    mask = (ENCODER_IDS != 0).astype("int32")
    encoded, _ = model.encode(ENCODER_IDS, mask)
    logits = model(
        {
            "encoder_token_ids": ENCODER_IDS,
            "encoder_padding_mask": mask,
            "decoder_token_ids": DECODER_IDS,
            "decoder_padding_mask": decoder_mask().astype("int32"),
        }
    )
    return keras.ops.convert_to_numpy(encoded), keras.ops.convert_to_numpy(logits)


def transformers_outputs(model) -> tuple[np.ndarray, np.ndarray]:
    """Encoder output and logits of a ``T5ForConditionalGeneration``."""
    import torch

    with torch.no_grad():
        output = model(
            input_ids=torch.tensor(ENCODER_IDS),
            attention_mask=torch.tensor(ENCODER_IDS != 0).long(),
            decoder_input_ids=torch.tensor(DECODER_IDS),
            decoder_attention_mask=torch.tensor(decoder_mask()).long(),
        )
    return output.encoder_last_hidden_state.numpy(), output.logits.numpy()


def cli_error(result, command: str) -> str:
    """The one error line a failed `keras-prompt command` printed (stderr also
    carries TensorFlow's start-up logs); asserts there was no traceback."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    prefix = f"keras-prompt {command}: error: "
    lines = [line for line in result.stderr.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0][len(prefix) :]
