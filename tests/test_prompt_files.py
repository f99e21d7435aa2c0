import fcntl
import json
import os
import pickle
import signal
import stat
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT

from keras_prompt.prompts import (
    load_prompt_file,
    prompt_paths,
    read_prompt_array,
    save_prompt_file,
)


def test_save_and_load_round_trip(tmp_path):
    prompt = np.random.default_rng(0).normal(size=(5, 8)).astype("float32")
    path = save_prompt_file(tmp_path / "sst2", prompt, {"task": "sst2"})
    assert path == tmp_path / "sst2.npy"
    values, metadata = load_prompt_file(tmp_path / "sst2.npy")
    np.testing.assert_array_equal(values, prompt)
    assert metadata["task"] == "sst2"
    assert metadata["prompt_length"] == 5 and metadata["hidden_dim"] == 8
    # No temp files are left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sst2.json", "sst2.npy"]


def test_pickled_npy_is_refused(tmp_path):
    path = tmp_path / "evil.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickled"):
        read_prompt_array(path)


def test_truncated_npy_is_refused(tmp_path):
    path = tmp_path / "cut.npy"
    np.save(path, np.ones((10, 16), "float32"))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="cut.npy"):
        read_prompt_array(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        read_prompt_array(tmp_path / "nope.npy")


def test_failed_save_keeps_previous_prompt(tmp_path):
    good = np.ones((2, 3), "float32")
    save_prompt_file(tmp_path / "p", good)
    with pytest.raises(ValueError, match="NaN"):
        save_prompt_file(tmp_path / "p", np.full((2, 3), np.nan))
    with pytest.raises(TypeError):
        # Metadata that cannot be serialized fails before either file is
        # replaced.
        save_prompt_file(tmp_path / "p", good, {"x": _Unprintable()})
    values, _ = load_prompt_file(tmp_path / "p")
    np.testing.assert_array_equal(values, good)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json", "p.npy"]


class _Unprintable:
    def __str__(self):
        raise TypeError("cannot print")


def test_invalid_metadata_json(tmp_path):
    save_prompt_file(tmp_path / "p", np.ones((2, 3)))
    prompt_paths(tmp_path / "p")[1].write_text("{not json")
    with pytest.raises(ValueError, match="p.json"):
        load_prompt_file(tmp_path / "p")


def test_released_paper_prompts_load(assets_dir):
    for task in ("sst2", "mrpc", "rte"):
        values = read_prompt_array(
            assets_dir / "prompts" / "t5_1_1_lm100k_base" / f"{task}.npy"
        )
        assert values.shape == (100, 768) and values.dtype == np.float32


def test_metadata_is_json(tmp_path):
    save_prompt_file(tmp_path / "p", np.ones((2, 3)), {"steps": 5})
    metadata = json.loads((tmp_path / "p.json").read_text())
    assert metadata["steps"] == 5 and metadata["format_version"] == 1
    assert pickle.dumps(metadata)


# ----------------------------------------------------------------------
# The pair is saved as one unit.
# ----------------------------------------------------------------------
_SAVE_AND_DIE = """
import os, signal, sys
import numpy as np
from keras_prompt.prompts import save_prompt_file

path, die_at = sys.argv[1], int(sys.argv[2])
calls = 0


def counted(real):
    def call(*args, **kwargs):
        global calls
        calls += 1
        if calls == die_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    return call


# Every durable step of a save: fsyncs and renames.
os.fsync, os.replace = counted(os.fsync), counted(os.replace)
save_prompt_file(path, np.full((2, 3), 2.0, "float32"), {"task": "new"})
print(calls)
"""


def _save_in_child(path, die_at):
    return subprocess.run(
        [sys.executable, "-c", _SAVE_AND_DIE, str(path), str(die_at)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )


def test_a_save_killed_at_any_step_leaves_the_old_or_the_new_pair(tmp_path):
    steps = int(_save_in_child(tmp_path / "probe" / "p", 0).stdout)
    assert steps >= 4
    seen = set()
    for die_at in range(1, steps + 1):
        folder = tmp_path / f"kill{die_at}"
        save_prompt_file(folder / "p", np.ones((2, 3)), {"task": "old"})
        killed = _save_in_child(folder / "p", die_at)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        values, metadata = load_prompt_file(folder / "p")
        pair = (float(values[0, 0]), metadata["task"])
        assert pair in ((1.0, "old"), (2.0, "new")), (die_at, pair)
        seen.add(pair)
        # The next save finishes or discards what the killed one left.
        save_prompt_file(folder / "p", np.full((2, 3), 3.0), {"task": "next"})
        assert sorted(p.name for p in folder.iterdir()) == ["p.json", "p.npy"]
        values, metadata = load_prompt_file(folder / "p")
        assert values[0, 0] == 3.0 and metadata["task"] == "next"
    assert seen == {(1.0, "old"), (2.0, "new")}


def test_an_array_from_another_save_is_refused(tmp_path):
    save_prompt_file(tmp_path / "p", np.ones((2, 3)), {"task": "a"})
    np.save(tmp_path / "p.npy", np.zeros((2, 3), "float32"))
    with pytest.raises(
        ValueError, match=r"p\.npy does not match its metadata .*p\.json"
    ):
        load_prompt_file(tmp_path / "p")
    # Without a recorded hash (files of older versions), nothing is checked.
    metadata = json.loads((tmp_path / "p.json").read_text())
    del metadata["array_sha256"]
    (tmp_path / "p.json").write_text(json.dumps(metadata))
    assert load_prompt_file(tmp_path / "p")[1]["task"] == "a"


def test_a_live_writers_temporary_is_not_removed(tmp_path):
    save_prompt_file(tmp_path / "p", np.ones((2, 3)))
    stale = tmp_path / ".p.npy.dead.tmp"
    stale.write_bytes(b"left by a killed save")
    live = tmp_path / ".p.json.live.tmp"
    live.write_bytes(b"another process is writing this")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        save_prompt_file(tmp_path / "p", np.zeros((2, 3)))
        assert live.exists() and not stale.exists()


def test_prompt_files_get_the_permissions_of_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        path = save_prompt_file(tmp_path / "p", np.ones((2, 3)))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "p.json").stat().st_mode) == 0o640


