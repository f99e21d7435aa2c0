"""Task definitions: GLUE / SuperGLUE classification cast as text-to-text.

Prompt tuning (Lester et al., 2021) keeps T5 frozen, so the task has to be
phrased exactly the way T5 saw it: an input string that starts with the task
name followed by ``key: value`` fields, and a target string that is the class
name ("verbalizer"). The formats here are those of T5's
``t5.data.preprocessors.glue`` (``glue_*_v002`` / ``super_glue_*_v102`` tasks),
which google-research/prompt-tuning also uses for its GLUE/SuperGLUE tasks:

* sst2: ``sst2 sentence: <sentence>`` -> negative / positive
* mrpc: ``mrpc sentence1: <s1> sentence2: <s2>`` -> not_equivalent / equivalent
* qqp: ``qqp question1: <q1> question2: <q2>`` -> not_duplicate / duplicate
* rte: ``rte sentence1: <premise> sentence2: <hypothesis>`` -> entailment /
  not_entailment
* boolq: ``boolq passage: <passage> question: <question>`` -> False / True
* cb: ``cb hypothesis: <hypothesis> premise: <premise>`` -> entailment /
  contradiction / neutral
* copa: ``copa choice1: <c1> choice2: <c2> premise: <p> question: cause|effect``
  -> choice1 / choice2
* wic: ``wic sentence1: <s1> sentence2: <s2> word: <word>`` -> False / True

RTE uses GLUE's field names (``sentence1``/``sentence2``, T5's ``glue_rte_v002``)
even though the files are SuperGLUE's: GLUE RTE and SuperGLUE RTE are the same
data. (T5's SuperGLUE format would be ``rte hypothesis: .. premise: ..``.)

Local files follow the layout of ``shared/assets`` (``<data_dir>/glue/SST-2/
train.tsv``, ``<data_dir>/superglue/RTE/train.jsonl``, ...). Two kinds of split
are synthesised rather than read:

* SST-2, MRPC and RTE ship without their official dev sets, so "validation" is
  a held-out, seed-:data:`HELDOUT_SEED` subset of the training file with the
  official dev set's size (:data:`HELDOUT_VALIDATION_SIZES`) and "train" is the
  rest (see :func:`heldout_split_indices`).
* BoolQ, CB, COPA and WiC train on FewGLUE's 32-shot ``train32.jsonl`` and
  validate on the official SuperGLUE ``val.jsonl``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

#: The split names :func:`keras_prompt.data.load_examples` understands.
SPLITS: tuple[str, ...] = ("train", "validation", "test")

#: Seed of the held-out validation split carved from the training file of the
#: tasks whose official dev set is not shipped.
HELDOUT_SEED: int = 0

#: Size of the held-out validation split per task: the size of the official
#: GLUE dev set it stands in for (SST-2 872, MRPC 408, RTE 277), so that
#: reported accuracies are averaged over as many examples as the paper's.
HELDOUT_VALIDATION_SIZES: dict[str, int] = {"sst2": 872, "mrpc": 408, "rte": 277}

#: Metric names a :class:`Task` may declare.
METRICS: tuple[str, ...] = ("accuracy", "f1_accuracy")


@dataclass(frozen=True)
class Task:
    """A classification task in T5's text-to-text form.

    Attributes:
        name: Registry name; also the first word of every input (T5's task
            prefix).
        verbalizers: Target text per label index. Label indices follow the
            TFDS ``ClassLabel`` order so that local files and TFDS agree.
        metric: ``"accuracy"`` or ``"f1_accuracy"`` (F1 of label 1 plus
            accuracy, as GLUE reports MRPC and QQP).
        tfds_name: TFDS ``dataset/config`` name.
        input_fields: ``(key, feature)`` pairs in input order: ``key`` is what
            the T5 input says (``"sentence1:"``), ``feature`` the canonical
            feature name, which is the TFDS feature name.
        local_format: ``"tsv"`` (GLUE TSV with a header row), ``"json"`` (one
            object mapping ids to rows, as the QQP subset) or ``"jsonl"``.
        local_files: ``(split, path relative to data_dir)`` pairs. A split
            missing here is either held out (see ``heldout_validation_size``)
            or not available locally.
        local_fields: ``(column or key in the file, feature)`` pairs.
        local_label_field: Column / key holding the label in the local file.
        local_label_values: Raw label values in the local file, by label
            index (compared type-strictly, so JSON ``false`` is not ``0``).
        heldout_validation_size: If set, "validation" is this many rows held
            out of the local training file and "train" is the remainder.
        notes: Where the local splits come from, for docs and error messages.
    """

    name: str
    verbalizers: tuple[str, ...]
    metric: Literal["accuracy", "f1_accuracy"]
    tfds_name: str
    input_fields: tuple[tuple[str, str], ...]
    local_format: Literal["tsv", "json", "jsonl"]
    local_files: tuple[tuple[str, str], ...]
    local_fields: tuple[tuple[str, str], ...]
    local_label_values: tuple[Any, ...]
    local_label_field: str = "label"
    heldout_validation_size: int | None = None
    notes: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"Task {self.name!r}: unknown metric {self.metric!r}.")
        if len(self.local_label_values) != len(self.verbalizers):
            raise ValueError(
                f"Task {self.name!r}: {len(self.verbalizers)} verbalizers but "
                f"{len(self.local_label_values)} local label values."
            )
        if self.metric == "f1_accuracy" and len(self.verbalizers) != 2:
            raise ValueError(f"Task {self.name!r}: F1 needs a binary task.")

    @property
    def num_classes(self) -> int:
        """Number of labels."""
        return len(self.verbalizers)

    @property
    def tfds_features(self) -> tuple[str, ...]:
        """The TFDS features this task reads (text features, then ``label``)."""
        return (*tuple(feature for _, feature in self.input_fields), "label")

    def format_input(self, example: dict[str, Any]) -> str:
        """T5-style input text for one example keyed by canonical feature names.

        Values may be ``str`` or ``bytes`` (as TFDS yields them). Each value is
        stripped: the GLUE TSVs end sentences with a space, which SentencePiece
        drops anyway, so token ids are unchanged and printed inputs stay clean.
        """
        parts = [self.name]
        for key, feature in self.input_fields:
            if feature not in example:
                raise KeyError(
                    f"Task {self.name!r} needs feature {feature!r}; the example "
                    f"has {sorted(example)}."
                )
            value = example[feature]
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            parts.append(f"{key}: {str(value).strip()}")
        return " ".join(parts)

    def format_target(self, label: int) -> str:
        """Target text (the verbalizer) of a label index."""
        if not 0 <= label < self.num_classes:
            raise ValueError(
                f"Task {self.name!r}: label {label} is outside "
                f"0..{self.num_classes - 1}."
            )
        return self.verbalizers[label]

    def local_file(self, split: str) -> str | None:
        """Relative path of the file backing ``split``, or None if there is none.

        For held-out tasks, "validation" is backed by the training file.
        """
        files = dict(self.local_files)
        if self.heldout_validation_size is not None and split == "validation":
            return files.get("train")
        return files.get(split)

    def local_path(self, split: str, data_dir: str | os.PathLike[str]) -> Path | None:
        """Full expected path of the file backing ``split`` under ``data_dir``."""
        relative = self.local_file(split)
        return None if relative is None else Path(data_dir) / relative


def heldout_split_indices(
    num_rows: int, heldout_size: int, seed: int = HELDOUT_SEED
) -> tuple[list[int], list[int]]:
    """Split row indices ``0..num_rows-1`` into (train, held-out validation).

    The held-out rows are the ``heldout_size`` indices ``i`` with the smallest
    ``blake2b(f"{seed}:{i}")`` digests: a seeded uniform random subset that,
    unlike ``numpy.random`` permutations (whose algorithms NumPy may change
    between versions), is the same on every platform and library version, so
    documented validation scores keep referring to the same rows. Both lists
    are in file order and are disjoint and exhaustive.
    """
    if not 0 < heldout_size < num_rows:
        raise ValueError(
            f"Cannot hold out {heldout_size} of {num_rows} rows: need "
            f"0 < heldout_size < num_rows."
        )

    def key(index: int) -> bytes:
        return hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()

    held = set(sorted(range(num_rows), key=key)[:heldout_size])
    train = [i for i in range(num_rows) if i not in held]
    return train, sorted(held)


def _superglue(
    name: str,
    directory: str,
    verbalizers: tuple[str, ...],
    input_fields: tuple[tuple[str, str], ...],
    label_values: tuple[Any, ...],
) -> Task:
    return Task(
        name=name,
        verbalizers=verbalizers,
        metric="accuracy",
        tfds_name=f"super_glue/{name}",
        input_fields=input_fields,
        local_format="jsonl",
        local_files=(
            ("train", f"superglue/{directory}/train32.jsonl"),
            ("validation", f"superglue/{directory}/val.jsonl"),
        ),
        local_fields=tuple((feature, feature) for _, feature in input_fields),
        local_label_values=label_values,
        notes=(
            "train = FewGLUE 32-shot train32.jsonl; validation = official "
            "SuperGLUE val.jsonl; the SuperGLUE test set is unlabelled."
        ),
    )


_HELDOUT_NOTE = (
    "The official dev set is not shipped: validation = {n} rows of train held "
    "out with seed {seed}; train = the remaining rows."
)

TASKS: dict[str, Task] = {
    "sst2": Task(
        name="sst2",
        verbalizers=("negative", "positive"),
        metric="accuracy",
        tfds_name="glue/sst2",
        input_fields=(("sentence", "sentence"),),
        local_format="tsv",
        local_files=(("train", "glue/SST-2/train.tsv"),),
        local_fields=(("sentence", "sentence"),),
        local_label_values=("0", "1"),
        heldout_validation_size=HELDOUT_VALIDATION_SIZES["sst2"],
        notes=_HELDOUT_NOTE.format(n=HELDOUT_VALIDATION_SIZES["sst2"], seed=0)
        + " GLUE's SST-2 test set is unlabelled.",
    ),
    "mrpc": Task(
        name="mrpc",
        verbalizers=("not_equivalent", "equivalent"),
        metric="f1_accuracy",
        tfds_name="glue/mrpc",
        input_fields=(("sentence1", "sentence1"), ("sentence2", "sentence2")),
        local_format="tsv",
        local_files=(
            ("train", "glue/MRPC/train.tsv"),
            ("test", "glue/MRPC/test.tsv"),
        ),
        local_fields=(("#1 String", "sentence1"), ("#2 String", "sentence2")),
        local_label_field="Quality",
        local_label_values=("0", "1"),
        heldout_validation_size=HELDOUT_VALIDATION_SIZES["mrpc"],
        notes=_HELDOUT_NOTE.format(n=HELDOUT_VALIDATION_SIZES["mrpc"], seed=0)
        + " GLUE's MRPC test.tsv is unlabelled.",
    ),
    "qqp": Task(
        name="qqp",
        verbalizers=("not_duplicate", "duplicate"),
        metric="f1_accuracy",
        tfds_name="glue/qqp",
        input_fields=(("question1", "question1"), ("question2", "question2")),
        local_format="json",
        local_files=(
            ("train", "glue/QQP/train_subset.json"),
            ("validation", "glue/QQP/dev_subset.json"),
        ),
        local_fields=(("text_a", "question1"), ("text_b", "question2")),
        local_label_values=("0", "1"),
        notes=(
            "Local files are a labelled QQP subset (train_subset / dev_subset), "
            "not the official splits."
        ),
    ),
    "rte": Task(
        name="rte",
        verbalizers=("entailment", "not_entailment"),
        metric="accuracy",
        tfds_name="super_glue/rte",
        input_fields=(("sentence1", "premise"), ("sentence2", "hypothesis")),
        local_format="jsonl",
        local_files=(
            ("train", "superglue/RTE/train.jsonl"),
            ("test", "superglue/RTE/test.jsonl"),
        ),
        local_fields=(("premise", "premise"), ("hypothesis", "hypothesis")),
        local_label_values=("entailment", "not_entailment"),
        heldout_validation_size=HELDOUT_VALIDATION_SIZES["rte"],
        notes=_HELDOUT_NOTE.format(n=HELDOUT_VALIDATION_SIZES["rte"], seed=0)
        + " SuperGLUE's RTE test.jsonl is unlabelled.",
    ),
    "boolq": _superglue(
        "boolq",
        "BoolQ",
        ("False", "True"),
        (("passage", "passage"), ("question", "question")),
        (False, True),
    ),
    "cb": _superglue(
        "cb",
        "CB",
        ("entailment", "contradiction", "neutral"),
        (("hypothesis", "hypothesis"), ("premise", "premise")),
        ("entailment", "contradiction", "neutral"),
    ),
    "copa": _superglue(
        "copa",
        "COPA",
        ("choice1", "choice2"),
        (
            ("choice1", "choice1"),
            ("choice2", "choice2"),
            ("premise", "premise"),
            ("question", "question"),
        ),
        (0, 1),
    ),
    "wic": _superglue(
        "wic",
        "WiC",
        ("False", "True"),
        (("sentence1", "sentence1"), ("sentence2", "sentence2"), ("word", "word")),
        (False, True),
    ),
}


def get_task(name: str | Task) -> Task:
    """Look up a task by (case-insensitive) name; a :class:`Task` passes through."""
    if isinstance(name, Task):
        return name
    key = str(name).strip().lower()
    if key not in TASKS:
        raise ValueError(
            f"Unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}."
        )
    return TASKS[key]
