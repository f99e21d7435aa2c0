"""Swapping the class of layers keras-hub creates inside its backbones."""

from __future__ import annotations

import keras

from keras_prompt import compat


def switch_layer_classes(
    layer: keras.layers.Layer, old_class: type, new_class: type
) -> int:
    """Sets the class of every sublayer of exactly `old_class` to `new_class`.

    Only the class of the existing objects changes (weights, seed generators,
    configs and tracking stay), so `new_class` must be a subclass that changes
    computation only. Does nothing unless the Keras backend is TensorFlow (the
    replacements use TensorFlow ops). Returns the number switched.
    """
    if keras.config.backend() != "tensorflow":
        return 0
    switched = 0
    for sublayer in compat.sublayers(layer):
        if type(sublayer) is old_class:
            sublayer.__class__ = new_class
            switched += 1
    return switched
