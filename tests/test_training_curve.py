"""`HeldOutEvaluation` learning curves and the backbone dropout override."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_tiny_backbone

from keras_prompt import PromptTunedT5
from keras_prompt.data import Example
from keras_prompt.training import HeldOutEvaluation, train_prompt


def _examples(n):
    return [
        Example(
            inputs=f"sst2 sentence: film number {i}",
            targets=["negative", "positive"][i % 2],
            label=i % 2,
        )
        for i in range(n)
    ]


def test_held_out_evaluation_records_every_n_steps(tmp_path, tokenizer):
    import keras_hub

    preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=16, decoder_sequence_length=4
    )
    model = PromptTunedT5(make_tiny_backbone(), preprocessor, prompt_length=2)
    model.compile()
    held_out = _examples(6)
    path = tmp_path / "curve.jsonl"
    curve = HeldOutEvaluation("sst2", held_out, every=2, path=str(path))
    train_prompt(model, "sst2", _examples(16), steps=4, batch_size=4, callbacks=[curve])
    assert [r["step"] for r in curve.records] == [2, 4]
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [
        2,
        4,
    ]
    last = curve.records[-1]
    assert last["num_examples"] == 6 and sum(last["predicted_counts"]) == 6
    assert 0 <= last["accuracy"] <= 1 and last["train_seconds"] > 0
    # The last record is the trained model's own held-out accuracy.
    predicted = model.predict_label(
        [e.inputs for e in held_out], ["negative", "positive"]
    )
    expected = np.mean(predicted == np.array([e.label for e in held_out]))
    assert last["accuracy"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="`every` must be >= 1"):
        HeldOutEvaluation("sst2", held_out, every=0)


def test_from_preset_dropout_override_keeps_weights(tmp_path, tokenizer):
    backbone = make_tiny_backbone(dropout=0.1)
    backbone.save_to_preset(tmp_path / "preset")
    tokenizer.save_to_preset(tmp_path / "preset")
    kept = PromptTunedT5.from_preset(tmp_path / "preset", prompt_length=2)
    assert kept.backbone.get_config()["dropout"] == 0.1
    model = PromptTunedT5.from_preset(tmp_path / "preset", prompt_length=2, dropout=0.0)
    assert model.backbone.get_config()["dropout"] == 0.0
    for a, b in zip(model.backbone.weights, backbone.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match=r"`dropout` must be in \[0, 1\); got 1.5"):
        PromptTunedT5.from_preset(tmp_path / "preset", prompt_length=2, dropout=1.5)
