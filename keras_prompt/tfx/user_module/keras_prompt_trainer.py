"""TFX Trainer module file: `Trainer(module_file=keras_prompt.tfx.MODULE_FILE)`.

TFX packages this file (and every other `.py` file in its folder but
`__init__.py`) into a wheel that it installs on the Trainer's worker, then
calls `run_fn` from it. The training code itself lives in
`keras_prompt.tfx.trainer`, which the worker must have installed: the file is
a shim so a pipeline can name a module file, as TFX pipelines usually do.
A user module of your own can do the same: `from keras_prompt.tfx import run_fn`.
"""

from keras_prompt.tfx.trainer import run_fn

__all__ = ["run_fn"]
