"""Backbone health figures, `keras-prompt check-backbone` and `train`'s warning."""

from __future__ import annotations

import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from conftest import json_tail, run_cli

from keras_prompt.health import (
    health_warnings,
    shuffle_encoder_inputs,
    text_rows,
)
from keras_prompt.models.geometries import geometry_config


def test_shuffled_encoder_inputs_come_from_another_row():
    _, x = text_rows([[5, 6, 7, 8], [9, 10, 11, 12, 13, 14], [15, 16, 17, 18]])
    shuffled, _, _ = shuffle_encoder_inputs(x, None, None)
    for key in ("encoder_token_ids", "encoder_segment_ids"):
        np.testing.assert_array_equal(shuffled[key], np.roll(x[key], 1, axis=0))
    # The decoder side (what the loss is measured on) is untouched.
    np.testing.assert_array_equal(shuffled["decoder_token_ids"], x["decoder_token_ids"])


def test_text_rows_split_each_text_in_the_middle():
    dataset, x = text_rows([[5, 6, 7, 8, 9], [10, 11], [12, 13, 14, 15]])
    # The 2-token text is skipped; prefix + </s> | rest + </s>.
    np.testing.assert_array_equal(x["encoder_token_ids"], [[5, 6, 1], [12, 13, 1]])
    np.testing.assert_array_equal(
        x["decoder_token_ids"], [[0, 7, 8, 9], [0, 14, 15, 0]]
    )
    _, targets, weights = next(iter(dataset))
    np.testing.assert_array_equal(targets, [[7, 8, 9, 1], [14, 15, 1, 0]])
    np.testing.assert_array_equal(weights, [[1, 1, 1, 1], [1, 1, 1, 0]])
    with pytest.raises(ValueError, match="at least 2 texts"):
        text_rows([[5, 6, 7, 8]])


def test_warnings_name_each_failing_figure():
    healthy = dict(
        embedding_collapse=0.006,
        encoder_similarity=0.3,
        lm_adaptation_loss=4.0,
        uniform_loss=10.38,
        encoder_use=1.2,
    )
    assert health_warnings(healthy) == []
    sick = dict(
        embedding_collapse=0.999,
        encoder_similarity=1.0,
        lm_adaptation_loss=10.3,
        uniform_loss=10.38,
        encoder_use=0.0,
    )
    messages = " | ".join(health_warnings(sick))
    for figure in ("0.999", "1.000", "10.30", "0.000"):
        assert figure in messages


@pytest.fixture(scope="module")
def collapsed_preset(tmp_path_factory, spiece_path):
    """A preset exactly as keras-hub initialises a T5 (collapsed embeddings)."""
    tf.keras.utils.set_random_seed(0)
    out = tmp_path_factory.mktemp("collapsed") / "preset"
    backbone = keras_hub.models.T5Backbone(**geometry_config("t5_1_1_tiny"))
    backbone.save_to_preset(out)
    keras_hub.models.T5Tokenizer(proto=str(spiece_path)).save_to_preset(out)
    return out


def test_check_backbone_reports_collapse(collapsed_preset, assets_dir):
    result = run_cli(
        "check-backbone",
        collapsed_preset,
        "--task",
        "sst2",
        "--data-dir",
        assets_dir,
        "--limit",
        "64",
        check=False,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    report = json_tail(result.stdout)
    assert report["embedding_collapse"] > 0.95
    assert report["encoder_similarity"] > 0.98
    assert report["num_texts"] == 64
    assert 0 < report["span_corruption_loss"] < 20
    assert "check-backbone: WARNING: token embeddings are collapsed" in result.stderr


def test_check_backbone_on_a_random_preset_says_untrained(tiny_preset, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text(
        "the cat sat on the mat and looked out of the window.\n\n"
        "a gorgeous, witty, seductive movie that never lets you go.\n"
        "the plot is nothing but boilerplate cliches from start to finish.\n"
    )
    result = run_cli("check-backbone", tiny_preset, "--text-file", texts, check=False)
    assert result.returncode == 1
    report = json_tail(result.stdout)
    assert report["embedding_collapse"] < 0.02 and report["num_texts"] == 3
    assert any("looks untrained" in w for w in report["warnings"])


def test_check_backbone_bad_inputs_are_one_line(tmp_path, tiny_preset):
    not_a_preset = tmp_path / "empty"
    not_a_preset.mkdir()
    result = run_cli("check-backbone", not_a_preset, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("keras-prompt check-backbone: error: Model directory")
    assert "has no config.json" in last
    binary = tmp_path / "bad.txt"
    binary.write_bytes(b"fine line\nbad \xff byte\n")
    result = run_cli("check-backbone", tiny_preset, "--text-file", binary, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith(
        f"--text-file {binary}, line 2: not UTF-8 text (invalid start byte at byte 4)."
    )


def test_train_warns_on_a_collapsed_backbone(collapsed_preset, assets_dir, tmp_path):
    result = run_cli(
        "train",
        "--task",
        "sst2",
        "--model",
        collapsed_preset,
        "--data-dir",
        assets_dir,
        "--prompt-length",
        "2",
        "--steps",
        "1",
        "--batch-size",
        "4",
        "--max-input-length",
        "16",
        "--eval-limit",
        "8",
        "--out",
        tmp_path / "run",
        "--verbose",
        "0",
    )
    assert "train: WARNING: --model" in result.stderr
    assert "token embeddings are collapsed (mean-row norm / row norm" in result.stderr
    metrics = json_tail(result.stdout)
    assert metrics["backbone_health"]["embedding_collapse"] > 0.95


def test_embedded_default_preset_is_healthy(assets_dir):
    """The shipped checkpoint's encoder sees its input (the old one did not)."""
    from keras_prompt.data import get_task, load_examples
    from keras_prompt.health import health_report
    from keras_prompt.presets import default_preset_path

    path = str(default_preset_path())
    backbone = keras_hub.models.T5Backbone.from_preset(path)
    tokenizer = keras_hub.models.T5Tokenizer.from_preset(path)
    rows = load_examples(get_task("sst2"), "validation", data_dir=assets_dir)[:64]
    report = health_report(backbone, tokenizer, [row.inputs for row in rows])
    assert report["warnings"] == []
    assert report["embedding_collapse"] < 0.1
    assert report["encoder_similarity"] < 0.5
    assert report["encoder_use"] > 0.3
