"""PEFT prompt-tuning adapters both ways, checked against PEFT itself: the same
prompt on the same backbone weights (exported with `export-hf`) gives the same
candidate scores in PEFT and in keras-prompt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import peft  # The test extra installs it; a missing one fails, never skips.
import pytest
import torch
import transformers
from conftest import REPO_ROOT, json_tail, run_cli
from interop_helpers import cli_error, tiny_backbone, write_preset

from keras_prompt import PromptTunedT5
from keras_prompt.checkpoints import export_hf_checkpoint
from keras_prompt.models.prompt_tuned_t5 import load_backbone
from keras_prompt.peft_prompts import (
    PeftAdapterError,
    load_peft_prompt,
    save_peft_prompt,
)

ATOL = 1e-4
TEXTS = ["sst2 sentence: a gorgeous, witty film", "sst2 sentence: dull"]
CANDIDATES = ["negative", "positive"]


@pytest.fixture(scope="module")
def models(tmp_path_factory, spiece_path):
    """A tiny T5 1.1 as a keras-hub preset and as the same weights in HF format."""
    root = tmp_path_factory.mktemp("peft")
    preset = write_preset(tiny_backbone("t5_1.1", seed=7), spiece_path, root / "preset")
    hf_dir = export_hf_checkpoint(preset, root / "hf")
    return preset, hf_dir


def _base(hf_dir: Path):
    return transformers.T5ForConditionalGeneration.from_pretrained(hf_dir).eval()


def _peft_scores(peft_model, hf_dir: Path) -> np.ndarray:
    """Summed log-probabilities of each candidate (+ </s>), computed by PEFT."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    scores = np.zeros((len(TEXTS), len(CANDIDATES)), "float32")
    for i, text in enumerate(TEXTS):
        encoded = tokenizer(text, return_tensors="pt")
        for j, candidate in enumerate(CANDIDATES):
            labels = tokenizer(candidate, return_tensors="pt").input_ids
            with torch.no_grad():
                logits = peft_model(
                    input_ids=encoded.input_ids,
                    attention_mask=encoded.attention_mask,
                    labels=labels,
                ).logits
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            scores[i, j] = log_probs.gather(-1, labels[..., None]).sum().item()
    return scores


def _keras_scores(preset: Path, prompt: np.ndarray) -> np.ndarray:
    model = PromptTunedT5.from_preset(preset, prompt_length=prompt.shape[0])
    model.set_prompt(prompt)
    return model.score(TEXTS, CANDIDATES)


def test_keras_prompt_to_peft_same_scores(models, tmp_path):
    preset, hf_dir = models
    prompt = np.random.default_rng(0).normal(size=(5, 16)).astype("float32")
    model = PromptTunedT5.from_preset(preset, prompt_length=5)
    model.set_prompt(prompt)
    prompt_file = model.save_prompt(
        tmp_path / "sst2", task="sst2", verbalizers=CANDIDATES
    )
    expected = model.score(TEXTS, CANDIDATES)

    adapter = tmp_path / "adapter"
    result = json_tail(
        run_cli("export-peft", prompt_file, "--out", adapter, "--model", preset).stdout
    )
    assert result == {"adapter": str(adapter), "shape": [5, 16]}
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["num_transformer_submodules"] == 1 and config["token_dim"] == 16

    peft_model = peft.PeftModel.from_pretrained(_base(hf_dir), adapter).eval()
    stored = peft_model.get_prompt_embedding_to_save("default").numpy()
    np.testing.assert_array_equal(stored, prompt)
    scores = _peft_scores(peft_model, hf_dir)
    assert np.abs(scores - expected).max() < ATOL
    # Scores depend on the prompt (so the comparison above can fail).
    assert np.abs(scores - _keras_scores(preset, prompt * 0.0)).max() > 1e-2

    # Back again: the same array and keras-prompt's metadata.
    values, metadata = load_peft_prompt(adapter, hidden_dim=16)
    np.testing.assert_array_equal(values, prompt)
    assert metadata["task"] == "sst2" and metadata["verbalizers"] == CANDIDATES


