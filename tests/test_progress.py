"""Progress bars outside `fit`: scoring, evaluation, ensembles, checkpoint
import/export. Keras' Progbar, on stderr (stdout stays JSON), silent at
verbose=0."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import make_tiny_model_and_batch, run_cli

from keras_prompt import ensemble_predict
from keras_prompt.data import Example
from keras_prompt.progress import ProgressBar, resolve_verbose
from keras_prompt.training import evaluate_prompt


def _final_count(stderr: str) -> str | None:
    """The last `done/total` a Progbar printed."""
    counts = re.findall(r"(\d+)/(\d+)", stderr)
    return "/".join(counts[-1]) if counts else None


def test_progress_bar_goes_to_stderr_and_respects_verbose(capsys):
    with ProgressBar(3, verbose=0, label="silent") as bar:
        bar.add(3)
    assert capsys.readouterr() == ("", "")

    for verbose in (1, 2):
        with ProgressBar(5, verbose=verbose, unit_name="example", label="work") as bar:
            bar.add(2)
            bar.add(3)
        out, err = capsys.readouterr()
        assert out == ""
        assert err.startswith("work\n") and _final_count(err) == "5/5"

    # Fewer units than announced still ends on a complete line.
    with ProgressBar(4, verbose=2) as bar:
        bar.add(1)
    assert _final_count(capsys.readouterr().err) == "4/4"


def test_resolve_verbose():
    assert resolve_verbose("auto") == 2  # pytest's stderr is not a terminal
    assert resolve_verbose("1") == 1 and resolve_verbose(0) == 0
    with pytest.raises(ValueError, match="must be 0, 1, 2 or 'auto'"):
        resolve_verbose(3)


def test_score_evaluate_and_ensemble_bars(tokenizer, capsys):
    import keras_hub

    model, _ = make_tiny_model_and_batch()
    model.preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(tokenizer)
    texts = [f"sst2 sentence: film number {i}" for i in range(5)]
    quiet = model.score(texts, ["negative", "positive"], batch_size=2)
    assert capsys.readouterr().err == ""
    loud = model.score(texts, ["negative", "positive"], batch_size=2, verbose=1)
    np.testing.assert_array_equal(quiet, loud)
    assert _final_count(capsys.readouterr().err) == "5/5"

    examples = [Example(t, "negative", 0) for t in texts]
    evaluate_prompt(model, "sst2", examples, batch_size=2, verbose=2)
    assert _final_count(capsys.readouterr().err) == "5/5"

    prompts = np.stack([model.get_prompt(), model.get_prompt() * 0.5])
    ensemble_predict(model, prompts, texts, ["negative", "positive"], batch_size=2,
                     verbose=2)
    out, err = capsys.readouterr()
    assert out == "" and _final_count(err) == "5/5"


def test_cli_eval_and_checkpoint_commands_show_progress(tiny_preset, assets_dir,
                                                        tmp_path):
    result = run_cli(
        "eval", "--task", "sst2", "--model", tiny_preset, "--data-dir", assets_dir,
        "--limit", 6, "--batch-size", 4, "--max-input-length", 32,
        "--verbose", 2,
    )
    assert json.loads(result.stdout)["num_examples"] == 6  # stdout: JSON only
    assert _final_count(result.stderr) == "6/6"
    silent = run_cli(
        "eval", "--task", "sst2", "--model", tiny_preset, "--data-dir", assets_dir,
        "--limit", 6, "--max-input-length", 32, "--verbose", 0,
    )
    assert _final_count(silent.stderr) is None

    exported = run_cli("export-hf", tiny_preset, "--out", tmp_path / "hf",
                       "--verbose", 1)
    assert f"writing {tmp_path / 'hf'}" in exported.stderr
    total = _final_count(exported.stderr)
    assert total is not None and total.split("/")[0] == total.split("/")[1]

    imported = run_cli("import-hf", tmp_path / "hf", "--out", tmp_path / "back",
                       "--verbose", 2)
    assert f"importing {tmp_path / 'hf'}" in imported.stderr
    assert _final_count(imported.stderr) == total  # one tensor each way
