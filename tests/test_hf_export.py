"""`export-hf`: a keras-hub T5 written as a Hugging Face checkpoint that
transformers loads with the same logits, and that the importer reads back to
the same weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from conftest import REPO_ROOT, json_tail, run_cli
from interop_helpers import (
    cli_error,
    keras_prompt_outputs,
    tiny_backbone,
    transformers_outputs,
    write_preset,
)

from keras_prompt.checkpoints import (
    HFCheckpointError,
    convert_hf_checkpoint,
    export_hf_checkpoint,
    load_hf_t5,
)
from keras_prompt.checkpoints.safetensors_io import index_safetensors

ATOL = 1e-4
EMBEDDED = REPO_ROOT / "keras_prompt" / "presets" / "t5_1_1_mini_lm"


def _load_transformers(directory: Path):
    return transformers.T5ForConditionalGeneration.from_pretrained(directory).eval()


@pytest.mark.parametrize("flavour", ["t5_1.0", "t5_1.1"])
def test_export_matches_transformers_and_round_trips(flavour, spiece_path, tmp_path):
    backbone = tiny_backbone(flavour, seed=3)
    preset = write_preset(backbone, spiece_path, tmp_path / "preset")
    out = export_hf_checkpoint(preset, tmp_path / "hf")

    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "model.safetensors", "spiece.model", "tokenizer_config.json"
    ]
    config = json.loads((out / "config.json").read_text())
    tied = flavour == "t5_1.0"
    assert config["tie_word_embeddings"] is tied
    assert config["feed_forward_proj"] == ("relu" if tied else "gated-gelu")
    assert ("lm_head.weight" in index_safetensors(out / "model.safetensors")) != tied

    model = _load_transformers(out)
    assert model.config.scale_decoder_outputs is tied
    reference = transformers_outputs(model)
    original = [w.copy() for w in backbone.get_weights()]
    encoded, logits = keras_prompt_outputs(backbone)
    np.testing.assert_allclose(encoded, reference[0], atol=ATOL, rtol=0)
    np.testing.assert_allclose(logits, reference[1], atol=ATOL, rtol=0)

    # Round trip through the importer (and on into a preset): same weights.
    imported, tokenizer = load_hf_t5(out)
    assert imported.tie_embedding_weights is tied
    for before, after in zip(original, imported.get_weights()):
        np.testing.assert_array_equal(before, after)
    again = convert_hf_checkpoint(out, tmp_path / "preset_again")
    assert (again / "model.weights.h5").is_file()

    # The same vocabulary on both sides.
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    text = "The house is wonderful."
    ids = np.asarray(tokenizer.tokenize(text)).tolist()
    assert hf_tokenizer(text).input_ids == [*ids, tokenizer.end_token_id]


def test_export_embedded_checkpoint_with_cli(tmp_path):
    """The backbone pretrained here, usable in transformers."""
    out = tmp_path / "mini_hf"
    result = json_tail(run_cli("export-hf", EMBEDDED, "--out", out).stdout)
    assert result["checkpoint"] == str(out)
    assert "model.safetensors" in result["files"]

    from keras_prompt.models.prompt_tuned_t5 import load_backbone

    backbone, _ = load_backbone(EMBEDDED)
    reference = transformers_outputs(_load_transformers(out))
    encoded, logits = keras_prompt_outputs(backbone)
    assert np.abs(logits - reference[1]).max() < ATOL
    assert np.abs(encoded - reference[0]).max() < ATOL


def test_bfloat16_export(spiece_path, tmp_path):
    backbone = tiny_backbone("t5_1.1", seed=4)
    preset = write_preset(backbone, spiece_path, tmp_path / "preset")
    out = export_hf_checkpoint(preset, tmp_path / "hf", dtype="bfloat16")
    header = json.loads(
        (out / "model.safetensors").read_bytes()[8:].split(b"}}", 1)[0] + b"}}"
    )
    assert header["shared.weight"]["dtype"] == "BF16"
    model = transformers.T5ForConditionalGeneration.from_pretrained(out)
    assert model.shared.weight.dtype == torch.bfloat16
    shared = backbone.token_embedding.embeddings.numpy()
    restored = model.shared.weight.float().detach().numpy()
    # bfloat16 keeps 8 significant bits: relative error below 2**-8.
    assert np.abs(restored - shared).max() <= np.abs(shared).max() * 2**-8


def test_export_refusals_are_one_line_errors(spiece_path, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_cli("export-hf", EMBEDDED, "--out", out, check=False)
    assert f"{out} already exists and is not empty" in cli_error(result, "export-hf")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]

    # An activation transformers' T5 cannot express (exact-erf GELU, gated).
    backbone = tiny_backbone("t5_1.1", seed=5)
    config = backbone.get_config()
    config["activation"] = "gelu"
    import keras_hub

    exact = keras_hub.models.T5Backbone.from_config(config)
    preset = write_preset(exact, spiece_path, tmp_path / "erf")
    with pytest.raises(HFCheckpointError, match="no transformers T5 equivalent"):
        export_hf_checkpoint(preset, tmp_path / "erf_hf")
    assert not (tmp_path / "erf_hf").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
