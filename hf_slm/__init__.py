"""hf-slm: a Hugging Face-native zoo of spoken language models.

``import hf_slm`` registers every model, config and processor of ours with the transformers Auto
classes (see ``hf_slm/auto.py``), so ``AutoModel.from_pretrained(folder)`` just works.
"""

from hf_slm import auto
from hf_slm.audio import DEFAULT_SAMPLING_RATE, AudioError, load_audio
from hf_slm.auto import MODEL_REGISTRY, ModelSpec, register_model
from hf_slm.models import (
    SpeechAwareLMConfig,
    SpeechAwareLMForConditionalGeneration,
    SpeechAwareLMProcessor,
    SpeechLMConfig,
    SpeechLMForCausalLM,
    SpeechLMProcessor,
    SpeechTextLMConfig,
    SpeechTextLMForCausalLM,
    SpeechTextLMProcessor,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_SAMPLING_RATE",
    "MODEL_REGISTRY",
    "AudioError",
    "ModelSpec",
    "SpeechAwareLMConfig",
    "SpeechAwareLMForConditionalGeneration",
    "SpeechAwareLMProcessor",
    "SpeechLMConfig",
    "SpeechLMForCausalLM",
    "SpeechLMProcessor",
    "SpeechTextLMConfig",
    "SpeechTextLMForCausalLM",
    "SpeechTextLMProcessor",
    "auto",
    "load_audio",
    "register_model",
]
