"""Rank classification: how likely is each candidate target given each input?

The paper evaluates classification tasks this way: the label is the
verbalizer the model finds most likely, so an off-vocabulary generation can
never count as a wrong class. `score` validates the inputs, tokenizes them
with T5's packing (`keras_prompt.models.t5_inputs`) and runs the model's
compiled `score_tokens` batch by batch; `PromptTunedT5.score` is its entry
point.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from keras import ops

from keras_prompt.models import t5_inputs
from keras_prompt.progress import ProgressBar


def candidate_lists(texts: Sequence[str], candidates) -> list[list[str]]:
    """`candidates` (shared, or one list per text) as one list per text."""
    if not candidates:
        raise ValueError("`candidates` is empty; give at least one string.")
    shared = all(isinstance(c, str) for c in candidates)
    per_example = (
        [list(candidates)] * len(texts) if shared else [list(c) for c in candidates]
    )
    if len(per_example) != len(texts) or len({len(c) for c in per_example}) != 1:
        raise ValueError(
            "`candidates` must be a list of strings, or one equally long list "
            f"per input ({len(texts)} inputs); got {len(per_example)} lists "
            f"of lengths {sorted({len(c) for c in per_example})}."
        )
    blank = [c for row in per_example for c in row if not str(c).strip()]
    if blank:
        # An empty target scores only `</s>`, which nearly always wins.
        raise ValueError(f"`candidates` must be non-blank strings; got {blank[0]!r}.")
    return per_example


def pack(tokenizer, texts: Sequence[str], max_length: int | None, targets=False):
    """`texts` as numpy `(ids, mask)`: encoder inputs, or decoder targets."""
    packing = t5_inputs.pack_targets if targets else t5_inputs.pack_inputs
    ids, mask = packing(
        t5_inputs.ragged_tokens(tokenizer, texts),
        end_id=tokenizer.end_token_id,
        pad_id=tokenizer.pad_token_id,
        max_length=max_length,
    )
    return ids.numpy(), mask.numpy()


def score(model, inputs, candidates, *, prompts=None, batch_size=32, verbose=0):
    """`PromptTunedT5.score`: float32 `(B, C)` summed log-likelihoods."""
    texts = [inputs] if isinstance(inputs, str) else list(inputs)
    if not texts:
        raise ValueError("`inputs` is empty; give at least one string.")
    per_example = candidate_lists(texts, candidates)
    if prompts is not None:
        model.require_prompt("`prompts`")
        prompts = np.asarray(prompts, dtype="float32")
        expected = (len(texts), *model.prompt_shape)
        if prompts.shape != expected:
            raise ValueError(
                f"`prompts` must have shape {expected} (one prompt per "
                f"input); got {prompts.shape}."
            )
    tokenizer = model.require_tokenizer()
    max_input = getattr(model.preprocessor, "encoder_sequence_length", None)
    results = []
    bar = ProgressBar(len(texts), verbose, unit_name="example")
    for start in range(0, len(texts), batch_size):
        stop = start + batch_size
        encoder_ids, encoder_mask = pack(tokenizer, texts[start:stop], max_input)
        batch_candidates = per_example[start:stop]
        shape = (len(batch_candidates), len(batch_candidates[0]), -1)
        flat = [c for row in batch_candidates for c in row]
        decoder_ids, decoder_mask = pack(tokenizer, flat, None, targets=True)
        batch_prompts = None if prompts is None else prompts[start:stop]
        scores = model.score_tokens(
            encoder_ids,
            encoder_mask,
            decoder_ids.reshape(shape),
            decoder_mask.reshape(shape),
            batch_prompts,
        )
        results.append(ops.convert_to_numpy(scores))
        bar.add(len(batch_candidates))
    return np.concatenate(results, axis=0).astype("float32")
