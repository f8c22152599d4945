"""Vocoders: discrete units -> waveform."""

from hf_slm.vocoders.configuration_unit_vocoder import UnitVocoderConfig
from hf_slm.vocoders.modeling_unit_vocoder import UnitVocoder, UnitVocoderOutput, expand_durations

__all__ = ["UnitVocoder", "UnitVocoderConfig", "UnitVocoderOutput", "expand_durations"]
