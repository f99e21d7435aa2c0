"""Bad input to `keras-prompt`: one line naming the argument, exit code 2, and
nothing written. docs/bad_inputs.md lists these cases and their messages.

Argument checks run before TensorFlow is imported or a model is loaded, so
for them stderr is exactly the one line.
"""

import numpy as np
import pytest
from conftest import json_tail, run_cli

from keras_prompt.prompts import save_prompt_file

#: Small settings, so that a check that is missing shows up as a failed
#: assertion after a short run rather than a long one.
SMALL = ["--steps", "1", "--batch-size", "2", "--eval-limit", "2"]


@pytest.fixture
def scene(tmp_path, assets_dir):
    """Files a user could point the commands at, in a folder of their own."""
    (tmp_path / "a_file").write_text("not a directory\n")
    save_prompt_file(tmp_path / "good", np.ones((4, 16), "float32"))
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "text.npy").symlink_to(tmp_path / "notes.txt")
    np.save(tmp_path / "empty.npy", np.zeros((0, 16), "float32"))
    np.save(tmp_path / "huge.npy", np.full((4, 16), 1e300))
    np.save(tmp_path / "ints.npy", np.ones((4, 16), "int32"))
    (tmp_path / "base" / "1").mkdir(parents=True)
    return tmp_path


def _cases():
    """(id, argv, expected text of the error line); `{t}`: the scene folder."""
    train = ["train", "--task", "sst2", "--model", "{model}", "--data-dir", "{data}"]
    export = ["export", "--model", "{model}", "--prompt", "sst2={t}/good.npy"]
    return [
        ("train_out_is_a_file", [*train, *SMALL, "--out", "{t}/a_file"],
         "--out {t}/a_file exists and is not a directory"),
        ("train_out_under_a_file", [*train, *SMALL, "--out", "{t}/a_file/run"],
         "{t}/a_file is a file, not a directory"),
        ("train_out_unwritable", [*train, *SMALL, "--out", "/sys/keras-prompt/run"],
         "--out /sys/keras-prompt/run is not writable"),
        ("train_backup_dir_is_a_file",
         [*train, *SMALL, "--out", "{t}/run", "--backup-dir", "{t}/a_file"],
         "--backup-dir {t}/a_file exists and is not a directory"),
        ("train_steps_0", [*train, "--steps", "0", "--out", "{t}/run"],
         "argument --steps: must be >= 1; got 0"),
        ("train_steps_negative", [*train, "--steps", "-1", "--out", "{t}/run"],
         "argument --steps: must be >= 1; got -1"),
        ("train_batch_size_0", [*train, "--batch-size", "0", "--out", "{t}/run"],
         "argument --batch-size: must be >= 1; got 0"),
        ("train_learning_rate_nan",
         [*train, "--learning-rate", "nan", "--out", "{t}/run"],
         "argument --learning-rate: expected a finite number > 0; got 'nan'"),
        ("train_max_input_length_1",
         [*train, *SMALL, "--max-input-length", "1", "--out", "{t}/run"],
         "argument --max-input-length: must be >= 2"),
        ("train_data_dir_missing",
         ["train", "--task", "sst2", "--model", "{model}", "--data-dir", "{t}/nope",
          *SMALL, "--out", "{t}/run"],
         "--data-dir {t}/nope does not exist"),
        ("train_init_text_npy",
         [*train, *SMALL, "--init", "{t}/text.npy", "--out", "{t}/run"],
         "is not a .npy array"),
        ("export_out_is_a_file", [*export, "--out", "{t}/a_file"],
         "--out {t}/a_file exists and is not a directory"),
        ("export_existing_version", [*export, "--out", "{t}/base", "--version", "1"],
         "--version 1: {t}/base/1 already exists"),
        ("export_version_negative", [*export, "--out", "{t}/new", "--version", "-1"],
         "argument --version: must be >= 0; got -1"),
        ("export_missing_prompt",
         ["export", "--model", "{model}", "--prompt", "sst2={t}/nope.npy",
          "--out", "{t}/new"],
         "--prompt: Prompt file {t}/nope.npy does not exist"),
        ("export_int_prompt",
         ["export", "--model", "{model}", "--prompt", "sst2={t}/ints.npy",
          "--out", "{t}/new"],
         "floating-point"),
        ("export_no_prompt", ["export", "--model", "{model}", "--out", "{t}/new"],
         "Give --prompt"),
        ("query_missing_export", ["query", "{t}/nope", "--text", "x"],
         "EXPORT {t}/nope does not exist"),
        ("query_base_dir", ["query", "{t}/base", "--text", "x"],
         "is an export base directory; pass one of its versions, e.g. {t}/base/1"),
        ("eval_text_npy",
         ["eval", "--task", "sst2", "--model", "{model}", "--data-dir", "{data}",
          "--prompt", "{t}/text.npy"],
         "is not a .npy array: the file starts with b'hello"),
        ("inspect_no_positions", ["inspect", "{t}/empty.npy"],
         "at least one position"),
        ("inspect_float32_overflow", ["inspect", "{t}/huge.npy"],
         "beyond float32's range"),
        ("inspect_k_0", ["inspect", "{t}/good.npy", "-k", "0"],
         "argument -k: must be >= 1; got 0"),
    ]  # fmt: skip


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize(
    "argv, expected", [c[1:] for c in _cases()], ids=[c[0] for c in _cases()]
)
def test_bad_argument_is_one_line_and_writes_nothing(
    argv, expected, scene, tiny_preset, assets_dir
):
    def fill(text):
        return text.format(t=scene, model=tiny_preset, data=assets_dir)

    before = _tree(scene)
    result = run_cli(*map(fill, argv), check=False)
    command = argv[0]
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    line = result.stderr.strip()
    assert line.startswith(f"keras-prompt {command}: error: ")
    assert fill(expected) in line
    assert _tree(scene) == before


def test_late_errors_are_one_line(tiny_preset, tmp_path):
    """Errors found by the graph or the model, after TensorFlow started."""
    save_prompt_file(tmp_path / "sst2", np.ones((4, 16), "float32"))
    run_cli(
        "export", "--model", tiny_preset, "--prompt", f"sst2={tmp_path}/sst2.npy",
        "--out", tmp_path / "export", "--max-input-length", 16,
    )  # fmt: skip
    exported = tmp_path / "export" / "1"
    answer = json_tail(
        run_cli("query", exported, "--task", "sst2", "--text", "fine").stdout
    )
    assert answer["label_text"][0] in ("negative", "positive")
    # Unknown task: refused from the export's metadata, before TF loads it.
    bad = run_cli("query", exported, "--task", "mnli", "--text", "x", check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "--task 'mnli' is not in" in bad.stderr and "['sst2']" in bad.stderr
    # Without that metadata the graph refuses it: still one line.
    (exported / "assets.extra" / "prompt_bank.json").unlink()
    bad = run_cli("query", exported, "--task", "mnli", "--text", "x", check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr[-3000:]
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith("keras-prompt query: error: Unknown task(s):")
    assert "mnli" in last and "sst2" in last
    # A prompt file trained on another backbone.
    save_prompt_file(
        tmp_path / "other",
        np.ones((4, 16), "float32"),
        {"backbone": {"fingerprint": "0123456789abcdef", "hidden_dim": 16}},
    )
    bad = run_cli(
        "export", "--model", tiny_preset, "--prompt", f"sst2={tmp_path}/other.npy",
        "--out", tmp_path / "export2", check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr[-3000:]
    last = bad.stderr.strip().splitlines()[-1]
    assert "'backbone.fingerprint' is 0123456789abcdef" in last
    assert not (tmp_path / "export2").exists()
