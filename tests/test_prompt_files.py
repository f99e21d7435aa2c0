import json
import pickle

import numpy as np
import pytest

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
