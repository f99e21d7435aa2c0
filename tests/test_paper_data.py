"""roc_auc, load_examples(format_as=...) and evaluate_prompt's extra outputs."""

import keras_hub
import numpy as np
import pytest
from conftest import make_tiny_backbone

from keras_prompt import PromptTunedT5
from keras_prompt.data import load_examples, roc_auc
from keras_prompt.training import evaluate_prompt


def _brute_force_auc(scores, labels):
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_roc_auc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=40).astype(float)  # many ties
    labels = rng.integers(0, 2, size=40)
    assert roc_auc(scores, labels) == pytest.approx(_brute_force_auc(scores, labels))
    assert roc_auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert roc_auc([4, 3, 2, 1], [0, 0, 1, 1]) == 0.0
    assert roc_auc([7, 7, 7, 7], [0, 1, 0, 1]) == 0.5


def test_roc_auc_errors():
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="one score per gold label"):
        roc_auc([0.1, 0.2, 0.3], [0, 1])


def test_format_as_rephrases_mrpc_as_qqp(assets_dir):
    mrpc = load_examples("mrpc", "validation", data_dir=assets_dir)
    as_qqp = load_examples("mrpc", "validation", data_dir=assets_dir, format_as="qqp")
    assert len(as_qqp) == len(mrpc) == 408
    assert [e.label for e in as_qqp] == [e.label for e in mrpc]
    first, original = as_qqp[0], mrpc[0]
    assert first.inputs.startswith("qqp question1: ")
    s1, s2 = original.inputs[len("mrpc sentence1: "):].split(" sentence2: ")
    assert first.inputs == f"qqp question1: {s1} question2: {s2}"
    assert first.targets == ("duplicate" if first.label else "not_duplicate")
    with pytest.raises(ValueError, match="format_as"):
        load_examples("mrpc", "validation", data_dir=assets_dir, format_as="cb")


def test_evaluate_prompt_reports_auc_counts_and_takes_verbalizers(tokenizer):
    from keras_prompt.data import Example

    preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=32, decoder_sequence_length=8
    )
    model = PromptTunedT5(make_tiny_backbone(), preprocessor, prompt_length=2)
    examples = [
        Example(f"mrpc sentence1: a{i} sentence2: b{i}", "equivalent", i % 2)
        for i in range(6)
    ]
    metrics = evaluate_prompt(model, "mrpc", examples)
    scores = model.score([e.inputs for e in examples], ["not_equivalent", "equivalent"])
    margin = scores[:, 1] - scores[:, 0]
    assert metrics["auc"] == pytest.approx(roc_auc(margin, [e.label for e in examples]))
    assert sum(metrics["predicted_counts"]) == 6 and "f1" in metrics
    other = evaluate_prompt(
        model, "mrpc", examples, verbalizers=["not_duplicate", "duplicate"]
    )
    scores = model.score([e.inputs for e in examples], ["not_duplicate", "duplicate"])
    assert other["accuracy"] == pytest.approx(
        np.mean(scores.argmax(1) == np.array([e.label for e in examples]))
    )
    with pytest.raises(ValueError, match="`verbalizers` must hold 2"):
        evaluate_prompt(model, "mrpc", examples, verbalizers=["x"])
