"""Family 2: the speech+text LM (Spirit LM / SpeechGPT / VoxtLM)."""

from hf_slm.models.speech_text_lm.configuration_speech_text_lm import MARKERS, SpeechTextLMConfig, unit_token
from hf_slm.models.speech_text_lm.modeling_speech_text_lm import (
    MODALITIES,
    SpeechTextLMForCausalLM,
    SpeechTextLMGenerateOutput,
)
from hf_slm.models.speech_text_lm.processing_speech_text_lm import TASKS, SpeechTextLMProcessor

__all__ = [
    "MARKERS",
    "MODALITIES",
    "TASKS",
    "SpeechTextLMConfig",
    "SpeechTextLMForCausalLM",
    "SpeechTextLMGenerateOutput",
    "SpeechTextLMProcessor",
    "unit_token",
]
