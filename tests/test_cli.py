"""The `keras-prompt` command line, end to end in real subprocesses."""

import json

import numpy as np
import pytest
from conftest import json_tail, run_cli

from keras_prompt import cli


@pytest.fixture(scope="module")
def trained_run(tiny_preset, assets_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = run_cli(
        "train", "--task", "sst2", "--model", tiny_preset, "--data-dir", assets_dir,
        "--steps", 4, "--batch-size", 8, "--prompt-length", 4, "--init",
        "class_labels", "--eval-limit", 24, "--max-input-length", 64,
        "--out", out, "--verbose", 2,
    )
    return out, json_tail(result.stdout)


def test_train_writes_prompt_and_metrics(trained_run):
    out, summary = trained_run
    assert summary["eval"]["num_examples"] == 24
    assert 0.0 <= summary["eval"]["accuracy"] <= 1.0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 4
    prompt = np.load(out / "sst2.npy")
    assert prompt.shape == (4, 16)
    metadata = json.loads((out / "sst2.json").read_text())
    assert metadata["task"] == "sst2" and metadata["steps"] == 4
    assert metadata["verbalizers"] == ["negative", "positive"]


def test_eval_reproduces_train_accuracy(trained_run, tiny_preset, assets_dir):
    out, summary = trained_run
    evaluated = json_tail(
        run_cli(
            "eval", "--task", "sst2", "--model", tiny_preset, "--data-dir",
            assets_dir, "--prompt", out / "sst2.npy", "--limit", 24,
            "--max-input-length", 64,
        ).stdout
    )
    # Same prompt, same examples, same rank classification -> same accuracy.
    assert evaluated["accuracy"] == pytest.approx(summary["eval"]["accuracy"])


def test_inspect_with_model(trained_run, tiny_preset):
    out, _ = trained_run
    report = json_tail(
        run_cli("inspect", out / "sst2.npy", "--model", tiny_preset, "--json").stdout
    )
    assert report["shape"] == [4, 16]
    assert len(report["nearest"]) == 4 and len(report["nearest"][0]) == 5
    assert all(isinstance(n["token"], str) for n in report["nearest"][0])


def test_export_then_query(trained_run, tiny_preset, tmp_path):
    out, _ = trained_run
    info = json_tail(
        run_cli(
            "export", "--model", tiny_preset, "--prompt", f"sst2={out / 'sst2.npy'}",
            "--out", tmp_path / "export", "--max-input-length", 64,
        ).stdout
    )
    assert info["tasks"] == ["sst2"] and (tmp_path / "export" / "1").is_dir()
    answer = json_tail(
        run_cli(
            "query", tmp_path / "export" / "1", "--task", "sst2",
            "--text", "a fine film", "--text", "boring",
        ).stdout
    )
    assert answer["label_text"][0] in ("negative", "positive")
    assert len(answer["label"]) == 2
    bad = run_cli(
        "query", tmp_path / "export" / "1", "--signature", "nope", "--text", "x",
        check=False,
    )
    assert bad.returncode == 2 and "no signature 'nope'" in bad.stderr


def test_inspect_released_prompt_with_embedding_table(assets_dir, tmp_path, capsys):
    table = np.random.default_rng(0).normal(size=(300, 768)).astype("float32")
    np.save(tmp_path / "table.npy", table)
    prompt = assets_dir / "prompts" / "t5_1_1_lm100k_base" / "sst2.npy"
    code = cli.main(
        [
            "inspect",
            str(prompt),
            "--embeddings",
            str(tmp_path / "table.npy"),
            "--vocab",
            str(assets_dir / "t5" / "spiece.model"),
            "-k",
            "3",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert "shape (100, 768)" in lines[0] and len(lines) == 101
    assert "nearest:" in lines[1]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--task", "nope"], "Unknown task"),
        (["--task", "sst2", "--data-dir", "{tmp}"], "train.tsv"),
        (["--task", "sst2", "--prompt-length", "0"], "--prompt-length 0"),
        (["--task", "sst2", "--init", "bogus"], "--init"),
    ],
)
def test_train_bad_input_is_a_clear_error(
    argv, message, tiny_preset, assets_dir, tmp_path, capsys
):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    defaults = ["--data-dir", str(assets_dir)] if "--data-dir" not in argv else []
    code = cli.main(
        [
            "train",
            "--model",
            str(tiny_preset),
            "--out",
            str(tmp_path / "o"),
            "--steps",
            "1",
            *defaults,
            *argv,
        ]
    )
    assert code == 2
    assert message.lower() in capsys.readouterr().err.lower()
    assert not (tmp_path / "o" / "sst2.npy").exists()


def test_make_preset_refuses_unknown_geometry_and_nonempty_out(
    tmp_path, spiece_path, capsys
):
    assert (
        cli.main(
            [
                "make-preset",
                "--geometry",
                "t5_huge",
                "--vocab",
                str(spiece_path),
                "--out",
                str(tmp_path / "p"),
            ]
        )
        == 2
    )
    assert "t5_huge" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    code = cli.main(
        [
            "make-preset",
            "--geometry",
            "t5_1_1_tiny",
            "--vocab",
            str(spiece_path),
            "--out",
            str(tmp_path / "full"),
        ]
    )
    assert code == 2 and "not empty" in capsys.readouterr().err
    assert (tmp_path / "full" / "x").read_text() == "keep me"
