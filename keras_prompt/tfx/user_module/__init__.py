"""Holds the TFX module file `keras_prompt_trainer.py` (see its docstring).

This `__init__.py` only makes the folder part of the installed package; TFX
leaves `__init__.py` out of the user-code wheel it builds from the folder.
"""
