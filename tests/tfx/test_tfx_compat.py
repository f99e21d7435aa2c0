"""The keras-hub compatibility layer that lets PromptTunedT5 run on the TFX stack.

keras-hub < 0.32 (all that installs beside TFX 1.16) has no `T5Seq2SeqLM`;
`keras_prompt.models.t5_seq2seq_lm` backports it with cache-less
decoding. These checks hold for keras-hub's own class too, so they run on
both stacks: greedy generation must pick, at every step, the argmax of a plain
teacher-forced forward pass, and the preprocessor must pack like T5.
"""

from __future__ import annotations

import keras_hub
import numpy as np
import pytest

from keras_prompt import PromptTunedT5
from keras_prompt.models import t5_seq2seq_lm as compat


@pytest.fixture(scope="module")
def model(tiny_preset):
    model = PromptTunedT5.from_preset(
        str(tiny_preset),
        prompt_length=3,
        encoder_sequence_length=16,
        decoder_sequence_length=6,
    )
    model.compile(sampler="greedy")
    return model


def test_backport_is_used_exactly_when_keras_hub_lacks_the_class():
    native = hasattr(keras_hub.models, "T5Seq2SeqLM")
    assert compat.NATIVE_T5_SEQ2SEQ_LM == native
    if native:
        assert compat.T5Seq2SeqLM is keras_hub.models.T5Seq2SeqLM
    else:
        assert compat.T5Seq2SeqLM.__module__ == compat.__name__


def test_greedy_generation_matches_teacher_forced_argmax(model):
    tokenizer = model.preprocessor.tokenizer
    texts = ["sst2 sentence: a gem of a film", "rte sentence1: A. sentence2: B."]
    rows = [list(np.asarray(tokenizer(t))) + [1] for t in texts]
    width = max(len(r) for r in rows)
    encoder_ids = np.zeros((2, width), "int32")
    encoder_mask = np.zeros((2, width), "int32")
    for i, row in enumerate(rows):
        encoder_ids[i, : len(row)] = row
        encoder_mask[i, : len(row)] = 1
    length = 6
    decoder_mask = np.zeros((2, length), "bool")
    decoder_mask[:, 0] = True  # only the <pad> start token is given
    generated = model.generate_step(
        {
            "encoder_token_ids": encoder_ids,
            "encoder_padding_mask": encoder_mask,
            "decoder_token_ids": np.zeros((2, length), "int32"),
            "decoder_padding_mask": decoder_mask,
        },
        stop_token_ids=None,
    )
    ids = np.asarray(generated["decoder_token_ids"])
    logits = np.asarray(
        model(
            {
                "encoder_token_ids": encoder_ids,
                "encoder_padding_mask": encoder_mask,
                "decoder_token_ids": ids,
                "decoder_padding_mask": np.ones_like(ids),
            }
        )
    )
    np.testing.assert_array_equal(ids[:, 1:], logits[:, :-1].argmax(-1))


def test_preprocessor_packs_like_t5(model):
    preprocessor = compat.T5Seq2SeqLMPreprocessor(
        model.preprocessor.tokenizer,
        encoder_sequence_length=8,
        decoder_sequence_length=5,
    )
    x, y, weights = preprocessor(
        {"encoder_text": ["a gem"], "decoder_text": ["positive"]}
    )
    encoder = np.asarray(x["encoder_token_ids"])[0]
    decoder = np.asarray(x["decoder_token_ids"])[0]
    tokens = list(np.asarray(model.preprocessor.tokenizer("a gem")))
    target = list(np.asarray(model.preprocessor.tokenizer("positive")))
    assert list(encoder[: len(tokens) + 1]) == [*tokens, 1]
    assert decoder[0] == 0 and list(decoder[1 : len(target) + 1]) == target
    assert list(np.asarray(y)[0][: len(target) + 1]) == [*target, 1]
    assert np.asarray(weights)[0][: len(target) + 1].all()
