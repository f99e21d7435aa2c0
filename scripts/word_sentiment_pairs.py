#!/usr/bin/env python
"""Write lexicon-based sentiment pairs from VADER, for lm-adapt.

Supervised tasks for T5 1.0-style multi-task pretraining (`keras-prompt
lm-adapt --supervised-files`), from the VADER lexicon and rule set (Hutto &
Gilbert 2014, MIT licence; the `vaderSentiment` package on PyPI):

- ``word sentiment: <word>`` -> ``positive`` / ``negative``: one pair per
  English word of the lexicon whose mean human rating is at least 1 away
  from neutral (-4..+4 scale). Emoticons, slang with digits and multi-word
  entries are dropped.
- with ``--sentences FILE ...``: ``sentence sentiment: <line>`` ->
  ``positive`` / ``negative`` for corpus lines of 4-64 words whose VADER
  compound score is at least 0.5 away from 0, the same number of each
  label, at most ``--max-sentences``. The labels are VADER's rules applied
  to the lexicon, not human judgements of the lines.

Human labels exist here only for single words; no GLUE/SuperGLUE row or
label is involved (pass corpus files without task text). The embedded
checkpoint's model card says which pairs it saw.

    pip install vaderSentiment==3.3.2   # or --install
    python scripts/word_sentiment_pairs.py --out /work/supervised/sentiment.tsv \
        --sentences /work/corpus/gcide.txt /work/corpus/wordnet.txt
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = "vaderSentiment==3.3.2"
PREFIX = "word sentiment:"
SENTENCE_PREFIX = "sentence sentiment:"
MIN_ABS_RATING = 1.0
MIN_ABS_COMPOUND = 0.5
SENTENCE_WORDS = (4, 64)
_WORD = re.compile(r"^[a-z][a-z'-]*[a-z]$")


def lexicon_path() -> Path:
    spec = importlib.util.find_spec("vaderSentiment")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            f"error: the vaderSentiment package is not installed "
            f"(`pip install {PACKAGE}` or pass --install)."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "vader_lexicon.txt"


def word_pairs(lexicon: Path) -> list[tuple[str, str]]:
    """``(input, target)`` pairs, sorted by word."""
    pairs = []
    for line in lexicon.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) < 2 or not _WORD.match(fields[0]):
            continue
        rating = float(fields[1])
        if abs(rating) < MIN_ABS_RATING:
            continue
        label = "positive" if rating > 0 else "negative"
        pairs.append((f"{PREFIX} {fields[0]}", label))
    return sorted(pairs)


def sentence_pairs(
    files: list[Path], max_pairs: int, seed: int = 0
) -> list[tuple[str, str]]:
    """Balanced ``(input, target)`` pairs of corpus lines labelled by VADER."""
    import random

    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    by_label: dict[str, list[str]] = {"positive": [], "negative": []}
    seen = set()
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            line = " ".join(line.replace("\t", " ").split())
            words = len(line.split())
            if not SENTENCE_WORDS[0] <= words <= SENTENCE_WORDS[1] or line in seen:
                continue
            seen.add(line)
            compound = analyzer.polarity_scores(line)["compound"]
            if abs(compound) >= MIN_ABS_COMPOUND:
                by_label["positive" if compound > 0 else "negative"].append(line)
    rng = random.Random(seed)
    per_label = min(max_pairs // 2, *(len(lines) for lines in by_label.values()))
    pairs = [
        (f"{SENTENCE_PREFIX} {line}", label)
        for label, lines in by_label.items()
        for line in rng.sample(lines, per_label)
    ]
    return sorted(pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="TSV file to write")
    parser.add_argument("--install", action="store_true", help=f"pip install {PACKAGE}")
    parser.add_argument(
        "--sentences",
        type=Path,
        nargs="*",
        default=[],
        help="text files (one line per example) to label with VADER's rules",
    )
    parser.add_argument("--max-sentences", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.install:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", PACKAGE], check=True
        )
    pairs = word_pairs(lexicon_path())
    if args.sentences:
        pairs += sentence_pairs(args.sentences, args.max_sentences, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(f"{a}\t{b}\n" for a, b in pairs), encoding="utf-8")
    positive = sum(label == "positive" for _, label in pairs)
    print(f"{args.out}: {len(pairs)} pairs ({positive} positive)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
