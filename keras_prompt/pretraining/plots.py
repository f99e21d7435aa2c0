"""Held-out perplexity curve of a pretraining run (``metrics.jsonl`` -> PNG).

python -m keras_prompt.pretraining.plots RUN/metrics.jsonl docs/perplexity.png
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The evaluation records of a run, in step order."""
    records = [
        json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()
    ]
    return sorted(records, key=lambda r: r["step"])


def plot_perplexity(
    metrics: str | os.PathLike, out: str | os.PathLike, title: str | None = None
) -> Path:
    """Plots held-out LM-adaptation perplexity against steps (log scale).

    The span-corruption stage is shaded: its objective differs from the
    held-out one, so perplexity there only shows how much the denoising
    pretraining transfers to continuing text.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in read_metrics(metrics) if r.get("heldout_perplexity")]
    if not records:
        raise ValueError(f"{metrics} has no held-out evaluations to plot.")
    steps = [r["step"] for r in records]
    perplexity = [r["heldout_perplexity"] for r in records]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    ax.plot(steps, perplexity, marker="o", markersize=3)
    span = [r["step"] for r in records if r.get("stage") == "span_corruption"]
    if span:
        ax.axvspan(0, max(span), color="0.9", label="span corruption stage")
        ax.legend(loc="upper right")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("held-out perplexity (LM adaptation)")
    ax.set_title(title or "Held-out perplexity")
    ax.grid(True, which="both", alpha=0.3)
    last = records[-1]
    ax.annotate(
        f"{last['heldout_perplexity']:.1f}",
        (last["step"], last["heldout_perplexity"]),
        textcoords="offset points",
        xytext=(-10, 8),
    )
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    return out


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(plot_perplexity(*sys.argv[1:]))
