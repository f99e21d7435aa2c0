"""Loads a pushed SavedModel in a TF-only process and queries it (test helper).

Usage: python tf_only_client.py SAVED_MODEL_DIR

An import hook refuses keras, keras-hub, keras-prompt and TFX, so the check
proves the pushed artifact needs TensorFlow and TF Text's op kernels only,
as the stock TF Serving binary provides (TF Text's SentencePiece kernels are
loaded from its op library, not its Python package, which imports keras).
Prints one JSON object: the signatures and the outputs of `serve_tf_examples`
(with and without a `task` feature) and `serving_default`.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import os
import sys

BLOCKED = {"keras", "keras_hub", "keras_nlp", "keras_prompt", "tfx"}


class Refused(ModuleNotFoundError, ValueError):
    """A refused import. Also a ValueError: `import tensorflow` probes for
    keras with `importlib.util.find_spec`, which it guards with ValueError."""


class _Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise Refused(f"TF-only process: refusing to import {name!r}", name=name)
        return None


def main(saved_model_dir: str) -> None:
    sys.meta_path.insert(0, _Refuse())
    import tensorflow as tf

    # TF Text's SentencePiece kernels, as the model server links them, without
    # its Python package (which imports keras).
    spec = importlib.util.find_spec("tensorflow_text")
    ops_dir = os.path.join(spec.submodule_search_locations[0], "python", "ops")
    tf.load_op_library(os.path.join(ops_dir, "_sentencepiece_tokenizer.so"))

    loaded = tf.saved_model.load(saved_model_dir)

    def example(text: str, task: str | None = None) -> bytes:
        feature = {
            "text": tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[text.encode()])
            )
        }
        if task is not None:
            feature["task"] = tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[task.encode()])
            )
        proto = tf.train.Example(features=tf.train.Features(feature=feature))
        return proto.SerializeToString()

    texts = ["sst2 sentence: a gem of a film", "sst2 sentence: dull and slow"]
    plain = loaded.signatures["serve_tf_examples"](
        examples=tf.constant([example(t) for t in texts])
    )
    tagged = loaded.signatures["serve_tf_examples"](
        examples=tf.constant([example(t, "sst2") for t in texts])
    )
    prompt = loaded.prompt_bank.numpy()[:1]
    generated = loaded.signatures["serving_default"](
        text=tf.constant(texts[:1]), prompt=tf.constant(prompt)
    )

    def plain_values(outputs):
        return {
            k: [v.decode() if isinstance(v, bytes) else v for v in t.numpy().tolist()]
            for k, t in outputs.items()
        }

    print(
        json.dumps(
            {
                "tensorflow": tf.__version__,
                "signatures": sorted(loaded.signatures),
                "serve_tf_examples": plain_values(plain),
                "serve_tf_examples_with_task": plain_values(tagged),
                "serving_default": plain_values(generated),
                "prompt_shape": list(prompt.shape),
                "imported_keras": "keras" in sys.modules,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
