"""The three families of spoken language models."""

from hf_slm.models.speech_lm import SpeechLMConfig, SpeechLMForCausalLM, SpeechLMProcessor
from hf_slm.models.speech_text_lm import SpeechTextLMConfig, SpeechTextLMForCausalLM, SpeechTextLMProcessor

__all__ = [
    "SpeechLMConfig",
    "SpeechLMForCausalLM",
    "SpeechLMProcessor",
    "SpeechTextLMConfig",
    "SpeechTextLMForCausalLM",
    "SpeechTextLMProcessor",
]
