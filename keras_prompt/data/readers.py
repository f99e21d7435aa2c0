"""Read task examples from official file formats or from TFDS.

Everything is validated while reading: a malformed file fails loudly with its
path and 1-based line number instead of silently training on garbage, and an
unlabelled split (GLUE/SuperGLUE test sets) is refused because prompt tuning
and evaluation both need gold labels.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keras_prompt.data.tasks import (
    HELDOUT_SEED,
    SPLITS,
    LocalFile,
    Task,
    get_task,
    heldout_split_indices,
)


@dataclass(frozen=True)
class Example:
    """One text-to-text example: T5 input, target text and its label index."""

    inputs: str
    targets: str
    label: int


class DataFormatError(ValueError):
    """A data file is malformed; the message names the file and the line."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, message: str):
        self.path = str(path)
        self.line = line
        self.detail = message
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {message}")


class UnlabelledSplitError(ValueError):
    """The requested split has no gold labels (e.g. a GLUE/SuperGLUE test set)."""


@dataclass(frozen=True)
class SplitSource:
    """Which file, and which of its rows, a split of a task is read from.

    Attributes:
        task, split: The task name and split.
        path: The file read (``None`` for TFDS).
        official: Whether the examples are exactly the split's official set
            (the official dev file, not rows held out of the training file).
        rows: ``"all"`` (every row of ``path``), ``"heldout"`` (the
            ``heldout_size`` rows held out of the training file with seed
            ``heldout_seed``) or ``"all_but_heldout"`` (the rest of it).
        tfds: ``"<name>:<split>"`` when read from TFDS.

    Example:

    ```python
    from keras_prompt.data import split_source
    source = split_source("sst2", "validation", data_dir="../shared/assets")
    source.to_json()["rows"]  # "heldout" unless glue/SST-2/dev.tsv exists
    ```
    """

    task: str
    split: str
    path: str | None
    official: bool
    rows: str = "all"
    heldout_size: int | None = None
    heldout_seed: int | None = None
    tfds: str | None = None
    entry: LocalFile | None = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        """One line for people: the file and which of its rows."""
        if self.tfds is not None:
            return f"TFDS {self.tfds}"
        if self.rows == "heldout":
            return (
                f"{self.heldout_size} rows of {self.path} held out with seed "
                f"{self.heldout_seed} (no official {self.split} file)"
            )
        if self.rows == "all_but_heldout":
            return (
                f"{self.path} without the {self.heldout_size} rows held out for "
                "validation"
            )
        kind = "official" if self.official else "stand-in"
        return f"{self.path} ({kind} {self.split} file)"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``metrics.json``)."""
        result: dict[str, Any] = {
            "split": self.split,
            "file": self.path,
            "official": self.official,
            "rows": self.rows,
            "description": self.describe(),
        }
        if self.heldout_size is not None:
            result["heldout_size"] = self.heldout_size
            result["heldout_seed"] = self.heldout_seed
        if self.tfds is not None:
            result["tfds"] = self.tfds
        return result


def split_source(
    task: Task | str,
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    tfds_data_dir: str | os.PathLike[str] | None = None,
) -> SplitSource:
    """Which file (and rows) :func:`load_examples` reads for ``split``.

    Takes the same source arguments as :func:`load_examples`. For local files
    the first existing :class:`~keras_prompt.data.tasks.LocalFile` of the
    split is chosen; "validation" of SST-2, MRPC and RTE falls back to rows
    held out of the training file only when no dev file exists (and then
    "train" excludes those rows).

    Raises:
        ValueError: unknown task or split, or no source given.
        FileNotFoundError: no file of the split exists (the message lists
            every file tried).
        UnlabelledSplitError: the task has no local file for ``split``.
    """
    task = get_task(task)
    if split not in SPLITS:
        raise ValueError(
            f"Unknown split {split!r} for task {task.name!r}; "
            f"expected one of {', '.join(SPLITS)}."
        )
    if data_dir is None:
        if tfds_data_dir is None:
            raise ValueError(
                "load_examples needs a source: pass data_dir (official files) or "
                "tfds_data_dir (prepared TFDS datasets)."
            )
        return SplitSource(
            task.name, split, None, True, tfds=f"{task.tfds_name}:{split}"
        )
    data_dir = Path(data_dir)
    size = task.heldout_validation_size
    own = _first_existing(task, split, data_dir)
    if own is not None or size is None or split == "test":
        if own is None:
            _raise_missing(task, split, data_dir)
        entry, path = own
        if split == "train" and size is not None:
            # The held-out rows are carved out of train only when they stand
            # in for a missing dev file.
            if _first_existing(task, "validation", data_dir) is None:
                return SplitSource(
                    task.name, split, str(path), False, "all_but_heldout",
                    size, HELDOUT_SEED, entry=entry,
                )
        return SplitSource(task.name, split, str(path), entry.official, entry=entry)
    # "validation" held out of the training file.
    train = _first_existing(task, "train", data_dir)
    if train is None:
        _raise_missing(task, "train", data_dir, instead_of=split)
    entry, path = train
    return SplitSource(
        task.name, split, str(path), False, "heldout", size, HELDOUT_SEED,
        entry=entry,
    )


def _first_existing(
    task: Task, split: str, data_dir: Path
) -> tuple[LocalFile, Path] | None:
    for entry in task.local_candidates(split):
        path = data_dir / entry.path
        if path.is_file():
            return entry, path
    return None


def _raise_missing(
    task: Task, split: str, data_dir: Path, instead_of: str | None = None
) -> None:
    candidates = task.local_candidates(split)
    if not candidates:
        available = sorted(
            {entry.split for entry in task.local_files}
            | ({"validation"} if task.heldout_validation_size else set()),
            key=SPLITS.index,
        )
        raise UnlabelledSplitError(
            f"Task {task.name!r} has no labelled {split!r} split in local files "
            f"(available: {', '.join(available)}). {task.notes}"
        )
    paths = [str((data_dir / entry.path).resolve()) for entry in candidates]
    expected = (
        f"the file {paths[0]}"
        if len(paths) == 1
        else "one of the files " + ", ".join(paths)
    )
    because = (
        f" (its {instead_of!r} split is held out of it when no dev file exists)"
        if instead_of
        else ""
    )
    raise FileNotFoundError(
        f"Task {task.name!r} split {split!r} expects {expected}"
        f"{because} (data_dir={data_dir}); none exists."
    )


def load_examples(
    task: Task | str,
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    tfds_data_dir: str | os.PathLike[str] | None = None,
    format_as: Task | str | None = None,
) -> list[Example]:
    """Load a labelled split of ``task`` as :class:`Example` objects.

    Sources, in order of precedence:

    * ``data_dir``: files laid out like the official GLUE / SuperGLUE
      downloads (``glue/SST-2/dev.tsv``, ``glue/MRPC/dev.tsv``,
      ``glue/QQP/dev.tsv``, ``superglue/RTE/val.jsonl``, ...); the official
      file of a split is read when present. Without a dev file, SST-2, MRPC
      and RTE "validation" is
      :data:`~keras_prompt.data.tasks.HELDOUT_VALIDATION_SIZES` rows (the dev
      set's size: 872 / 408 / 277) held out of the training file with seed
      :data:`~keras_prompt.data.tasks.HELDOUT_SEED` (0) and "train" is the
      remaining rows; the two never overlap (see
      :func:`~keras_prompt.data.tasks.heldout_split_indices`). Without the
      official QQP files, QQP reads ``train_subset.json`` /
      ``dev_subset.json``. BoolQ, CB, COPA and WiC train on ``train.jsonl``,
      else FewGLUE's 32-shot ``train32.jsonl``, and validate on SuperGLUE's
      ``val.jsonl``. :func:`split_source` tells which file was used.
    * ``tfds_data_dir`` (only if ``data_dir`` is None): the prepared TFDS
      dataset ``task.tfds_name``, never downloaded. TFDS splits are used as
      they are: "validation" is the official dev set and "train" the full
      training set.

    Args:
        task: A :class:`~keras_prompt.data.tasks.Task` or its registry name.
        split: "train", "validation" or "test".
        data_dir: Root of the local data files.
        tfds_data_dir: TFDS data directory holding the prepared dataset.
        format_as: Phrase the examples as this other task's (task prefix,
            field keys and verbalizers), mapping ``task``'s input fields and
            labels to ``format_as``'s by position. Zero-shot domain transfer
            (Lester et al. 2021, Table 2) evaluates a prompt trained on QQP on
            MRPC rows written as QQP examples: ``load_examples("mrpc",
            "validation", data_dir, format_as="qqp")`` gives ``qqp question1:
            <s1> question2: <s2>`` -> ``not_duplicate`` / ``duplicate``. Both
            tasks need the same number of input fields and of classes.

    Returns:
        The examples, in file order (held-out splits keep file order too).

    Raises:
        ValueError: unknown task or split, or no source given.
        FileNotFoundError: ``data_dir`` lacks the expected file (the message
            gives its full path).
        DataFormatError: a malformed row (file, line and what is wrong).
        UnlabelledSplitError: the split has no gold labels.
    """
    task = get_task(task)
    source = split_source(task, split, data_dir, tfds_data_dir)
    if source.tfds is not None:
        rows = _load_tfds_rows(task, split, tfds_data_dir)
    else:
        rows = load_local_rows(task, source)
    target = task
    if format_as is not None:
        target = get_task(format_as)
        if (
            len(target.input_fields) != len(task.input_fields)
            or target.num_classes != task.num_classes
        ):
            raise ValueError(
                f"`format_as` task {target.name!r} must have as many input fields "
                f"and classes as {task.name!r} ({len(task.input_fields)} fields, "
                f"{task.num_classes} classes); got {len(target.input_fields)} "
                f"fields and {target.num_classes} classes."
            )
        renames = [
            (source, dest)
            for (_, source), (_, dest) in zip(task.input_fields, target.input_fields)
        ]
        rows = [
            ({dest: features[source] for source, dest in renames}, label)
            for features, label in rows
        ]
    return [
        Example(target.format_input(features), target.format_target(label), label)
        for features, label in rows
    ]


# --------------------------------------------------------------------------
# Local files.
# --------------------------------------------------------------------------

_Row = tuple[dict[str, str], int]


def load_local_rows(task: Task, source: SplitSource) -> list[_Row]:
    """`(fields, label)` rows of a split's local file, held-out rows applied."""
    layout = task.layout(source.entry)
    path = Path(source.path)
    readers = {"tsv": _read_tsv, "json": _read_json, "jsonl": _read_jsonl}
    rows = readers[layout.format](task, layout, path, source.split)
    if source.rows != "all":
        size = source.heldout_size
        if len(rows) <= size:
            raise DataFormatError(
                path,
                None,
                f"has {len(rows)} rows, too few to hold out the {size}-row "
                f"validation split of task {task.name!r}.",
            )
        train_idx, heldout_idx = heldout_split_indices(
            len(rows), size, seed=source.heldout_seed
        )
        keep = heldout_idx if source.rows == "heldout" else train_idx
        rows = [rows[i] for i in keep]
    return rows


