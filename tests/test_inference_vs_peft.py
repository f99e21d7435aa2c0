"""Smoke test of `benchmarks/inference_vs_peft.py`'s agreement checks: on a
tiny T5 1.1 and a random prompt exported as a PEFT adapter, keras-prompt's
`score` / `generate` and the benchmark's transformers + PEFT paths (shared
encoder and per-candidate scoring, `PeftModel.generate`) agree, and the checks
notice a disagreement."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import REPO_ROOT
from interop_helpers import tiny_backbone, write_preset

from keras_prompt.checkpoints import export_hf_checkpoint
from keras_prompt.peft_prompts import save_peft_prompt

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import inference_vs_peft as bench  # noqa: E402

TEXTS = [
    "sst2 sentence: a gorgeous, witty, seductive movie.",
    "sst2 sentence: dull",
    "sst2 sentence: the plot is nothing but boilerplate clichés from start to finish",
]
CANDIDATES = ["negative", "positive"]


@pytest.fixture(scope="module")
def files(tmp_path_factory, spiece_path):
    root = tmp_path_factory.mktemp("inference_vs_peft")
    preset = write_preset(tiny_backbone("t5_1.1", seed=3), spiece_path, root / "preset")
    prompt = np.random.default_rng(0).normal(0, 0.5, (4, 16)).astype("float32")
    adapter = save_peft_prompt(prompt, root / "adapter")
    return preset, export_hf_checkpoint(preset, root / "hf"), adapter


def test_same_scores_and_generations(files):
    preset, hf_dir, adapter = files
    model = bench.keras_model(preset, adapter, "float32", 32, 4)
    reference = bench.keras_score(model, TEXTS, CANDIDATES, batch_size=2)
    peft_model, tokenizer = bench.peft_model(hf_dir, adapter, "float32")
    for variant in bench.PEFT_VARIANTS:
        scores = bench.peft_score(
            peft_model, tokenizer, TEXTS, CANDIDATES, 2, 32, variant
        )
        check = bench.compare_scores(reference, scores, atol=1e-3)
        assert check["within_atol"] and check["label_agreement"] == 1.0, check
    # The check fails when the scores do differ.
    shifted = reference.copy()
    shifted[1, 0] += 2e-3
    assert not bench.compare_scores(reference, shifted)["within_atol"]

    texts = bench.keras_generate(model, TEXTS, batch_size=2, new_tokens=4)
    generated = bench.peft_generate(peft_model, tokenizer, TEXTS, 2, 32, 4)
    assert bench.text_agreement(texts, generated) == 1.0, (texts, generated)
    assert all(text.strip() for text in texts), texts  # something was decoded
    assert bench.text_agreement(["a \u2047 b", "x"], ["a b", "y"]) == 0.5


def test_best_over_settings_keeps_the_fastest():
    used = []

    def apply(setting):
        used.append(setting)

    calls = iter(range(100))
    output, best, wall, cpu, per_setting = bench.best_over_settings(
        lambda: next(calls), [1, 2], apply, repeats=2
    )
    assert used[:2] == [1, 2] and len(used) == 6  # warm-ups, then interleaved
    assert best in (1, 2) and len(wall) == len(cpu) == 2
    assert min(wall) == per_setting[str(best)] or abs(
        min(wall) - per_setting[str(best)]
    ) < 1e-4
