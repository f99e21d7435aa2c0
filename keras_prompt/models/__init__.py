from keras_prompt.models.geometries import T5_GEOMETRIES, build_backbone
from keras_prompt.models.prompt_tuned_t5 import PromptTunedT5
from keras_prompt.models.prompted_t5 import PromptedT5

__all__ = ["PromptTunedT5", "PromptedT5", "T5_GEOMETRIES", "build_backbone"]
