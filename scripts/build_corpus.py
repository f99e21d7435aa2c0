#!/usr/bin/env python
"""Build the English pretraining corpus from what this machine can get.

Sources (all real text written by others; nothing generated here):

* ``tasks``: the text fields of the shipped task data's *training* splits
  only: SST-2 / MRPC / RTE training rows minus the held-out validation rows
  that keras-prompt evaluates on, the QQP train subset, FewGLUE ``train32``.
  Never labels, never ``val``/``dev32``/``dev_subset``/``test`` files.
* ``wordnet``: WordNet 3.0 glosses and usage examples (Debian
  ``wordnet-base``).
* ``gcide``: the GNU Collaborative International Dictionary of English
  (Webster's 1913 + WordNet; Debian ``dict-gcide``).
* ``devil``, ``jargon``: Bierce's *Devil's Dictionary* and the Jargon File
  (Debian ``dict-devil``, ``dict-jargon``).
* ``python_docs``: paragraphs of the Python 3.11 documentation (Debian
  ``python3.11-doc``); code blocks are dropped.
* ``debian_reference``: the Debian Reference manual (``debian-reference-en``).
* ``fortunes``: the ``fortunes`` quotations (Debian ``fortunes``,
  ``fortunes-min``; the offensive set is not installed).

Every output line is one paragraph/entry, whitespace-normalised; exact
duplicate lines are dropped across sources. Writes ``OUT/<source>.txt`` and
``OUT/MANIFEST.json`` (lines, characters and T5 SentencePiece tokens per
source). The corpus stays outside the repository.

    sudo apt-get install -y --no-install-recommends wordnet-base dict-gcide \\
        python3-doc dict-devil dict-jargon fortunes debian-reference-en
    python scripts/build_corpus.py --assets ../shared/assets --out /work/corpus

``--install`` runs that apt-get command first (needs root and Debian's
archive).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import html.parser
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

APT_PACKAGES = (
    "wordnet-base",
    "dict-gcide",
    "python3-doc",
    "dict-devil",
    "dict-jargon",
    "fortunes",
    "debian-reference-en",
)
MIN_CHARS = 20
_SPACE = re.compile(r"\s+")


def _clean(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


# ---------------------------------------------------------------------------
# Task data (training splits only).
# ---------------------------------------------------------------------------


def _strings(value, skip: frozenset[str]) -> Iterator[str]:
    """Every string inside a JSON value, except under keys in ``skip``."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in skip:
                yield from _strings(item, skip)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, skip)


