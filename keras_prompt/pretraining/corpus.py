"""Plain-text corpora, text-to-text pair files and the SentencePiece
vocabulary, validated up front.

A corpus is one or more UTF-8 text files (or directories searched
recursively for ``*.txt`` / ``*.txt.gz``); every line is one unit of text (a
paragraph, a gloss, a sentence). Lines are streamed with
``tf.data.TextLineDataset`` and never loaded into Python memory, so a corpus
may be far larger than RAM.

The held-out split is a deterministic hash of each line's text
(:func:`heldout_mask`), so it needs no extra files, is the same on every run
and resume, and a line is never in both partitions.

Everything that can be checked before training time is spent is checked here
and fails with :class:`CorpusError` naming the offending path.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import tensorflow as tf

from keras_prompt.files import numbered_lines

#: File suffixes picked up when a directory is given as the corpus.
CORPUS_SUFFIXES: tuple[str, ...] = (".txt", ".txt.gz")

#: Hash buckets used to assign lines to the held-out partition.
HELDOUT_BUCKETS: int = 10_000


class CorpusError(ValueError):
    """The corpus or vocabulary cannot be used; the message says why."""


def find_corpus_files(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
) -> list[str]:
    """Resolves files and directories to a sorted list of non-empty text files.

    Directories are searched recursively for :data:`CORPUS_SUFFIXES`. Sorting
    makes the file order (and so the data order for a given seed) independent
    of the file system.

    Raises:
        CorpusError: a path does not exist, nothing was given, a directory
            holds no text files, or every file is empty.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise CorpusError("No corpus was given: pass text files or directories.")
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise CorpusError(f"Corpus path {path} does not exist.")
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.name.endswith(CORPUS_SUFFIXES)
            )
            if not found:
                raise CorpusError(
                    f"Corpus directory {path} holds no text files "
                    f"({', '.join('*' + s for s in CORPUS_SUFFIXES)})."
                )
            files.extend(found)
        else:
            files.append(path)
    non_empty = sorted({str(p) for p in files if p.stat().st_size > 0})
    if not non_empty:
        raise CorpusError(
            f"The corpus is empty: every file ({len(files)}) has 0 bytes: "
            f"{', '.join(str(p) for p in files[:5])}."
        )
    return non_empty


def _compression(path: str) -> str:
    return "GZIP" if path.endswith(".gz") else ""


def _iter_lines(path: str) -> Iterable[str]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        yield from f


def heldout_mask(lines: tf.Tensor, heldout_fraction: float) -> tf.Tensor:
    """True for lines in the held-out partition (a stable hash of the text).

    FarmHash of the stripped line, bucketed into :data:`HELDOUT_BUCKETS`: the
    same line is always in the same partition, whichever file, run or
    machine it is read on, and duplicates never straddle the split.
    """
    buckets = tf.strings.to_hash_bucket_fast(tf.strings.strip(lines), HELDOUT_BUCKETS)
    return buckets < int(round(heldout_fraction * HELDOUT_BUCKETS))


def check_corpus_text(
    files: Sequence[str],
    *,
    min_chars: int,
    heldout_fraction: float,
    max_lines: int = 2_000_000,
) -> None:
    """Fails unless both the training and held-out partitions have text.

    Reads lines until one usable line of each partition is found (normally
    within the first few thousand), so it is cheap even for a large corpus.

    Raises:
        CorpusError: no line has ``min_chars`` characters, or all usable lines
            fall in one partition.
    """
    seen_train = seen_heldout = False
    usable = read = 0
    pending: list[str] = []

    def flush() -> None:
        nonlocal seen_train, seen_heldout
        if not pending:
            return
        mask = heldout_mask(tf.constant(pending), heldout_fraction).numpy()
        seen_heldout = seen_heldout or bool(mask.any())
        seen_train = seen_train or bool((~mask).any())
        pending.clear()

    for path in files:
        for line in _iter_lines(path):
            read += 1
            if len(line.strip()) >= min_chars:
                usable += 1
                pending.append(line)
                if len(pending) >= 4096:
                    flush()
                    if seen_train and (seen_heldout or heldout_fraction <= 0):
                        return
            if read >= max_lines:
                break
    flush()
    if usable == 0:
        raise CorpusError(
            f"The corpus has no text after filtering: none of the {read} lines "
            f"read from {len(files)} file(s) has at least {min_chars} "
            "non-blank characters."
        )
    if not seen_train:
        raise CorpusError(
            f"All {usable} usable corpus lines hash into the held-out partition "
            f"(heldout_fraction={heldout_fraction}); add text or lower it."
        )
    if heldout_fraction > 0 and not seen_heldout:
        raise CorpusError(
            f"None of the {usable} usable corpus lines falls in the held-out "
            f"partition (heldout_fraction={heldout_fraction}); the corpus is too "
            "small to measure held-out perplexity: add text or raise the fraction."
        )