# ----------------------------------------------------------------------
# The metadata is checked against a schema and against its array.
# ----------------------------------------------------------------------
def _edit_metadata(folder, edit):
    save_prompt_file(
        folder / "p",
        np.ones((2, 3)),
        {"task": "sst2", "verbalizers": ["no", "yes"], "backbone": {"hidden_dim": 3}},
    )
    path = folder / "p.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    return folder / "p.npy"


def _set(key, value):
    def edit(metadata):
        target = metadata
        *parents, last = key.split(".")
        for parent in parents:
            target = target[parent]
        target[last] = value
        return metadata

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set("verbalizers", "neg"), r"'verbalizers' must be a list .*string 'neg'"),
        (_set("verbalizers", ["a", ""]), r"'verbalizers' must be a list"),
        (_set("verbalizers", ["a", "a"]), r"'verbalizers' must be a list of distinct"),
        (lambda m: [m], r"must be a JSON object; got a list"),
        (_set("backbone", "t5_small"), r"'backbone' must be an object"),
        (_set("backbone.hidden_dim", 512), r"'backbone.hidden_dim' is 512.*\(2, 3\)"),
        (_set("backbone.fingerprint", 7), r"'backbone.fingerprint' must be a string"),
        (_set("prompt_length", 100), r"'prompt_length' is 100.*\(2, 3\)"),
        (_set("hidden_dim", 768), r"'hidden_dim' is 768.*\(2, 3\)"),
        (_set("hidden_dim", "3"), r"'hidden_dim' must be an integer"),
        (_set("task", ["sst2"]), r"'task' must be a string"),
        (_set("format_version", 2), r"'format_version' is 2"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_metadata_is_refused_naming_the_field(tmp_path, edit, message):
    path = _edit_metadata(tmp_path, edit)
    with pytest.raises(ValueError, match=message) as refused:
        load_prompt_file(path)
    assert "p.json" in str(refused.value)


def test_bad_metadata_is_refused_when_saving(tmp_path):
    with pytest.raises(ValueError, match="'verbalizers'"):
        save_prompt_file(tmp_path / "p", np.ones((2, 3)), {"verbalizers": "neg"})
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------
# The array: format, dtype, values.
# ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "array, message",
    [
        (np.ones((2, 3), "int32"), r"floating-point .*got dtype int32"),
        (np.ones((2, 3), "complex64"), r"floating-point .*got dtype complex64"),
        (np.ones((2, 3), bool), r"floating-point .*got dtype bool"),
        (np.full((2, 3), 1e300), r"beyond float32's range \(largest magnitude 1e\+300"),
        (np.zeros((0, 16), "float32"), r"at least one position.*\(0, 16\)"),
        (np.zeros((4, 0), "float32"), r"at least one position.*\(4, 0\)"),
    ],
    ids=["int32", "complex64", "bool", "float64_overflow", "no_positions", "no_width"],
)
def test_arrays_that_are_not_prompts_are_refused(tmp_path, array, message):
    np.save(tmp_path / "p.npy", array)
    with pytest.raises(ValueError, match=message) as refused:
        read_prompt_array(tmp_path / "p.npy")
    assert "p.npy" in str(refused.value)


def test_float16_and_float64_prompts_load_as_float32(tmp_path):
    for dtype in ("float16", "float64"):
        np.save(tmp_path / f"{dtype}.npy", np.full((2, 3), 0.5, dtype))
        values = read_prompt_array(tmp_path / f"{dtype}.npy")
        assert values.dtype == np.float32 and values[0, 0] == 0.5


def test_a_link_to_a_text_file_is_named_for_what_it_is(tmp_path):
    (tmp_path / "notes.txt").write_text("hello, not an array\n")
    (tmp_path / "p.npy").symlink_to(tmp_path / "notes.txt")
    with pytest.raises(ValueError) as refused:
        read_prompt_array(tmp_path / "p.npy")
    message = str(refused.value)
    assert "is not a .npy array" in message and "starts with b'hello" in message
    assert "notes.txt" in message and "pickle" not in message
