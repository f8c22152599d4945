"""Processor of the pure speech LM: any audio in, padded 16 kHz waveforms out."""

from __future__ import annotations

from typing import Any, TypedDict, Unpack

from transformers import BatchFeature, ProcessorMixin, Wav2Vec2FeatureExtractor
from transformers.processing_utils import AudioKwargs, ProcessingKwargs

from hf_slm.audio import AudioError, load_audio

__all__ = ["SpeechAudioKwargs", "SpeechLMProcessor", "SpeechLMProcessorKwargs"]

# The audio kwargs of our processors: transformers' `AudioKwargs` with a `sampling_rate` that is one
# rate for all clips or a list of one per clip, checked by `hf_slm.load_audio` (whose error names the
# fix) rather than by transformers' validator (which refuses lists and numpy integers). The functional
# syntax keeps the annotations classes, as `_merge_kwargs` reads them (`from __future__ import
# annotations` would make class-syntax ones strings).
SpeechAudioKwargs = TypedDict(
    "SpeechAudioKwargs", {**AudioKwargs.__annotations__, "sampling_rate": Any}, total=False
)
SpeechLMProcessorKwargs = TypedDict(
    "SpeechLMProcessorKwargs",
    {**ProcessingKwargs.__annotations__, "audio_kwargs": SpeechAudioKwargs},
    total=False,
)


class SpeechLMProcessor(ProcessorMixin):
    r"""
    Turns clips from anywhere (paths, bytes, arrays with their rate, `datasets` Audio values) into
    the `input_values` / `attention_mask` batch [`SpeechLMForCausalLM`] takes: each clip goes through
    [`hf_slm.load_audio`] (mono, resampled, validated), then transformers' `Wav2Vec2FeatureExtractor`
    pads the batch (no normalisation: the unit tokenizer normalises its own features).

    Call-time kwargs are transformers' audio kwargs (`padding`, `max_length`, `truncation`,
    `pad_to_multiple_of`, `return_attention_mask`, `return_tensors`), flat or as `audio_kwargs={...}`;
    by default the batch is padded to its longest clip, with its mask, as PyTorch tensors.

    Args:
        feature_extractor (`Wav2Vec2FeatureExtractor`): pads raw waveforms at its `sampling_rate`.
        max_seconds (`float`, defaults to 30.0): longer clips are refused with a clear error.

    Example:
        >>> import numpy as np
        >>> from hf_slm.models.speech_lm import SpeechLMProcessor
        >>> proc = SpeechLMProcessor.default()
        >>> batch = proc(audio=[np.zeros(8000), np.zeros(44100)], sampling_rate=[16000, 44100], return_tensors="pt")
        >>> tuple(batch["input_values"].shape), batch["attention_mask"].sum(1).tolist()
        ((2, 16000), [8000, 16000])
    """

    valid_processor_kwargs = SpeechLMProcessorKwargs
    # defaults that differ from the feature extractor's: the model takes a padded batch and its mask
    audio_kwargs = {"padding": True, "return_attention_mask": True, "return_tensors": "pt"}

    def __init__(self, feature_extractor: Wav2Vec2FeatureExtractor, max_seconds: float = 30.0) -> None:
        self.max_seconds = max_seconds
        super().__init__(feature_extractor)

    @classmethod
    def default(cls, sampling_rate: int = 16_000, max_seconds: float = 30.0) -> SpeechLMProcessor:
        fe = Wav2Vec2FeatureExtractor(
            feature_size=1,
            sampling_rate=sampling_rate,
            padding_value=0.0,
            do_normalize=False,
            return_attention_mask=True,
        )
        return cls(fe, max_seconds=max_seconds)

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    def __call__(self, audio: Any = None, **kwargs: Unpack[SpeechLMProcessorKwargs]) -> BatchFeature:
        """Pad one clip or a list of clips.

        Args:
            audio: one clip or a list of clips (see [`hf_slm.load_audio`]).
            sampling_rate (`int` or `list[int]`): the rate of array inputs: one for all, or one per clip.
                Files carry their own.
            return_tensors: `"pt"` (default), `"np"` or `None`.
        """
        if kwargs.pop("text", None) is not None:
            raise ValueError("a pure speech LM takes audio only: use the speech+text LM for text prompts")
        if audio is None:
            raise AudioError("no audio given: pass audio=CLIP or audio=[CLIP, ...]")
        audio_kwargs = self._merge_kwargs(SpeechLMProcessorKwargs, **kwargs)["audio_kwargs"]
        sampling_rate = audio_kwargs.pop("sampling_rate", None)
        for key in ("raw_speech", "load_audio_backend"):  # clips come as `audio`, decoded by load_audio
            audio_kwargs.pop(key, None)
        waves = _load_clips(audio, sampling_rate, self.sampling_rate, self.max_seconds)
        return self.feature_extractor(waves, sampling_rate=self.sampling_rate, **audio_kwargs)


def _load_clips(audio: Any, sampling_rate: Any, target_sampling_rate: int, max_seconds: float) -> list:
    """One clip or a list of clips, each through `load_audio`; `sampling_rate` is one for all or one per clip."""
    clips = list(audio) if _is_batch(audio) else [audio]
    if not clips:
        raise AudioError("got an empty list of clips: pass at least one")
    rates = sampling_rate if isinstance(sampling_rate, (list, tuple)) else [sampling_rate] * len(clips)
    if len(rates) != len(clips):
        raise ValueError(
            f"got {len(rates)} sampling rates for {len(clips)} clips: give one per clip or one for all"
        )
    return [
        load_audio(c, r, target_sampling_rate=target_sampling_rate, max_seconds=max_seconds)
        for c, r in zip(clips, rates)
    ]


def _is_batch(audio: Any) -> bool:
    import numpy as np
    import torch

    if isinstance(audio, (str, bytes, dict)) or hasattr(audio, "__fspath__") or hasattr(audio, "read"):
        return False
    if isinstance(audio, (np.ndarray, torch.Tensor)):
        return False  # one clip (2-D arrays are channels; pass a list for a batch)
    if isinstance(audio, (list, tuple)):
        return len(audio) > 0 and not isinstance(audio[0], (int, float, np.floating, np.integer))
    return hasattr(audio, "__iter__") and not hasattr(audio, "get_all_samples")
