"""Configuration of the speech+text LM (family 2: Spirit LM / SpeechGPT / VoxtLM)."""

from __future__ import annotations

from hf_slm.models.speech_lm.configuration_speech_lm import SpeechLMConfig

__all__ = ["MARKERS", "SpeechTextLMConfig", "unit_token"]

# Tokens appended to the text vocabulary, in this order, right after its last text token:
# the two modality markers (Spirit LM), two task markers (VoxtLM-style task tokens, so that "say
# this" and "continue this" differ), and the placeholder the processor puts where a clip's units go.
MARKERS = ("[TEXT]", "[SPEECH]", "[ASR]", "[TTS]", "[AUDIO]")


def unit_token(u: int) -> str:
    """The token string of speech unit ``u`` in the processor's tokenizer."""
    return f"[U{u}]"


class SpeechTextLMConfig(SpeechLMConfig):
    r"""
    Configuration of [`SpeechTextLMForCausalLM`]: one causal LM over text tokens and speech units,
    with the unit tokenizer and vocoder that turn audio into units and back.

    Vocabulary: text tokens `0 .. text_vocab_size - 1` (the text tokenizer's own ids, its pad / begin
    / end tokens included), then the markers `[TEXT]`, `[SPEECH]`, `[ASR]`, `[TTS]` and the audio
    placeholder `[AUDIO]`, then the speech units (unit `u` is token `unit_offset + u`).

    Args:
        unit_tokenizer_config, text_config, vocoder_config, max_audio_seconds:
            as in [`SpeechLMConfig`]. `text_config.vocab_size` is set to the full vocabulary.
        text_vocab_size (`int`, defaults to 1000): size of the text tokenizer's vocabulary.
        pad_token_id, bos_token_id, eos_token_id (`int`): the text tokenizer's ids for them.

    Example:
        >>> from hf_slm.models.speech_text_lm import SpeechTextLMConfig
        >>> config = SpeechTextLMConfig(
        ...     text_vocab_size=100, unit_tokenizer_config={"n_units": 16},
        ...     text_config={"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
        ...                  "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2},
        ... )
        >>> config.speech_token_id, config.unit_offset, config.vocab_size
        (101, 105, 121)
    """

    model_type = "hf_slm_speech_text_lm"

    text_vocab_size: int = 1000

    def __post_init__(self, **kwargs):
        if self.text_vocab_size <= max(
            self.pad_token_id or 0, self.bos_token_id or 0, self.eos_token_id or 0
        ):
            raise ValueError(
                f"text_vocab_size {self.text_vocab_size} must cover the text tokenizer's pad, bos and eos ids"
            )
        super().__post_init__(**kwargs)

    @property
    def unit_offset(self) -> int:
        return self.text_vocab_size + len(MARKERS)

    def marker_id(self, marker: str) -> int:
        """Token id of one of `MARKERS` (e.g. `"[SPEECH]"`)."""
        if marker not in MARKERS:
            raise ValueError(f"unknown marker {marker!r}: one of {MARKERS}")
        return self.text_vocab_size + MARKERS.index(marker)

    @property
    def text_token_id(self) -> int:
        return self.marker_id("[TEXT]")

    @property
    def speech_token_id(self) -> int:
        return self.marker_id("[SPEECH]")

    @property
    def asr_token_id(self) -> int:
        return self.marker_id("[ASR]")

    @property
    def tts_token_id(self) -> int:
        return self.marker_id("[TTS]")

    @property
    def audio_token_id(self) -> int:
        return self.marker_id("[AUDIO]")
