"""`benchmarks/time_to_accuracy.py`: both systems train alike, and the ratio.

The benchmark's claim of "same weights, same initial prompt, same optimizer
settings" is checked on a tiny T5 1.1: a few keras-prompt `fit` steps with
`PromptAdafactor` and the same steps through the benchmark's transformers +
PEFT path (`peft_trainable_model`, `peft_optimizer`, `peft_batch`) move the
prompt to the same values.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import REPO_ROOT
from interop_helpers import tiny_backbone, write_preset

from keras_prompt import PromptAdafactor, PromptTunedT5
from keras_prompt.checkpoints import export_hf_checkpoint
from keras_prompt.data import rank_classification_metrics
from keras_prompt.peft_prompts import save_peft_prompt

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import time_to_accuracy as bench  # noqa: E402
from peft_worker import train_step  # noqa: E402

INPUTS = [
    "sst2 sentence: a gorgeous, witty, seductive movie.",
    "sst2 sentence: dull",
    "sst2 sentence: the plot is nothing but boilerplate clichés",
    "sst2 sentence: warm and funny",
]
TARGETS = ["positive", "negative", "negative", "positive"]
STEPS = 3


def test_keras_prompt_and_peft_steps_move_the_prompt_alike(tmp_path, spiece_path):
    preset = write_preset(tiny_backbone("t5_1.1", seed=5), spiece_path, tmp_path / "p")
    initial = np.random.default_rng(0).normal(0, 0.5, (4, 16)).astype("float32")
    adapter = save_peft_prompt(initial, tmp_path / "adapter")
    hf_dir = export_hf_checkpoint(preset, tmp_path / "hf")

    model = PromptTunedT5.from_preset(preset, prompt_length=4)
    model.set_prompt(initial)
    model.compile(optimizer=PromptAdafactor(learning_rate=0.3))
    x = {"encoder_text": INPUTS, "decoder_text": TARGETS}
    model.fit(x, batch_size=len(INPUTS), epochs=STEPS, shuffle=False, verbose=0)
    keras_prompt = model.get_prompt()

    peft_model, tokenizer = bench.peft_trainable_model(hf_dir, adapter, "fp32")
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    assert len(trainable) == 1 and tuple(trainable[0].shape) == (4, 16)
    optimizer = bench.peft_optimizer(trainable, 0.3)
    batch = bench.peft_batch(tokenizer, INPUTS, TARGETS, max_input_length=32)
    for _ in range(STEPS):
        train_step(peft_model, optimizer, batch, "fp32")
    peft_prompt = trainable[0].detach().numpy()

    moved = np.abs(keras_prompt - initial).max()
    assert moved > 0.1  # the steps did something (lr 0.3, clipped updates)
    np.testing.assert_allclose(peft_prompt, keras_prompt, atol=2e-4)


def test_ratio_is_seconds_to_95_percent_of_the_lower_final_accuracy():
    def curve(points):
        return [{"train_seconds": s, "accuracy": a} for s, a in points]

    fast = curve([(10, 0.55), (20, 0.66), (30, 0.70)])
    slow = curve([(40, 0.55), (80, 0.64), (120, 0.66), (160, 0.68)])
    summary = bench.compare_curves({"keras-prompt": fast, "PEFT": slow})
    assert summary["target_accuracy"] == pytest.approx(0.95 * 0.68)
    # 0.646: keras-prompt reaches it at 20 s, PEFT at 120 s.
    assert summary["seconds_to_target"] == {"keras-prompt": 20, "PEFT": 120}
    assert summary["ratio"] == pytest.approx(6.0)

    # A slower keras-prompt gives a ratio below 1.
    summary = bench.compare_curves(
        {"keras-prompt": curve([(10, 0.5), (20, 0.9)]), "PEFT": curve([(5, 0.95)])}
    )
    assert summary["ratio"] == pytest.approx(5 / 20)


def test_rank_classification_metrics_from_scores():
    metrics = rank_classification_metrics(
        "sst2", [[-1.0, -2.0], [-3.0, -0.5], [-0.1, -0.2]], [0, 1, 1]
    )
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["predicted_counts"] == [2, 1]
    assert metrics["auc"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"shape \(examples, 2\)"):
        rank_classification_metrics("sst2", [-1.0, -2.0], [0, 1])


def test_plateau_comparison_uses_window_means_against_the_lower_plateau():
    def curve(accuracies, seconds_per_eval):
        return [
            {"train_seconds": seconds_per_eval * (i + 1), "accuracy": a}
            for i, a in enumerate(accuracies)
        ]

    # One lucky early evaluation does not count: only a 2-evaluation mean does.
    fast = curve([0.70, 0.60, 0.66, 0.68, 0.70, 0.70], 1.0)
    slow = curve([0.60, 0.62, 0.68, 0.70, 0.72, 0.72], 2.0)
    summary = bench.plateau_comparison({"keras-prompt": fast, "PEFT": slow}, 2, 2)
    assert summary["target_accuracy"] == pytest.approx(0.70)  # min(0.70, 0.72)
    assert summary["seconds_to_target"] == {"keras-prompt": 6.0, "PEFT": 10.0}
    assert summary["ratio"] == pytest.approx(10.0 / 6.0)
