"""ExampleGen's output as `keras_prompt.data.Example`s of a task.

Input: gzipped TFRecords of `tf.Example`s, one feature per CSV column, as
`CsvExampleGen` writes them from a task CSV. The columns a task needs are its
canonical feature names (`keras_prompt.data.TASKS[task].tfds_features`, e.g.
`sentence,label` for SST-2, `premise,hypothesis,label` for RTE); the column
names of the task's official files (`#1 String`, `Quality`, `text_a`, ...) are
accepted too. Labels may be class indices, verbalizers (`positive`) or the raw
values of the official files (`entailment`, `True`). No input files or a
missing column raise `TrainerInputError`.
"""

from __future__ import annotations

from typing import Any, Sequence

from keras_prompt.tfx.options import TrainerInputError


# ----------------------------------------------------------------------
# Reading ExampleGen's output.
# ----------------------------------------------------------------------
def _expand(patterns: str | Sequence[str]) -> list[str]:
    import tensorflow as tf

    if isinstance(patterns, str):
        patterns = [patterns]
    files: list[str] = []
    for pattern in patterns:
        files.extend(sorted(tf.io.gfile.glob(pattern)))
    return files


def _feature_values(feature) -> list[Any]:
    kind = feature.WhichOneof("kind")
    return list(getattr(feature, kind).value) if kind else []


def _as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _parse_label(task, value: Any) -> int | None:
    """Label index from an index, a verbalizer or an official-file label value."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return value if 0 <= value < task.num_classes else None
    text = _as_text(value).strip()
    if text.lstrip("-").isdigit():
        return _parse_label(task, int(text))
    folded = text.lower()
    for index, name in enumerate(task.verbalizers):
        if name.lower() == folded:
            return index
    for index, raw in enumerate(task.local_label_values):
        if str(raw).lower() == folded:
            return index
    return None


def read_examples(
    file_patterns: str | Sequence[str], task: Any, *, limit: int | None = None
) -> list:
    """`keras_prompt.data.Example`s from ExampleGen TFRecords of a task.

    Args:
        file_patterns: glob pattern(s), as TFX's `fn_args.train_files`.
        task: a `keras_prompt.data.Task` or its name.
        limit: keep the first `limit` examples.

    Raises:
        TrainerInputError: no files match, a column the task needs is absent,
            or an example has an empty field or an unknown label.
    """
    import tensorflow as tf

    from keras_prompt.data import Example, get_task

    task = get_task(task)
    files = _expand(file_patterns)
    if not files:
        raise TrainerInputError(f"No example files match {list(file_patterns)}.")
    compression = "GZIP" if files[0].endswith(".gz") else ""
    records = tf.data.TFRecordDataset(files, compression_type=compression)

    # Canonical feature name -> accepted column names, in preference order.
    aliases = {
        feature: [feature]
        + [
            column
            for column, f in task.local_fields
            if f == feature and column != feature
        ]
        for _, feature in task.input_fields
    }
    label_columns = ["label"] + (
        [task.local_label_field] if task.local_label_field != "label" else []
    )
    columns: dict[str, str] | None = None
    examples = []
    for index, record in enumerate(records.as_numpy_iterator()):
        if limit is not None and index >= limit:
            break
        proto = tf.train.Example.FromString(record)
        values = {k: _feature_values(v) for k, v in proto.features.feature.items()}
        if columns is None:
            columns = _resolve_columns(task, aliases, label_columns, values, files)
        features = {}
        for feature, column in columns.items():
            found = values.get(column, [])
            if not found or (feature != "label" and not _as_text(found[0]).strip()):
                raise TrainerInputError(
                    f"Example {index} of {files[0] if len(files) == 1 else files} "
                    f"has no value in column {column!r}, which task {task.name!r} "
                    "needs (an empty CSV cell?)."
                )
            features[feature] = found[0]
        label = _parse_label(task, features.pop("label"))
        if label is None:
            raise TrainerInputError(
                f"Example {index}: label {_as_text(values[columns['label']][0])!r} "
                f"in column {columns['label']!r} is not a label of task "
                f"{task.name!r}: use 0..{task.num_classes - 1} or one of "
                f"{list(task.verbalizers)}."
            )
        text = {k: _as_text(v) for k, v in features.items()}
        examples.append(
            Example(task.format_input(text), task.format_target(label), label)
        )
    if not examples:
        raise TrainerInputError(f"The example files {files} hold no examples.")
    return examples


def _resolve_columns(task, aliases, label_columns, values, files) -> dict[str, str]:
    """Canonical feature -> column name present in the data (first example)."""
    columns: dict[str, str] = {}
    wanted = {**aliases, "label": label_columns}
    missing = []
    for feature, names in wanted.items():
        present = [n for n in names if n in values]
        if present:
            columns[feature] = present[0]
        else:
            missing.append(
                names[0] if len(names) == 1 else " or ".join(map(repr, names))
            )
    if missing:
        raise TrainerInputError(
            f"Task {task.name!r} needs column(s) {missing}, which the examples in "
            f"{files[0] if len(files) == 1 else files} lack; they have columns "
            f"{sorted(values)}. A task CSV needs the header "
            f"{','.join(task.tfds_features)} (write one with "
            "keras_prompt.tfx.write_task_csv)."
        )
    return columns