def text_lines(
    files: Sequence[str],
    *,
    heldout: bool,
    heldout_fraction: float,
    min_chars: int,
    shuffle: bool,
    seed: int,
    repeat: bool,
) -> tf.data.Dataset:
    """A dataset of the corpus lines of one partition (scalar tf.string).

    Files are shuffled per pass and read interleaved, so a corpus built from
    several sources mixes them instead of streaming one source at a time.
    """
    file_ds = tf.data.Dataset.from_tensor_slices(list(files))
    if shuffle:
        file_ds = file_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        file_ds = file_ds.repeat()
    compressed = any(_compression(f) for f in files)

    def read(path: tf.Tensor) -> tf.data.Dataset:
        if compressed:
            gz = tf.strings.regex_full_match(path, r".*\.gz")
            return tf.data.TextLineDataset(
                path, compression_type=tf.where(gz, "GZIP", "")
            )
        return tf.data.TextLineDataset(path)

    lines = file_ds.interleave(
        read,
        cycle_length=min(len(files), 8),
        block_length=64,
        **(
            dict(num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            if shuffle
            else {}
        ),
    )
    keep_heldout = bool(heldout)

    def keep(line: tf.Tensor) -> tf.Tensor:
        long_enough = tf.strings.length(tf.strings.strip(line)) >= min_chars
        in_heldout = heldout_mask(line, heldout_fraction)
        return tf.logical_and(
            long_enough, in_heldout if keep_heldout else tf.logical_not(in_heldout)
        )

    lines = lines.filter(keep)
    if shuffle:
        lines = lines.shuffle(20_000, seed=seed, reshuffle_each_iteration=True)
    return lines


def load_vocabulary(path: str | os.PathLike) -> bytes:
    """Reads and validates a SentencePiece model; returns its serialized bytes.

    T5 uses one vocabulary for every size (``spiece.model``), so a wrong file
    is caught here, with its path, rather than as an opaque TF op error
    inside the input pipeline.

    Raises:
        CorpusError: the file is missing or is not a SentencePiece model.
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"Vocabulary file {path} does not exist.")
    proto = path.read_bytes()
    try:
        import sentencepiece

        processor = sentencepiece.SentencePieceProcessor()
        processor.LoadFromSerializedProto(proto)
        size = processor.GetPieceSize()
    except ImportError:  # pragma: no cover - sentencepiece ships with keras-hub
        import tensorflow_text as tf_text

        try:
            size = int(tf_text.SentencepieceTokenizer(model=proto).vocab_size())
        except Exception as error:  # noqa: BLE001 - any parse failure
            raise CorpusError(
                f"Vocabulary file {path} is not a SentencePiece model ({error})."
            ) from None
    except Exception as error:  # noqa: BLE001 - sentencepiece raises RuntimeError
        raise CorpusError(
            f"Vocabulary file {path} is not a SentencePiece model "
            f"({type(error).__name__}: {str(error).strip()[:200]})."
        ) from None
    if size < 3:
        raise CorpusError(
            f"Vocabulary file {path} is a SentencePiece model with only {size} "
            "pieces; T5 needs pad=0, eos=1, unk=2 and real pieces."
        )
    return proto


def read_text_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``inputs<TAB>targets`` lines of a UTF-8 file; refuses malformed lines."""
    pairs = []
    for number, line in numbered_lines(path, "Supervised file"):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not all(field.strip() for field in fields):
            raise ValueError(
                f"Supervised file {path}, line {number}: expected "
                f"'inputs<TAB>targets' (2 non-empty fields); got "
                f"{len(fields)} field(s)."
            )
        pairs.append((fields[0], fields[1]))
    if not pairs:
        raise ValueError(f"Supervised file {path} holds no pairs.")
    return pairs
