"""`hf://owner/name` through the local Hugging Face cache: a cache laid out by
the test (blobs, refs/main, snapshots/<commit>/ symlinks, as huggingface_hub
writes it) around a tiny checkpoint written by transformers, read with
HF_HUB_OFFLINE=1."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import transformers
from conftest import REPO_ROOT, json_tail
from interop_helpers import cli_error

from keras_prompt import PromptTunedT5
from keras_prompt.checkpoints import HFCheckpointError, load_hf_t5

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO_ID = "test-org/tiny-t5"


def _cache_repo(cache: Path, repo_id: str, files: dict[str, Path]) -> Path:
    """huggingface_hub's cache layout for one repository at one commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for name, source in files.items():
        data = source.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / name)
    return snapshot


@pytest.fixture(scope="module")
def cache(tmp_path_factory, spiece_path):
    root = tmp_path_factory.mktemp("hf")
    checkpoint = root / "written"
    config = transformers.T5Config(
        vocab_size=32128, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )
    transformers.T5ForConditionalGeneration(config).save_pretrained(checkpoint)
    shutil.copy(spiece_path, checkpoint / "spiece.model")
    hub = root / "hub"
    files = {n: checkpoint / n for n in ("config.json", "model.safetensors")}
    _cache_repo(hub, REPO_ID, {**files, "spiece.model": checkpoint / "spiece.model"})
    _cache_repo(hub, "test-org/no-weights", {"config.json": checkpoint / "config.json",
                                             "spiece.model": spiece_path})
    return hub, checkpoint


def _run(hub: Path, *args):
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "keras_prompt.cli", *map(str, args)],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT, env=env,
    )


def test_from_preset_reads_the_offline_cache(cache, monkeypatch):
    hub, checkpoint = cache
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = PromptTunedT5.from_preset(f"hf://{REPO_ID}", prompt_length=3)
    assert model.preset == f"hf://{REPO_ID}"
    expected, _ = load_hf_t5(checkpoint)
    for got, want in zip(model.backbone.get_weights(), expected.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_cli_model_handle_offline(cache, tmp_path):
    hub, _ = cache
    result = _run(hub, "export-hf", f"hf://{REPO_ID}", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json_tail(result.stdout)["checkpoint"] == str(tmp_path / "out")


def test_missing_from_offline_cache_is_one_line(cache, tmp_path):
    hub, _ = cache
    result = _run(hub, "export-hf", "hf://google/t5-small-lm-adapt", "--out",
                  tmp_path / "out")
    message = cli_error(result, "export-hf")
    assert "HF_HUB_OFFLINE=1 and the cache does not hold it" in message
    assert str(hub / "models--google--t5-small-lm-adapt") in message
    assert "config.json, model.safetensors" in message and "spiece.model" in message

    # Cached, but without weights: the importer names the snapshot and files.
    result = _run(hub, "export-hf", "hf://test-org/no-weights", "--out",
                  tmp_path / "out2")
    message = cli_error(result, "export-hf")
    assert f"snapshots/{COMMIT}" in message and "No weights file" in message


def test_malformed_handle(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HFCheckpointError, match="expected 'hf://owner/name'"):
        PromptTunedT5.from_preset("hf://just-a-name", prompt_length=1)
