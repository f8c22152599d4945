"""Configuration of the unit vocoder (units -> waveform)."""

from __future__ import annotations

from transformers import PreTrainedConfig

__all__ = ["UnitVocoderConfig"]


class UnitVocoderConfig(PreTrainedConfig):
    r"""
    Configuration of [`UnitVocoder`]: unit embeddings -> ConvNeXt stack -> an inverse-STFT head.

    Args:
        n_units (`int`, defaults to 256): size of the unit vocabulary (ids `0..n_units-1`; -1 pads).
        sampling_rate (`int`, defaults to 16000): output rate.
        unit_rate (`float`, defaults to 50.0): units per second (before de-duplication).
        hidden_size (`int`, defaults to 256), intermediate_size (`int`, defaults to 768),
        kernel_size (`int`, defaults to 7): ConvNeXt block sizes.
        num_unit_layers (`int`, defaults to 4): blocks at the unit rate.
        upsample (`int`, defaults to 2): frame-rate factor between the unit rate and the STFT frames.
        num_frame_layers (`int`, defaults to 4): blocks at the STFT frame rate.
        n_fft (`int`, defaults to 640): STFT size of the head (hop = `sampling_rate / (unit_rate * upsample)`).
        speakers (`list[str]`, *optional*): speaker names; id 0 is "unknown speaker", name `i` has id `i + 1`.
        speaker_dropout (`float`, defaults to 0.3): share of training examples shown as the unknown speaker,
            so that voices never heard in training get a good default.
        n_mels (`int`, defaults to 80): mel bins of the training loss.

    Example:
        >>> from hf_slm.vocoders import UnitVocoderConfig
        >>> UnitVocoderConfig(n_units=100).hop_length
        160
    """

    model_type = "hf_slm_unit_vocoder"

    n_units: int = 256
    sampling_rate: int = 16_000
    unit_rate: float = 50.0
    hidden_size: int = 256
    intermediate_size: int = 768
    kernel_size: int = 7
    num_unit_layers: int = 4
    upsample: int = 2
    num_frame_layers: int = 4
    n_fft: int = 640
    speakers: list[str] | None = None
    speaker_dropout: float = 0.3
    n_mels: int = 80

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        frames_per_second = self.unit_rate * self.upsample
        if self.sampling_rate % frames_per_second:
            raise ValueError(
                f"unit_rate * upsample ({frames_per_second}) must divide sampling_rate {self.sampling_rate}"
            )
        if self.n_fft < self.hop_length:
            raise ValueError(f"n_fft {self.n_fft} is shorter than the hop {self.hop_length}")

    @property
    def hop_length(self) -> int:
        return int(self.sampling_rate // (self.unit_rate * self.upsample))

    @property
    def samples_per_unit(self) -> int:
        return self.hop_length * self.upsample

    @property
    def num_speakers(self) -> int:
        return 1 + len(self.speakers or [])

    def speaker_id(self, name: str | None) -> int:
        """Id of a speaker name; 0 (unknown) for None or a voice not seen in training."""
        if name is None or not self.speakers or name not in self.speakers:
            return 0
        return self.speakers.index(name) + 1
