"""TFX integration: a Trainer `run_fn` and a ready-made pipeline.

* `run_fn(fn_args)`: the TFX Trainer entry point. It prompt-tunes a frozen T5
  on the examples `CsvExampleGen` made from a task CSV, evaluates the prompt
  by rank classification, and writes a TF Serving SavedModel (with the
  `serve_tf_examples` signature TFX tooling expects) for the Pusher.
  `MODULE_FILE` is a module file for `Trainer(module_file=...)` exporting it.
* `create_pipeline(...)`: CsvExampleGen -> Trainer -> Pusher for one task, a
  `tfx.dsl.Pipeline` that `run_local` runs with `LocalDagRunner` and that the
  Kubeflow / Vertex runners take as is.

TFX (1.16, on Python 3.10 with TF 2.16) is imported only inside the functions
that need it: `import keras_prompt` never imports TFX, and `run_fn` needs none.
"""

from keras_prompt.tfx.pipeline import (
    DEFAULT_STEPS,
    LOCAL_BEAM_ARGS,
    component_wall_times,
    create_pipeline,
    run_local,
    write_task_csv,
)
from keras_prompt.tfx.trainer import (
    MODULE_FILE,
    REPORT_FILE,
    TrainerInputError,
    TrainerOptions,
    read_examples,
    run_fn,
)

__all__ = [
    "DEFAULT_STEPS",
    "LOCAL_BEAM_ARGS",
    "MODULE_FILE",
    "REPORT_FILE",
    "TrainerInputError",
    "TrainerOptions",
    "component_wall_times",
    "create_pipeline",
    "read_examples",
    "run_fn",
    "run_local",
    "write_task_csv",
]