def task_texts(assets: Path) -> Iterator[str]:
    """Text fields of the training rows that no evaluation split contains."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from keras_prompt.data.tasks import HELDOUT_VALIDATION_SIZES, heldout_split_indices

    def tsv(path: Path, columns: tuple[str, ...], heldout: int) -> Iterator[str]:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
        header = lines[0].split("\t")
        rows = [line.split("\t") for line in lines[1:] if line.strip()]
        train, _ = heldout_split_indices(len(rows), heldout)
        positions = [header.index(c) for c in columns]
        for i in train:
            for p in positions:
                yield rows[i][p]

    yield from tsv(
        assets / "glue/SST-2/train.tsv", ("sentence",), HELDOUT_VALIDATION_SIZES["sst2"]
    )
    yield from tsv(
        assets / "glue/MRPC/train.tsv",
        ("#1 String", "#2 String"),
        HELDOUT_VALIDATION_SIZES["mrpc"],
    )
    rte = [
        json.loads(line)
        for line in (assets / "superglue/RTE/train.jsonl").read_text().splitlines()
        if line.strip()
    ]
    train, _ = heldout_split_indices(len(rte), HELDOUT_VALIDATION_SIZES["rte"])
    for i in train:
        yield rte[i]["premise"]
        yield rte[i]["hypothesis"]
    qqp = json.loads((assets / "glue/QQP/train_subset.json").read_text())
    for row in qqp.values():
        yield row["text_a"]
        yield row["text_b"]
    skip = frozenset({"label", "idx", "word", "version", "question", "target"})
    for task in ("BoolQ", "CB", "COPA", "WiC", "MultiRC", "WSC"):
        for line in (
            (assets / "superglue" / task / "train32.jsonl").read_text().splitlines()
        ):
            if not line.strip():
                continue
            record = json.loads(line)
            if task == "BoolQ":
                yield record["question"]
            if task == "MultiRC":
                for q in record["passage"]["questions"]:
                    yield q["question"]
                    for a in q.get("answers", []):
                        yield a["text"]
                yield record["passage"]["text"]
                continue
            yield from _strings(record, skip)


# ---------------------------------------------------------------------------
# Dictionaries.
# ---------------------------------------------------------------------------


def wordnet_texts(root: Path = Path("/usr/share/wordnet")) -> Iterator[str]:
    """``lemma, lemma: gloss; "example"`` for every synset."""
    for pos in ("noun", "verb", "adj", "adv"):
        path = root / f"data.{pos}"
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue  # licence header
                fields, gloss = line.split("|", 1)
                parts = fields.split()
                count = int(parts[3], 16)
                lemmas = [parts[4 + 2 * i] for i in range(count)]
                words = ", ".join(
                    re.sub(r"\(.*\)$", "", w).replace("_", " ") for w in lemmas
                )
                yield f"{words}: {gloss.strip()}"


_DICT_MARKUP = [
    (re.compile(r"\\[^\\\n]{0,80}\\"), " "),  # GCIDE pronunciations \Dog\
    (re.compile(r"\[[^\]\n]{0,200}\]"), " "),  # etymologies [AS. docga]
    (re.compile(r"[{}]"), ""),  # Jargon/GCIDE cross-reference braces
]


def _b64(number: str) -> int:
    """dictd's base64 integers (A=0 ... /=63, most significant first)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    value = 0
    for char in number:
        value = value * 64 + alphabet.index(char)
    return value


def dictd_texts(name: str, root: Path = Path("/usr/share/dictd")) -> Iterator[str]:
    """Entries of a dictd database (``NAME.index`` + ``NAME.dict.dz``)."""
    body = gzip.open(root / f"{name}.dict.dz").read()
    seen: set[tuple[int, int]] = set()
    for line in (
        (root / f"{name}.index")
        .read_text(encoding="utf-8", errors="replace")
        .splitlines()
    ):
        parts = line.split("\t")
        if (
            len(parts) < 3
            or parts[0].startswith("00-database")
            or parts[0].startswith("00database")
        ):
            continue
        span = (_b64(parts[1]), _b64(parts[2]))
        if span in seen:
            continue
        seen.add(span)
        text = body[span[0] : span[0] + span[1]].decode("utf-8", errors="replace")
        for pattern, replacement in _DICT_MARKUP:
            text = pattern.sub(replacement, text)
        # An entry's blank-line-separated paragraphs (senses, quotations)
        # become separate lines.
        yield from re.split(r"\n\s*\n", text)


# ---------------------------------------------------------------------------
# Manuals (HTML).
# ---------------------------------------------------------------------------


