"""Which backbone is this? The one definition of a T5 backbone's identity.

A backbone's *architecture* is its keras-hub config without the settings
that do not change which weights fit it or what they compute (name, dtype,
trainable, dropout). Its *fingerprint* is a short hash of that. Prompt files,
prompt-state backups, pretraining checkpoints, PEFT imports and serving
exports record them, so a prompt or a checkpoint made for one geometry is
recognised when it meets another.

Example:

```python
import keras_hub
from keras_prompt.models.identity import backbone_fingerprint
backbone = keras_hub.models.T5Backbone(
    vocabulary_size=100, num_layers=1, num_heads=2, hidden_dim=8,
    intermediate_dim=16,
)
len(backbone_fingerprint(backbone))  # 16 hex digits
```
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: Config keys that do not identify a backbone.
_NOT_IDENTITY = ("name", "dtype", "trainable", "dropout")


def backbone_architecture(backbone) -> dict[str, Any]:
    """The backbone's config without name, dtype, trainable and dropout."""
    return {
        key: value
        for key, value in backbone.get_config().items()
        if key not in _NOT_IDENTITY
    }


def backbone_fingerprint(backbone) -> str:
    """A 16-hex-digit hash of `backbone_architecture`."""
    text = json.dumps(backbone_architecture(backbone), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def backbone_summary(backbone) -> dict[str, Any]:
    """What prompt files and state files record of a backbone."""
    return {
        "class_name": type(backbone).__name__,
        "fingerprint": backbone_fingerprint(backbone),
        "hidden_dim": int(backbone.hidden_dim),
        "num_layers": int(backbone.num_layers),
        "vocabulary_size": int(backbone.vocabulary_size),
    }
