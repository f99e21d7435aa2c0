"""Data: GLUE / SuperGLUE tasks in T5's text-to-text form, readers, pipelines."""

from keras_prompt.data.evaluation import (
    INVALID_LABEL,
    accuracy,
    compute_metrics,
    f1_score,
    label_from_text,
    rank_classification_metrics,
    roc_auc,
)
from keras_prompt.data.pipeline import default_bucket_boundaries, make_dataset
from keras_prompt.data.readers import (
    DataFormatError,
    Example,
    SplitSource,
    UnlabelledSplitError,
    load_examples,
    split_source,
)
from keras_prompt.data.tasks import (
    HELDOUT_SEED,
    HELDOUT_VALIDATION_SIZES,
    SPLITS,
    TASKS,
    LocalFile,
    Task,
    get_task,
    heldout_split_indices,
)

__all__ = [
    "HELDOUT_SEED",
    "HELDOUT_VALIDATION_SIZES",
    "INVALID_LABEL",
    "SPLITS",
    "TASKS",
    "DataFormatError",
    "Example",
    "LocalFile",
    "SplitSource",
    "Task",
    "UnlabelledSplitError",
    "accuracy",
    "compute_metrics",
    "default_bucket_boundaries",
    "f1_score",
    "get_task",
    "heldout_split_indices",
    "label_from_text",
    "load_examples",
    "rank_classification_metrics",
    "roc_auc",
    "split_source",
    "make_dataset",
]