def test_peft_adapter_to_keras_prompt_same_scores(models, tmp_path):
    preset, hf_dir = models
    config = peft.PromptTuningConfig(
        task_type="SEQ_2_SEQ_LM", num_virtual_tokens=4, num_transformer_submodules=1
    )
    peft_model = peft.get_peft_model(_base(hf_dir), config)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        embedding = peft_model.prompt_encoder["default"].embedding.weight
        embedding.copy_(torch.randn(embedding.shape, generator=generator))
    adapter = tmp_path / "peft_adapter"
    peft_model.save_pretrained(adapter)
    assert (adapter / "adapter_model.safetensors").is_file()
    expected = _peft_scores(peft_model.eval(), hf_dir)

    out = tmp_path / "prompts" / "sst2"
    result = json_tail(
        run_cli("import-peft", adapter, "--out", out, "--model", preset).stdout
    )
    assert result["shape"] == [4, 16]
    prompt = np.load(f"{out}.npy")
    np.testing.assert_array_equal(prompt, embedding.detach().numpy())
    assert np.abs(_keras_scores(preset, prompt) - expected).max() < ATOL
    metadata = json.loads(Path(f"{out}.json").read_text())
    assert metadata["peft"]["peft_type"] == "PROMPT_TUNING"
    assert metadata["source"] == str(adapter)

    # The imported prompt file loads into a model like any other.
    model = PromptTunedT5.from_preset(preset, prompt_length=4)
    model.load_prompt(f"{out}.npy")
    np.testing.assert_array_equal(model.get_prompt(), prompt)


def test_decoder_prompt_adapter_refused(models, tmp_path):
    """PEFT's seq2seq default puts a second prompt on the decoder."""
    preset, hf_dir = models
    config = peft.PromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=3)
    adapter = tmp_path / "both"
    peft.get_peft_model(_base(hf_dir), config).save_pretrained(adapter)
    assert json.loads((adapter / "adapter_config.json").read_text())[
        "num_transformer_submodules"
    ] == 2

    result = run_cli("import-peft", adapter, "--out", tmp_path / "p", check=False)
    message = cli_error(result, "import-peft")
    assert str(adapter / "adapter_config.json") in message
    assert "'num_transformer_submodules' is 2; expected 1" in message
    assert "decoder input too" in message
    assert not list(tmp_path.glob("p.*"))


def test_other_adapters_refused(models, tmp_path, spiece_path):
    preset, hf_dir = models
    lora = tmp_path / "lora"
    config = peft.LoraConfig(task_type="SEQ_2_SEQ_LM", r=2, target_modules=["q", "v"])
    peft.get_peft_model(_base(hf_dir), config).save_pretrained(lora)
    with pytest.raises(PeftAdapterError, match="'peft_type' is 'LORA'"):
        load_peft_prompt(lora)

    prompt = np.ones((3, 16), "float32")
    causal = save_peft_prompt(prompt, tmp_path / "causal")
    config_path = causal / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["task_type"] = "CAUSAL_LM"
    config_path.write_text(json.dumps(config))
    with pytest.raises(PeftAdapterError, match="'task_type' is 'CAUSAL_LM'"):
        load_peft_prompt(causal)

    # Another model's width: the embedded checkpoint is 192 wide, not 16.
    adapter = save_peft_prompt(prompt, tmp_path / "narrow")
    embedded = REPO_ROOT / "keras_prompt" / "presets" / "t5_1_1_mini_lm"
    result = run_cli(
        "import-peft", adapter, "--out", tmp_path / "x", "--model", embedded,
        check=False,
    )
    message = cli_error(result, "import-peft")
    assert "'token_dim' is 16; expected 192" in message

    (adapter / "adapter_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="adapter_model.safetensors not found"):
        load_peft_prompt(adapter)
    with pytest.raises(PeftAdapterError, match="width 16 does not match.*192"):
        save_peft_prompt(prompt, tmp_path / "wide", model=load_backbone(embedded)[0])
    assert not (tmp_path / "wide").exists()