def _parse_label(
    task: Task, layout: LocalFile, raw: Any, path: Path, line: int
) -> int:
    for index, allowed in enumerate(layout.label_values):
        if type(raw) is type(allowed) and raw == allowed:
            return index
    allowed_text = ", ".join(repr(v) for v in layout.label_values)
    raise DataFormatError(
        path,
        line,
        f"label {raw!r} in field {layout.label_field!r} is not one of the "
        f"allowed values ({allowed_text}) for task {task.name!r}.",
    )


def _unlabelled(task: Task, split: str, path: Path, detail: str) -> Exception:
    return UnlabelledSplitError(
        f"Task {task.name!r} split {split!r}: {path} is unlabelled ({detail}); "
        "it cannot be used for training or evaluation."
    )


def _read_text(path: Path) -> str:
    """The file as UTF-8 text (a leading byte-order mark dropped: GLUE's MRPC
    train.tsv has one); a byte that is not UTF-8 is reported by its line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line_start = data.rfind(b"\n", 0, error.start) + 1
        raise DataFormatError(
            path,
            data.count(b"\n", 0, error.start) + 1,
            f"not UTF-8 text: byte 0x{data[error.start]:02x} at column "
            f"{error.start - line_start + 1} ({error.reason}).",
        ) from None


def _read_tsv(task: Task, layout: LocalFile, path: Path, split: str) -> list[_Row]:
    """GLUE TSV: a header row, tab-separated, no quoting (MRPC has bare quotes)."""
    lines = _read_text(path).splitlines()
    if not lines:
        raise DataFormatError(path, None, "file is empty (expected a header row).")
    header = lines[0].split("\t")
    needed = [column for column, _ in layout.fields]
    missing = [c for c in needed if c not in header]
    if missing:
        raise DataFormatError(
            path,
            1,
            f"header {header} lacks column(s) {missing} needed by task {task.name!r}.",
        )
    if layout.label_field not in header:
        raise _unlabelled(
            task, split, path, f"header {header} has no {layout.label_field!r}"
        )
    positions = {c: header.index(c) for c in [*needed, layout.label_field]}
    rows = []
    for line_number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(header):
            raise DataFormatError(
                path,
                line_number,
                f"expected {len(header)} tab-separated columns "
                f"({', '.join(header)}), found {len(cells)}.",
            )
        features = {
            feature: cells[positions[column]] for column, feature in layout.fields
        }
        raw_label = cells[positions[layout.label_field]].strip()
        rows.append(
            (features, _parse_label(task, layout, raw_label, path, line_number))
        )
    return rows


def _record_to_row(
    task: Task,
    layout: LocalFile,
    record: Any,
    path: Path,
    line: int,
    split: str,
    first: bool,
) -> _Row:
    if not isinstance(record, dict):
        raise DataFormatError(
            path, line, f"expected a JSON object, found {type(record).__name__}."
        )
    missing = [key for key, _ in layout.fields if key not in record]
    if missing:
        raise DataFormatError(
            path, line, f"missing field(s) {missing} needed by task {task.name!r}."
        )
    if layout.label_field not in record:
        if first:
            raise _unlabelled(task, split, path, f"no {layout.label_field!r} field")
        raise DataFormatError(path, line, f"missing field {layout.label_field!r}.")
    features = {}
    for key, feature in layout.fields:
        if not isinstance(record[key], str):
            raise DataFormatError(
                path,
                line,
                f"field {key!r} should be a string, found "
                f"{type(record[key]).__name__}.",
            )
        features[feature] = record[key]
    return features, _parse_label(
        task, layout, record[layout.label_field], path, line
    )


def _read_jsonl(task: Task, layout: LocalFile, path: Path, split: str) -> list[_Row]:
    """SuperGLUE JSON Lines: one JSON object per line."""
    rows = []
    # Only "\n" ends a line: JSON strings may hold U+2028 and friends raw.
    for line_number, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFormatError(
                path,
                line_number,
                f"invalid JSON ({error.msg} at column {error.colno}).",
            ) from None
        rows.append(
            _record_to_row(task, layout, record, path, line_number, split, not rows)
        )
    return rows


def _read_json(task: Task, layout: LocalFile, path: Path, split: str) -> list[_Row]:
    """One JSON object mapping example ids to rows (the QQP subset's format)."""
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataFormatError(
            path,
            error.lineno,
            f"invalid JSON ({error.msg} at column {error.colno}).",
        ) from None
    if not isinstance(data, dict):
        raise DataFormatError(
            path,
            1,
            f"expected a JSON object mapping ids to rows, found {type(data).__name__}.",
        )

    def line_of(key: str) -> int:
        # Rows carry no position once parsed; find the line that opens this
        # id's object (only computed when reporting an error).
        match = re.search(
            rf"^\s*{re.escape(json.dumps(key))}\s*:", text, flags=re.MULTILINE
        )
        return 1 if match is None else text.count("\n", 0, match.start()) + 1

    rows = []
    for key, record in data.items():
        try:
            rows.append(
                _record_to_row(task, layout, record, path, 0, split, not rows)
            )
        except DataFormatError as error:
            raise DataFormatError(
                path, line_of(key), f"row {key!r}: {error.detail}"
            ) from None
    return rows


# --------------------------------------------------------------------------
# TFDS.
# --------------------------------------------------------------------------


def _load_tfds_rows(
    task: Task, split: str, tfds_data_dir: str | os.PathLike[str]
) -> list[_Row]:
    import tensorflow_datasets as tfds  # Heavy import: only on this path.

    ds, info = tfds.load(
        task.tfds_name,
        split=split,
        data_dir=os.fspath(tfds_data_dir),
        download=False,
        with_info=True,
    )
    label_names = tuple(info.features["label"].names)
    if label_names != task.verbalizers:
        raise ValueError(
            f"TFDS {task.tfds_name} labels {label_names} do not match task "
            f"{task.name!r} verbalizers {task.verbalizers}."
        )
    missing = [f for f in task.tfds_features if f not in ds.element_spec]
    if missing:
        raise ValueError(
            f"TFDS {task.tfds_name} lacks feature(s) {missing}; it has "
            f"{sorted(ds.element_spec)}."
        )
    text_features = [feature for _, feature in task.input_fields]
    rows = []
    for index, element in enumerate(tfds.as_numpy(ds)):
        label = int(element["label"])
        if label == -1:
            raise UnlabelledSplitError(
                f"TFDS {task.tfds_name} split {split!r} is unlabelled (label -1 "
                f"at example {index}); it cannot be used for training or evaluation."
            )
        if not 0 <= label < task.num_classes:
            raise ValueError(
                f"TFDS {task.tfds_name} split {split!r} example {index}: label "
                f"{label} is outside 0..{task.num_classes - 1}."
            )
        features = {f: element[f].decode("utf-8") for f in text_features}
        rows.append((features, label))
    return rows