class _Paragraphs(html.parser.HTMLParser):
    """Text of <p>, <li>, <dd>, <dt>, <h1-4>, <td>; nothing inside <pre> blocks."""

    BLOCKS = {"p", "li", "dd", "dt", "h1", "h2", "h3", "h4", "td", "blockquote"}
    SKIP = {"pre", "script", "style", "nav"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self.buffer: list[str] = []
        self.skipping = 0
        self.depth = 0

    def handle_starttag(self, tag, attrs):
        classes = dict(attrs).get("class") or ""
        if tag in self.SKIP or "highlight" in classes or "sphinxsidebar" in classes:
            self.skipping += 1
        elif tag in self.BLOCKS:
            self._flush()
            self.depth += 1

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCKS:
            self._flush()
            self.depth = max(0, self.depth - 1)

    def handle_data(self, data):
        if not self.skipping and self.depth:
            self.buffer.append(data)

    def _flush(self):
        text = _clean("".join(self.buffer))
        self.buffer = []
        if text:
            self.paragraphs.append(text)


def html_texts(files: Iterable[Path]) -> Iterator[str]:
    for path in sorted(files):
        parser = _Paragraphs()
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        parser.close()
        parser._flush()
        yield from parser.paragraphs


def _prose(text: str) -> bool:
    """Mostly words: skips tables of symbols, option lists and stray code."""
    letters = sum(c.isalpha() or c == " " for c in text)
    return letters >= 0.8 * len(text) and len(text.split()) >= 4


def python_doc_texts() -> Iterator[str]:
    root = Path("/usr/share/doc/python3.11/html")
    for text in html_texts(root.rglob("*.html")):
        if _prose(text):
            yield text


def debian_reference_texts() -> Iterator[str]:
    for text in html_texts(Path("/usr/share/debian-reference").glob("*.en.html")):
        if _prose(text):
            yield text


def fortune_texts(root: Path = Path("/usr/share/games/fortunes")) -> Iterator[str]:
    for path in sorted(root.iterdir()):
        if path.suffix in (".dat", ".u8") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        yield from re.split(r"^%$", text, flags=re.MULTILINE)


# ---------------------------------------------------------------------------


SOURCES = {
    "tasks": None,  # needs --assets
    "wordnet": wordnet_texts,
    "gcide": lambda: dictd_texts("gcide"),
    "devil": lambda: dictd_texts("devil"),
    "jargon": lambda: dictd_texts("jargon"),
    "python_docs": python_doc_texts,
    "debian_reference": debian_reference_texts,
    "fortunes": fortune_texts,
}


def build(assets: Path, out: Path, sources: list[str], spiece: Path | None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    seen: set[bytes] = set()
    manifest: dict = {"sources": {}, "min_chars": MIN_CHARS}
    processor = None
    if spiece is not None:
        import sentencepiece

        processor = sentencepiece.SentencePieceProcessor(model_file=str(spiece))
    for name in sources:
        start = time.perf_counter()
        texts = task_texts(assets) if name == "tasks" else SOURCES[name]()
        lines = chars = duplicates = 0
        tokens = 0
        batch: list[str] = []
        with open(out / f"{name}.txt", "w", encoding="utf-8") as f:
            for raw in texts:
                text = _clean(raw)
                if len(text) < MIN_CHARS:
                    continue
                key = hashlib.blake2b(text.encode(), digest_size=12).digest()
                if key in seen:
                    duplicates += 1
                    continue
                seen.add(key)
                f.write(text + "\n")
                lines += 1
                chars += len(text)
                if processor is not None:
                    batch.append(text)
                    if len(batch) >= 10_000:
                        tokens += sum(map(len, processor.encode(batch)))
                        batch = []
        if processor is not None and batch:
            tokens += sum(map(len, processor.encode(batch)))
        manifest["sources"][name] = {
            "file": f"{name}.txt",
            "lines": lines,
            "characters": chars,
            "t5_tokens": tokens if processor is not None else None,
            "duplicates_dropped": duplicates,
        }
        print(
            f"{name}: {lines:,} lines, {chars:,} chars, {tokens:,} tokens "
            f"({time.perf_counter() - start:.0f}s)",
            flush=True,
        )
    totals = manifest["sources"].values()
    manifest["total"] = {
        "lines": sum(s["lines"] for s in totals),
        "characters": sum(s["characters"] for s in totals),
        "t5_tokens": sum(s["t5_tokens"] or 0 for s in totals) if processor else None,
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    repo = Path(__file__).resolve().parents[1]
    parser.add_argument(
        "--assets", type=Path, default=repo.parent / "shared" / "assets"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--sources", default=",".join(SOURCES), help=f"comma list of {list(SOURCES)}"
    )
    parser.add_argument(
        "--install",
        action="store_true",
        help="apt-get install the Debian packages first",
    )
    parser.add_argument("--no-count", action="store_true", help="skip token counting")
    args = parser.parse_args(argv)
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        parser.error(f"unknown sources {unknown}; known: {list(SOURCES)}")
    if args.install:
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES],
            check=True,
        )
    if args.out.resolve().is_relative_to(repo):
        parser.error(
            "--out must be outside the repository (the corpus is not committed)."
        )
    spiece = None if args.no_count else args.assets / "t5" / "spiece.model"
    manifest = build(args.assets, args.out, sources, spiece)
    print(json.dumps(manifest["total"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
