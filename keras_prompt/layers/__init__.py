from keras_prompt.layers.soft_prompt import SoftPrompt

__all__ = ["SoftPrompt"]
