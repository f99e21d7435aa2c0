"""Prompt ensembling: `ensemble_predict`, `majority_vote`, `ensemble_report`."""

import keras_hub
import numpy as np
import pytest
from conftest import make_tiny_backbone

from keras_prompt import (
    PromptTunedT5,
    ensemble_predict,
    ensemble_report,
    majority_vote,
)

VERBALIZERS = ["negative", "positive"]
TEXTS = ["sst2 sentence: a fine film", "sst2 sentence: dull", "sst2 sentence: ok"]


@pytest.fixture
def model(tokenizer):
    preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=32, decoder_sequence_length=8
    )
    return PromptTunedT5(make_tiny_backbone(), preprocessor, prompt_length=3)


def test_majority_vote_counts_and_ties():
    labels = np.array([[0, 1, 1], [2, 2, 0], [0, 1, 2], [1, 0, 0]])
    winners, votes = majority_vote(labels, num_labels=3)
    assert winners.tolist() == [1, 2, 0, 0]  # a 3-way tie -> smallest index
    assert votes.tolist() == [[1, 2, 0], [1, 0, 2], [1, 1, 1], [2, 1, 0]]
    # With scores, a tie goes to the highest mean log-likelihood.
    scores = np.zeros((4, 3, 3))
    scores[2, :, 2] = 5.0
    winners, _ = majority_vote(labels, scores)
    assert winners.tolist() == [1, 2, 2, 0]


def test_majority_vote_rejects_bad_input():
    with pytest.raises(ValueError, match="prompt_labels"):
        majority_vote(np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        majority_vote(np.array([[0, 3]]), num_labels=2)
    with pytest.raises(ValueError, match="scores"):
        majority_vote(np.array([[0, 1]]), np.zeros((1, 3, 2)))


def test_ensemble_of_identical_prompts_is_the_single_prompt(model):
    prompt = model.get_prompt()
    single = model.score(TEXTS, VERBALIZERS)
    result = ensemble_predict(model, [prompt] * 4, TEXTS, VERBALIZERS, batch_size=2)
    assert result.scores.shape == (3, 4, 2)
    for k in range(4):
        np.testing.assert_allclose(result.scores[:, k], single, atol=1e-4)
    np.testing.assert_array_equal(result.labels, np.argmax(single, axis=1))
    assert (result.votes.max(axis=1) == 4).all()


def test_ensemble_runs_each_prompt_as_its_own_model(model, tmp_path):
    rng = np.random.default_rng(0)
    prompts = rng.normal(0, 1.0, size=(3, 3, 16)).astype("float32")
    expected = []
    for prompt in prompts:
        model.set_prompt(prompt)
        expected.append(model.score(TEXTS, VERBALIZERS))
    expected = np.stack(expected, axis=1)  # (N, K, C)
    np.save(tmp_path / "p0.npy", prompts[0])
    members = [tmp_path / "p0.npy", prompts[1], prompts[2]]  # files and arrays
    result = ensemble_predict(model, members, TEXTS, VERBALIZERS, batch_size=8)
    np.testing.assert_allclose(result.scores, expected, atol=1e-4)
    np.testing.assert_array_equal(result.prompt_labels, expected.argmax(axis=-1))
    winners, _ = majority_vote(expected.argmax(axis=-1), expected)
    np.testing.assert_array_equal(result.labels, winners)


def test_ensemble_predict_validates(model):
    with pytest.raises(ValueError, match=r"prompt shape \(3, 16\)"):
        ensemble_predict(model, [np.zeros((4, 16))], TEXTS, VERBALIZERS)
    with pytest.raises(ValueError, match="`prompts` is empty"):
        ensemble_predict(model, [], TEXTS, VERBALIZERS)
    with pytest.raises(ValueError, match="`texts` is empty"):
        ensemble_predict(model, [model.get_prompt()], [], VERBALIZERS)


def test_ensemble_report_table3_numbers():
    from keras_prompt.ensemble import EnsemblePrediction

    prompt_labels = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0]])
    labels, votes = majority_vote(prompt_labels, num_labels=2)
    prediction = EnsemblePrediction(labels, prompt_labels, votes, np.zeros((4, 3, 2)))
    gold = np.array([1, 0, 1, 1])
    report = ensemble_report(prediction, gold)
    assert [m["accuracy"] for m in report["per_prompt"]] == [0.75, 0.25, 0.5]
    assert report["average"]["accuracy"] == pytest.approx(0.5)
    assert report["best"]["accuracy"] == 0.75
    assert report["ensemble"]["accuracy"] == 0.75
    with_f1 = ensemble_report(prediction, gold, task="mrpc")
    assert "f1" in with_f1["ensemble"]
