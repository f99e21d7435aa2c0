"""Checkpoints shipped inside the package (keras-hub preset directories).

``t5_1_1_mini_lm/`` is a small T5 1.1-style model pretrained from scratch by
``keras-prompt lm-adapt`` on an English corpus built from this machine's
Debian packages and the task training text (see its ``MODEL_CARD.md`` and
``docs/pretraining.md``). It is the default frozen model when no other is
given: no public pretrained T5 can be downloaded where this project is
developed, and prompt tuning needs a *pretrained* backbone.
"""

from __future__ import annotations

from pathlib import Path

#: Name of the embedded default checkpoint (a directory beside this file).
DEFAULT_PRESET = "t5_1_1_mini_lm"


def preset_path(name: str) -> Path:
    """Directory of an embedded preset; raises if it is not shipped."""
    path = Path(__file__).resolve().parent / name
    if not (path / "config.json").is_file():
        available = sorted(
            p.name
            for p in Path(__file__).resolve().parent.iterdir()
            if (p / "config.json").is_file()
        )
        raise FileNotFoundError(
            f"No embedded preset {name!r} in {path.parent} (available: {available})."
        )
    return path


def default_preset_path() -> Path:
    """The embedded default checkpoint, for `from_preset(...)` / `--model`.

    Example:

    ```python
    import keras_prompt
    from keras_prompt.presets import default_preset_path
    model = keras_prompt.PromptTunedT5.from_preset(default_preset_path())
    ```
    """
    return preset_path(DEFAULT_PRESET)
