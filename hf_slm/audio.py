"""The one door for raw audio: load, mix to mono, resample, validate.

Every path of hf-slm that takes audio in (processors, pipelines, the corpus builder, the
evaluation harness) goes through :func:`load_audio`, so that every one of them accepts the same
inputs and fails with the same clear :class:`AudioError`.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

__all__ = ["DEFAULT_SAMPLING_RATE", "AudioError", "AudioInput", "load_audio", "to_int16"]

logger = logging.getLogger(__name__)

DEFAULT_SAMPLING_RATE = 16_000
_MAX_CHANNELS = 16
# A peak above this (6 dB over full scale) means the samples are on the wrong scale, not that they
# overshoot: only then does load_audio warn. Smaller excursions are rescaled with a debug record.
_WARN_PEAK = 2.0

AudioInput = str | os.PathLike | bytes | bytearray | io.IOBase | np.ndarray | torch.Tensor | Mapping | list


class AudioError(ValueError):
    """Audio that hf-slm cannot use, with a message naming the problem and the fix."""


def load_audio(
    audio: Any,
    sampling_rate: int | None = None,
    *,
    target_sampling_rate: int = DEFAULT_SAMPLING_RATE,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Load audio from anywhere and return mono float32 samples in [-1, 1] at ``target_sampling_rate``.

    Args:
        audio: a file path (wav, flac, ogg, mp3, or anything FFmpeg reads), the file's bytes or a
            binary file object, an array or tensor of samples (1-D, or 2-D with channels on
            either axis), a ``{"array": ..., "sampling_rate": ...}`` or ``{"path"/"bytes": ...}``
            dict as `datasets` gives them, or a decoded `datasets` Audio value.
        sampling_rate (`int`, *optional*): the rate of ``audio`` when it is an array or tensor.
            Required there; ignored for files, which carry their own.
        target_sampling_rate (`int`, defaults to 16000): the rate to resample to (torchaudio).
        max_seconds (`float`, *optional*): refuse audio longer than this (checked before
            resampling, so nothing is done for nothing).

    Returns:
        `np.ndarray` of shape `(samples,)`, dtype float32, values in [-1, 1].

    Raises:
        AudioError: unreadable or corrupt file, empty audio, NaN or inf samples, an array
            without its sampling rate, or audio longer than ``max_seconds``.

    Example:
        >>> import numpy as np
        >>> from hf_slm import load_audio
        >>> stereo = np.zeros((2, 44100), dtype=np.float32)
        >>> load_audio(stereo, sampling_rate=44100).shape
        (16000,)
    """
    wave, sr = _decode(audio, sampling_rate)
    wave = _to_mono_float(wave)
    if wave.size == 0:
        raise AudioError(f"{_describe(audio)} is empty (0 samples). Pass a recording that contains sound.")
    if not np.isfinite(wave).all():
        bad = int((~np.isfinite(wave)).sum())
        raise AudioError(
            f"{_describe(audio)} has {bad} NaN or infinite samples. Fix the upstream processing "
            "(often a division by zero when normalising) or replace them, e.g. np.nan_to_num(x)."
        )
    seconds = wave.size / sr
    if max_seconds is not None and seconds > max_seconds:
        raise AudioError(
            f"{_describe(audio)} is {seconds:.1f} s long, over the limit of {max_seconds:g} s. "
            f"Split it into chunks of at most {max_seconds:g} s, or raise max_seconds."
        )
    peak_in = float(np.abs(wave).max())
    if peak_in > _WARN_PEAK:
        # Far above full scale is not an overshoot but a wrong scale (16-bit PCM values handed over
        # as floats peak in the thousands) or a gain error of over 6 dB: the user should hear of it.
        logger.warning(
            "%s peaks at %.3f, far outside [-1, 1]: its samples are not on the [-1, 1] scale (integer "
            "PCM passed as floats? divide 16-bit samples by 32768) or were amplified past full scale; "
            "scaling it down to fit.",
            _describe(audio),
            peak_in,
        )
    if sr != target_sampling_rate:
        wave = AF.resample(torch.from_numpy(wave), sr, target_sampling_rate).numpy()
    peak = float(np.abs(wave).max())
    if peak > 1.0:
        # Rescale rather than clip: clipping would lose the waveform's shape. A peak a little over 1
        # is routine (any full-scale clip, espeak-ng's among them, overshoots through a resampler's
        # ringing, and float mixes sum past 1): that is a debug record, not a warning.
        if peak_in <= _WARN_PEAK:
            logger.debug(
                "%s peaks at %.3f after loading; scaled down to fit [-1, 1].", _describe(audio), peak
            )
        wave = wave / peak
    return np.ascontiguousarray(wave, dtype=np.float32)


