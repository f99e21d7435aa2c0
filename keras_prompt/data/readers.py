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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keras_prompt.data.tasks import SPLITS, Task, get_task, heldout_split_indices


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


def load_examples(
    task: Task | str,
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    tfds_data_dir: str | os.PathLike[str] | None = None,
    format_as: Task | str | None = None,
) -> list[Example]:
    """Load a labelled split of ``task`` as :class:`Example` objects.

    Sources, in order of precedence:

    * ``data_dir``: official files laid out like ``shared/assets``. For SST-2,
      MRPC and RTE the official dev sets are not shipped, so "validation" is
      :data:`~keras_prompt.data.tasks.HELDOUT_VALIDATION_SIZES` rows (the dev
      set's size: 872 / 408 / 277) held out of the training file with seed
      :data:`~keras_prompt.data.tasks.HELDOUT_SEED` (0) and "train" is the
      remaining rows; the two never overlap (see
      :func:`~keras_prompt.data.tasks.heldout_split_indices`). QQP reads
      ``train_subset.json`` / ``dev_subset.json``. BoolQ, CB, COPA and WiC
      train on FewGLUE's 32-shot ``train32.jsonl`` and validate on SuperGLUE's
      ``val.jsonl``.
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
    if split not in SPLITS:
        raise ValueError(
            f"Unknown split {split!r} for task {task.name!r}; "
            f"expected one of {', '.join(SPLITS)}."
        )
    if data_dir is not None:
        rows = _load_local_rows(task, split, Path(data_dir))
    elif tfds_data_dir is not None:
        rows = _load_tfds_rows(task, split, tfds_data_dir)
    else:
        raise ValueError(
            "load_examples needs a source: pass data_dir (official files) or "
            "tfds_data_dir (prepared TFDS datasets)."
        )
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


def _load_local_rows(task: Task, split: str, data_dir: Path) -> list[_Row]:
    path = task.local_path(split, data_dir)
    if path is None:
        available = [s for s in SPLITS if task.local_file(s) is not None]
        raise UnlabelledSplitError(
            f"Task {task.name!r} has no labelled {split!r} split in local files "
            f"(available: {', '.join(available)}). {task.notes}"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"Task {task.name!r} split {split!r} expects the file "
            f"{path.resolve()} (data_dir={data_dir}), which does not exist."
        )
    readers = {"tsv": _read_tsv, "json": _read_json, "jsonl": _read_jsonl}
    rows = readers[task.local_format](task, path, split)
    size = task.heldout_validation_size
    if size is not None and split in ("train", "validation"):
        if len(rows) <= size:
            raise DataFormatError(
                path,
                None,
                f"has {len(rows)} rows, too few to hold out the {size}-row "
                f"validation split of task {task.name!r}.",
            )
        train_idx, heldout_idx = heldout_split_indices(len(rows), size)
        rows = [rows[i] for i in (heldout_idx if split == "validation" else train_idx)]
    return rows


def _parse_label(task: Task, raw: Any, path: Path, line: int) -> int:
    for index, allowed in enumerate(task.local_label_values):
        if type(raw) is type(allowed) and raw == allowed:
            return index
    allowed_text = ", ".join(repr(v) for v in task.local_label_values)
    raise DataFormatError(
        path,
        line,
        f"label {raw!r} in field {task.local_label_field!r} is not one of the "
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


def _read_tsv(task: Task, path: Path, split: str) -> list[_Row]:
    """GLUE TSV: a header row, tab-separated, no quoting (MRPC has bare quotes)."""
    lines = _read_text(path).splitlines()
    if not lines:
        raise DataFormatError(path, None, "file is empty (expected a header row).")
    header = lines[0].split("\t")
    needed = [column for column, _ in task.local_fields]
    missing = [c for c in needed if c not in header]
    if missing:
        raise DataFormatError(
            path,
            1,
            f"header {header} lacks column(s) {missing} needed by task {task.name!r}.",
        )
    if task.local_label_field not in header:
        raise _unlabelled(
            task, split, path, f"header {header} has no {task.local_label_field!r}"
        )
    positions = {c: header.index(c) for c in [*needed, task.local_label_field]}
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
            feature: cells[positions[column]] for column, feature in task.local_fields
        }
        raw_label = cells[positions[task.local_label_field]].strip()
        rows.append((features, _parse_label(task, raw_label, path, line_number)))
    return rows


def _record_to_row(
    task: Task, record: Any, path: Path, line: int, split: str, first: bool
) -> _Row:
    if not isinstance(record, dict):
        raise DataFormatError(
            path, line, f"expected a JSON object, found {type(record).__name__}."
        )
    missing = [key for key, _ in task.local_fields if key not in record]
    if missing:
        raise DataFormatError(
            path, line, f"missing field(s) {missing} needed by task {task.name!r}."
        )
    if task.local_label_field not in record:
        if first:
            raise _unlabelled(task, split, path, f"no {task.local_label_field!r} field")
        raise DataFormatError(path, line, f"missing field {task.local_label_field!r}.")
    features = {}
    for key, feature in task.local_fields:
        if not isinstance(record[key], str):
            raise DataFormatError(
                path,
                line,
                f"field {key!r} should be a string, found "
                f"{type(record[key]).__name__}.",
            )
        features[feature] = record[key]
    return features, _parse_label(task, record[task.local_label_field], path, line)


def _read_jsonl(task: Task, path: Path, split: str) -> list[_Row]:
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
        rows.append(_record_to_row(task, record, path, line_number, split, not rows))
    return rows


def _read_json(task: Task, path: Path, split: str) -> list[_Row]:
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
            rows.append(_record_to_row(task, record, path, 0, split, not rows))
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
