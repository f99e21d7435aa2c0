#!/usr/bin/env python
"""Write word-level sentiment pairs from the VADER lexicon, for lm-adapt.

A supervised task for T5 1.0-style multi-task pretraining (`keras-prompt
lm-adapt --supervised-files`): ``word sentiment: <word>`` -> ``positive`` or
``negative``, one pair per English word of the VADER lexicon (Hutto &
Gilbert 2014, MIT licence; the `vaderSentiment` package on PyPI) whose mean
human rating is at least 1 away from neutral (-4..+4 scale). Words only:
emoticons, slang with digits and multi-word entries are dropped.

It is labelled data about *words*, not sentences; no GLUE/SuperGLUE row is
involved. The embedded checkpoint's model card says it saw these pairs.

    pip install vaderSentiment==3.3.2   # or --install
    python scripts/word_sentiment_pairs.py --out /work/supervised/word_sentiment.tsv
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
MIN_ABS_RATING = 1.0
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="TSV file to write")
    parser.add_argument("--install", action="store_true", help=f"pip install {PACKAGE}")
    args = parser.parse_args(argv)
    if args.install:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", PACKAGE], check=True
        )
    pairs = word_pairs(lexicon_path())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(f"{a}\t{b}\n" for a, b in pairs), encoding="utf-8")
    positive = sum(label == "positive" for _, label in pairs)
    print(f"{args.out}: {len(pairs)} pairs ({positive} positive)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