def to_int16(wave: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] to 16-bit PCM (rounded, clipped at full scale)."""
    return np.clip(np.round(np.asarray(wave, dtype=np.float64) * 32767.0), -32768, 32767).astype(np.int16)


# --- decoding ------------------------------------------------------------------------------------
def _decode(audio: Any, sampling_rate: int | None) -> tuple[np.ndarray, int]:
    if isinstance(audio, (str, os.PathLike)):
        return _decode_file(Path(audio))
    if isinstance(audio, (bytes, bytearray, memoryview)):
        return _decode_bytes(bytes(audio), "the audio bytes")
    if isinstance(audio, io.IOBase):
        return _decode_bytes(audio.read(), "the audio file object")
    if isinstance(audio, Mapping):
        if "array" in audio:
            return _decode(audio["array"], audio.get("sampling_rate", sampling_rate))
        if audio.get("bytes") is not None:
            return _decode_bytes(audio["bytes"], f"the audio bytes of {audio.get('path') or 'a dataset row'}")
        if audio.get("path"):
            return _decode_file(Path(audio["path"]))
        raise AudioError(
            f"an audio dict needs 'array' and 'sampling_rate', 'bytes' or 'path'; got keys {sorted(audio)}."
        )
    if hasattr(audio, "get_all_samples"):  # a torchcodec AudioDecoder, as `datasets` decodes Audio
        samples = audio.get_all_samples()
        return samples.data.numpy(), int(samples.sample_rate)
    if isinstance(audio, (np.ndarray, torch.Tensor, list, tuple)):
        if sampling_rate is None:
            raise AudioError(
                "an array of samples came without its sampling rate. Pass sampling_rate=... "
                "(the rate it was recorded at, e.g. 16000); hf-slm resamples it for you."
            )
        if not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0:
            raise AudioError(f"sampling_rate must be a positive integer number of Hz, got {sampling_rate!r}.")
        if isinstance(audio, torch.Tensor):
            audio = audio.detach().cpu().float().numpy()
        return np.asarray(audio), int(sampling_rate)
    raise AudioError(
        f"cannot read audio from a {type(audio).__name__}. Pass a file path, bytes, a numpy array or "
        "torch tensor with sampling_rate=..., or a datasets Audio value."
    )


def _decode_file(path: Path) -> tuple[np.ndarray, int]:
    if not path.exists():
        raise AudioError(
            f"audio file {str(path)!r} does not exist. Check the path (relative paths start at {os.getcwd()})."
        )
    if path.is_dir():
        raise AudioError(f"{str(path)!r} is a folder, not an audio file. Pass the path of one file.")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file {str(path)!r} is empty (0 bytes). Re-export or re-download it.")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        return data.T, int(sr)
    except Exception as sf_err:  # formats libsndfile does not know go to FFmpeg
        return _decode_with_ffmpeg(str(path), f"audio file {str(path)!r}", sf_err)


def _decode_bytes(data: bytes, what: str) -> tuple[np.ndarray, int]:
    if len(data) == 0:
        raise AudioError(f"{what} are empty (0 bytes). Pass the bytes of an audio file.")
    try:
        wave, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        return wave.T, int(sr)
    except Exception as sf_err:
        return _decode_with_ffmpeg(data, what, sf_err)


def _decode_with_ffmpeg(source: str | bytes, what: str, first_error: Exception) -> tuple[np.ndarray, int]:
    try:
        from torchcodec.decoders import AudioDecoder

        samples = AudioDecoder(source).get_all_samples()
        return samples.data.numpy(), int(samples.sample_rate)
    except Exception as ff_err:
        raise AudioError(
            f"could not decode {what}: it is corrupt or not audio (libsndfile: {first_error}; "
            f"FFmpeg: {str(ff_err).splitlines()[0] if str(ff_err) else type(ff_err).__name__}). "
            "Supported: wav, flac, ogg, mp3 and anything FFmpeg reads; re-encode it, e.g. "
            "`ffmpeg -i in.xyz out.wav`."
        ) from ff_err


def _to_mono_float(wave: np.ndarray) -> np.ndarray:
    wave = np.asarray(wave)
    if wave.dtype == np.int16:
        wave = wave.astype(np.float32) / 32768.0
    elif wave.dtype == np.int32:
        wave = wave.astype(np.float32) / 2147483648.0
    elif wave.dtype == np.uint8:
        wave = (wave.astype(np.float32) - 128.0) / 128.0
    elif wave.dtype.kind in "fc":
        wave = np.real(wave).astype(np.float32, copy=False)
    elif wave.dtype.kind in "iu":
        raise AudioError(f"cannot interpret {wave.dtype} samples; pass float32 in [-1, 1] or int16 PCM.")
    else:
        raise AudioError(f"audio samples must be numbers, got dtype {wave.dtype}.")
    if wave.ndim == 1 or wave.size == 0:
        return wave.reshape(-1)
    if wave.ndim == 2:
        channels_axis = 0 if wave.shape[0] <= wave.shape[1] else 1
        if wave.shape[channels_axis] > _MAX_CHANNELS:
            raise AudioError(
                f"audio of shape {wave.shape} looks like a batch, not one recording with channels. "
                "Pass one recording at a time, shaped (samples,) or (channels, samples)."
            )
        return wave.mean(axis=channels_axis)
    raise AudioError(f"audio must be 1-D (samples) or 2-D (channels x samples), got shape {wave.shape}.")


def _describe(audio: Any) -> str:
    if isinstance(audio, (str, os.PathLike)):
        return f"audio file {str(audio)!r}"
    if isinstance(audio, Mapping) and audio.get("path"):
        return f"audio {audio['path']!r}"
    return "the audio"
