"""Family 3: the speech-aware text LM (SALMONN / Qwen-Audio / Ultravox)."""

from hf_slm.models.speech_aware_lm.configuration_speech_aware_lm import (
    ADAPTER_TYPES,
    SpeechAwareLMConfig,
    audio_output_length,
)
from hf_slm.models.speech_aware_lm.modeling_speech_aware_lm import (
    SpeechAwareLMForConditionalGeneration,
    SpeechAwareLMOutputWithPast,
    build_adapter,
)
from hf_slm.models.speech_aware_lm.processing_speech_aware_lm import (
    CHAT_TEMPLATE,
    CHAT_TOKENS,
    SpeechAwareLMProcessor,
)

__all__ = [
    "ADAPTER_TYPES",
    "CHAT_TEMPLATE",
    "CHAT_TOKENS",
    "SpeechAwareLMConfig",
    "SpeechAwareLMForConditionalGeneration",
    "SpeechAwareLMOutputWithPast",
    "SpeechAwareLMProcessor",
    "audio_output_length",
    "build_adapter",
]
