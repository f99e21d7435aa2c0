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

Local files follow the layout of the official GLUE / SuperGLUE downloads
(``<data_dir>/glue/SST-2/train.tsv``, ``glue/SST-2/dev.tsv``,
``<data_dir>/superglue/RTE/val.jsonl``, ...). A split may be backed by several
files (:class:`LocalFile`), tried in order: the official file first, then the
stand-ins ``shared/assets`` ships. When no file of a split exists:

* SST-2, MRPC and RTE without their official dev sets (``dev.tsv`` /
  ``val.jsonl``): "validation" is a held-out, seed-:data:`HELDOUT_SEED`
  subset of the training file with the official dev set's size
  (:data:`HELDOUT_VALIDATION_SIZES`) and "train" is the rest (see
  :func:`heldout_split_indices`). With the official dev file present, it is
  "validation" and "train" is the whole training file.
* BoolQ, CB, COPA and WiC train on the official ``train.jsonl`` when present,
  else on FewGLUE's 32-shot ``train32.jsonl``, and validate on the official
  SuperGLUE ``val.jsonl``.

:func:`keras_prompt.data.split_source` tells which file (and which rows) a
split reads, for metrics files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
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

#: Local file formats: GLUE TSV with a header row, one JSON object mapping ids
#: to rows (the QQP subset), or JSON Lines (SuperGLUE).
LOCAL_FORMATS: tuple[str, ...] = ("tsv", "json", "jsonl")


@dataclass(frozen=True)
class LocalFile:
    """A file under ``data_dir`` that can back one split of a task.

    Attributes:
        split: "train", "validation" or "test".
        path: Path relative to ``data_dir``.
        official: Whether this is the split's official GLUE/SuperGLUE file
            (``False`` for stand-ins such as FewGLUE's 32-shot sets or the QQP
            subset), recorded in metrics files.
        format, fields, label_field, label_values: This file's layout when it
            differs from the task's ``local_*`` defaults (``None``: use those).
    """

    split: str
    path: str
    official: bool = True
    format: Literal["tsv", "json", "jsonl"] | None = None
    fields: tuple[tuple[str, str], ...] | None = None
    label_field: str | None = None
    label_values: tuple[Any, ...] | None = None


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
        local_files: :class:`LocalFile` entries (or ``(split, path)`` pairs,
            official files in the task's default layout). Several entries for
            one split are alternatives, the first existing one is read. A
            split missing here is either held out (see
            ``heldout_validation_size``) or not available locally.
        local_fields: ``(column or key in the file, feature)`` pairs.
        local_label_field: Column / key holding the label in the local file.
        local_label_values: Raw label values in the local file, by label
            index (compared type-strictly, so JSON ``false`` is not ``0``).
        heldout_validation_size: If set and no "validation" file exists,
            "validation" is this many rows held out of the local training
            file and "train" is the remainder.
        notes: Where the local splits come from, for docs and error messages.
    """

    name: str
    verbalizers: tuple[str, ...]
    metric: Literal["accuracy", "f1_accuracy"]
    tfds_name: str
    input_fields: tuple[tuple[str, str], ...]
    local_format: Literal["tsv", "json", "jsonl"]
    local_files: tuple[LocalFile | tuple[str, str], ...]
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
        files = tuple(
            entry if isinstance(entry, LocalFile) else LocalFile(*entry)
            for entry in self.local_files
        )
        for entry in files:
            if entry.split not in SPLITS:
                raise ValueError(
                    f"Task {self.name!r}: file {entry.path} backs unknown split "
                    f"{entry.split!r}."
                )
        object.__setattr__(self, "local_files", files)

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

    def local_candidates(self, split: str) -> tuple[LocalFile, ...]:
        """The files that can back ``split``, in the order they are tried."""
        return tuple(entry for entry in self.local_files if entry.split == split)

    def layout(self, entry: LocalFile) -> LocalFile:
        """``entry`` with the task's defaults filled into its layout fields."""
        return LocalFile(
            split=entry.split,
            path=entry.path,
            official=entry.official,
            format=entry.format or self.local_format,
            fields=entry.fields or self.local_fields,
            label_field=entry.label_field or self.local_label_field,
            label_values=entry.label_values or self.local_label_values,
        )


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
            LocalFile("train", f"superglue/{directory}/train.jsonl"),
            LocalFile("train", f"superglue/{directory}/train32.jsonl", official=False),
            LocalFile("validation", f"superglue/{directory}/val.jsonl"),
        ),
        local_fields=tuple((feature, feature) for _, feature in input_fields),
        local_label_values=label_values,
        notes=(
            "train = official SuperGLUE train.jsonl, else FewGLUE 32-shot "
            "train32.jsonl; validation = official SuperGLUE val.jsonl; the "
            "SuperGLUE test set is unlabelled."
        ),
    )


_HELDOUT_NOTE = (
    "validation = the official dev file when present, else {n} rows of train "
    "held out with seed {seed} (train = the remaining rows)."
)

# GLUE's official QQP files: id, qid1, qid2, question1, question2, is_duplicate.
_QQP_TSV = dict(
    format="tsv",
    fields=(("question1", "question1"), ("question2", "question2")),
    label_field="is_duplicate",
)

TASKS: dict[str, Task] = {
    "sst2": Task(
        name="sst2",
        verbalizers=("negative", "positive"),
        metric="accuracy",
        tfds_name="glue/sst2",
        input_fields=(("sentence", "sentence"),),
        local_format="tsv",
        local_files=(
            ("train", "glue/SST-2/train.tsv"),
            ("validation", "glue/SST-2/dev.tsv"),
        ),
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
        # GLUE's download script writes train.tsv / dev.tsv in MSR's own
        # layout (Quality, #1 ID, #2 ID, #1 String, #2 String); MSR's labelled
        # test file has that layout too, GLUE's test.tsv has no labels.
        local_files=(
            ("train", "glue/MRPC/train.tsv"),
            ("validation", "glue/MRPC/dev.tsv"),
            ("test", "glue/MRPC/msr_paraphrase_test.txt"),
            ("test", "glue/MRPC/test.tsv"),
        ),
        local_fields=(("#1 String", "sentence1"), ("#2 String", "sentence2")),
        local_label_field="Quality",
        local_label_values=("0", "1"),
        heldout_validation_size=HELDOUT_VALIDATION_SIZES["mrpc"],
        notes=_HELDOUT_NOTE.format(n=HELDOUT_VALIDATION_SIZES["mrpc"], seed=0)
        + " test = MSR's labelled msr_paraphrase_test.txt when present (GLUE's "
        "test.tsv is unlabelled).",
    ),
    "qqp": Task(
        name="qqp",
        verbalizers=("not_duplicate", "duplicate"),
        metric="f1_accuracy",
        tfds_name="glue/qqp",
        input_fields=(("question1", "question1"), ("question2", "question2")),
        local_format="json",
        local_files=(
            LocalFile("train", "glue/QQP/train.tsv", **_QQP_TSV),
            LocalFile("train", "glue/QQP/train_subset.json", official=False),
            LocalFile("validation", "glue/QQP/dev.tsv", **_QQP_TSV),
            LocalFile("validation", "glue/QQP/dev_subset.json", official=False),
        ),
        local_fields=(("text_a", "question1"), ("text_b", "question2")),
        local_label_values=("0", "1"),
        notes=(
            "Official GLUE train.tsv / dev.tsv when present, else a labelled "
            "QQP subset (train_subset.json / dev_subset.json)."
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
            ("validation", "superglue/RTE/val.jsonl"),
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
