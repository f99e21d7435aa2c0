"""Reading prompts through their nearest vocabulary tokens (cosine similarity).

Lester et al. (2021, Section 7) interpret learned prompts by the vocabulary
items closest to each prompt position; with class-label init, verbalizers
tend to stay among a position's neighbours.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def nearest_tokens(
    prompt: np.ndarray, embeddings: np.ndarray, k: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Ids and cosine similarities of the `k` closest embedding rows.

    Args:
        prompt: `(prompt_length, hidden_dim)`.
        embeddings: the model's input embedding table `(vocab, hidden_dim)`.
        k: neighbours per position.

    Returns:
        `(ids, similarities)`, each `(prompt_length, k)`, most similar first.
    """
    prompt = np.asarray(prompt, dtype="float32")
    embeddings = np.asarray(embeddings, dtype="float32")
    if prompt.ndim != 2 or embeddings.ndim != 2:
        raise ValueError(
            "nearest_tokens expects a (prompt_length, hidden_dim) prompt and a "
            f"(vocab, hidden_dim) table; got {prompt.shape} and {embeddings.shape}."
        )
    if prompt.shape[1] != embeddings.shape[1]:
        raise ValueError(
            f"Prompt width {prompt.shape[1]} does not match the embedding table's "
            f"width {embeddings.shape[1]} (shapes {prompt.shape} and "
            f"{embeddings.shape})."
        )
    if not 1 <= k <= embeddings.shape[0]:
        raise ValueError(f"`k` must be in [1, {embeddings.shape[0]}]; got {k}.")
    eps = 1e-12
    unit_prompt = prompt / (np.linalg.norm(prompt, axis=1, keepdims=True) + eps)
    unit_table = embeddings / (np.linalg.norm(embeddings, axis=1, keepdims=True) + eps)
    similarity = unit_prompt @ unit_table.T
    top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    top_scores = np.take_along_axis(similarity, top, axis=1)
    order = np.argsort(-top_scores, axis=1)
    ids = np.take_along_axis(top, order, axis=1)
    return ids, np.take_along_axis(top_scores, order, axis=1)


def describe_prompt(
    prompt: np.ndarray,
    embeddings: np.ndarray | None = None,
    id_to_token=None,
    k: int = 5,
) -> dict[str, Any]:
    """Shape, norms and (given a table) each position's nearest tokens."""
    prompt = np.asarray(prompt, dtype="float32")
    norms = np.linalg.norm(prompt, axis=1)
    report: dict[str, Any] = {
        "shape": list(prompt.shape),
        "norm_mean": float(norms.mean()),
        "norm_min": float(norms.min()),
        "norm_max": float(norms.max()),
        "norms": [round(float(n), 4) for n in norms],
    }
    if embeddings is not None:
        ids, scores = nearest_tokens(prompt, embeddings, k=k)
        report["nearest"] = [
            [
                {
                    "id": int(i),
                    "token": id_to_token(int(i)) if id_to_token else None,
                    "cosine": round(float(s), 4),
                }
                for i, s in zip(row_ids, row_scores)
            ]
            for row_ids, row_scores in zip(ids, scores)
        ]
    return report


def verbalizer_hit_rate(
    prompt: np.ndarray,
    embeddings: np.ndarray,
    verbalizer_ids: Sequence[int],
    k: int = 5,
) -> float:
    """Fraction of positions whose top-`k` neighbours include a verbalizer token."""
    ids, _ = nearest_tokens(prompt, embeddings, k=k)
    wanted = set(int(i) for i in verbalizer_ids)
    return float(np.mean([bool(wanted.intersection(row.tolist())) for row in ids]))
