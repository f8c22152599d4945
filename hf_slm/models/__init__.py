"""The three families of spoken language models."""

from hf_slm.models.speech_aware_lm import (
    SpeechAwareLMConfig,
    SpeechAwareLMForConditionalGeneration,
    SpeechAwareLMProcessor,
)
from hf_slm.models.speech_lm import SpeechLMConfig, SpeechLMForCausalLM, SpeechLMProcessor
from hf_slm.models.speech_text_lm import SpeechTextLMConfig, SpeechTextLMForCausalLM, SpeechTextLMProcessor

__all__ = [
    "SpeechAwareLMConfig",
    "SpeechAwareLMForConditionalGeneration",
    "SpeechAwareLMProcessor",
    "SpeechLMConfig",
    "SpeechLMForCausalLM",
    "SpeechLMProcessor",
    "SpeechTextLMConfig",
    "SpeechTextLMForCausalLM",
    "SpeechTextLMProcessor",
]
