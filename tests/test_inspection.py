import numpy as np
import pytest

from keras_prompt.inspection import describe_prompt, nearest_tokens, verbalizer_hit_rate


def test_nearest_tokens_by_cosine():
    table = np.array([[1, 0], [0, 1], [1, 1], [0, -1]], "float32")
    prompt = np.array([[2, 0.1], [0, -3]], "float32")
    ids, scores = nearest_tokens(prompt, table, k=2)
    assert ids[0].tolist() == [0, 2]
    assert ids[1, 0] == 3 and scores[0, 0] == pytest.approx(0.99875, abs=1e-4)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_width_mismatch_and_bad_k():
    with pytest.raises(ValueError, match="width 3"):
        nearest_tokens(np.ones((2, 3)), np.ones((5, 4)))
    with pytest.raises(ValueError, match="`k`"):
        nearest_tokens(np.ones((2, 4)), np.ones((5, 4)), k=9)


def test_describe_and_hit_rate():
    table = np.eye(6, dtype="float32")
    prompt = table[[2, 4, 5]] + 0.01
    report = describe_prompt(prompt, table, id_to_token=lambda i: f"t{i}", k=1)
    assert report["shape"] == [3, 6]
    assert [n[0]["token"] for n in report["nearest"]] == ["t2", "t4", "t5"]
    assert verbalizer_hit_rate(prompt, table, [4], k=1) == pytest.approx(1 / 3)
