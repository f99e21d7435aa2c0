"""CLI paths added for the paper's experiments: --tune model, --format-as,
inspect's verbalizer hit-rate, and the ablation/ensemble example scripts."""

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import json_tail, run_cli

REPO = Path(__file__).resolve().parents[1]


def test_train_tune_model_writes_a_preset_and_eval_reads_it(
    tiny_preset, assets_dir, tmp_path
):
    out = tmp_path / "run"
    summary = json_tail(run_cli(
        "train", "--task", "mrpc", "--model", tiny_preset, "--data-dir", assets_dir,
        "--tune", "model", "--steps", 2, "--batch-size", 4, "--eval-limit", 12,
        "--max-input-length", 48, "--out", out, "--verbose", 0,
    ).stdout)
    assert summary["tune"] == "model" and summary["prompt_length"] == 0
    assert summary["learning_rate"] == pytest.approx(1e-3)
    assert summary["prompt"] is None and summary["prompt_sha256"] is None
    assert summary["trainable_parameters"] > 1_000_000
    assert (out / "preset" / "model.weights.h5").is_file()
    assert not (out / "mrpc.npy").exists()
    evaluated = json_tail(run_cli(
        "eval", "--task", "mrpc", "--model", out / "preset", "--data-dir",
        assets_dir, "--limit", 12, "--max-input-length", 48,
    ).stdout)
    assert evaluated["prompt"] is None
    assert evaluated["accuracy"] == pytest.approx(summary["eval"]["accuracy"])
    assert set(summary["eval"]) >= {"f1", "auc", "predicted_counts"}


def test_tune_model_refuses_prompt_only_backups(tiny_preset, assets_dir, tmp_path):
    result = run_cli(
        "train", "--task", "sst2", "--model", tiny_preset, "--data-dir", assets_dir,
        "--tune", "model", "--steps", 2, "--backup-dir", tmp_path / "b",
        "--out", tmp_path / "run", check=False,
    )
    assert result.returncode == 2
    assert "--backup-dir" in result.stderr and "--tune model" in result.stderr


def test_eval_format_as_scores_the_source_verbalizers(
    tiny_preset, assets_dir, tmp_path
):
    prompt = np.random.default_rng(0).normal(size=(3, 16)).astype("float32")
    np.save(tmp_path / "p.npy", prompt)
    result = json_tail(run_cli(
        "eval", "--task", "mrpc", "--format-as", "qqp", "--model", tiny_preset,
        "--prompt", tmp_path / "p.npy", "--data-dir", assets_dir, "--limit", 8,
        "--max-input-length", 48,
    ).stdout)
    assert result["format_as"] == "qqp" and result["num_examples"] == 8
    bad = run_cli(
        "eval", "--task", "mrpc", "--format-as", "cb", "--model", tiny_preset,
        "--prompt", tmp_path / "p.npy", "--data-dir", assets_dir, check=False,
    )
    assert bad.returncode == 2 and "format_as" in bad.stderr


def test_inspect_reports_verbalizer_hit_rate(tiny_preset, tmp_path):
    import keras_hub

    backbone = keras_hub.models.T5Backbone.from_preset(str(tiny_preset))
    tokenizer = keras_hub.models.T5Tokenizer.from_preset(str(tiny_preset))
    table = backbone.token_embedding.embeddings.numpy()
    positive = int(np.asarray(tokenizer.tokenize("positive")).reshape(-1)[0])
    prompt = np.stack([table[positive] * 2.0, -table[positive]]).astype("float32")
    np.save(tmp_path / "p.npy", prompt)
    report = json_tail(run_cli(
        "inspect", tmp_path / "p.npy", "--model", tiny_preset, "--task", "sst2",
        "--json",
    ).stdout)
    assert report["verbalizers"] == ["negative", "positive"]
    assert report["verbalizer_hit_rate"] == pytest.approx(0.5)
    text = run_cli("inspect", tmp_path / "p.npy", "--model", tiny_preset,
                "--verbalizers", "positive").stdout
    assert "verbalizer hit-rate: 0.500" in text
    missing = run_cli("inspect", tmp_path / "p.npy", "--task", "sst2", check=False)
    assert missing.returncode == 2 and "--verbalizers/--task" in missing.stderr


def test_ablation_and_ensemble_scripts_run_small(tiny_preset, assets_dir, tmp_path):
    out = tmp_path / "ablate"
    run_cli(
        "--model", tiny_preset, "--data-dir", assets_dir, "--out", out,
        "--lengths", 2, "--inits", "random_uniform", "class_labels",
        "--seeds", 0, "--steps", 1, "--batch-size", 4, "--eval-limit", 10,
        "--max-input-length", 32, script="examples/ablations.py",
    )
    rows = list(csv.DictReader((out / "ablations.csv").open()))
    assert len(rows) == 2 and {r["init"] for r in rows} == {
        "random_uniform", "class_labels"
    }
    assert (out / "ablations.png").stat().st_size > 1000
    prompts = sorted((out / "prompts").glob("p2_*.npy"))
    report = json_tail(run_cli(
        "--task", "sst2", "--model", tiny_preset, "--data-dir", assets_dir,
        "--prompts", *prompts, prompts[0], "--limit", 6, "--max-input-length", 32,
        script="examples/ensemble.py",
    ).stdout)
    assert len(report["per_prompt"]) == 3 and report["num_examples"] == 6
    assert 0.0 <= report["ensemble"]["accuracy"] <= 1.0
    run_cli(
        "--model", tiny_preset, "--task", "sst2", "--with-init", "--out",
        tmp_path / "hits.csv", *sorted((out / "prompts").glob("*.npy")),
        script="examples/hit_rates.py",
    )
    hits = list(csv.DictReader((tmp_path / "hits.csv").open()))
    assert len(hits) == 2
    by_name = {(h["prompt_length"], h["init"]): h for h in hits}
    # ClassLabels puts "negative" at position 0 of a 2-long prompt.
    assert float(by_name[("2", "class_labels")]["init_hit_rate"]) >= 0.5
    assert all(0.0 <= float(h["hit_rate"]) <= 1.0 for h in hits)
