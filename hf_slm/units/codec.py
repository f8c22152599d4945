"""Neural codec tokenizers: audio to multi-codebook RVQ codes and back, behind one interface.

:class:`CodecTokenizer` wraps the neural codecs that ship with transformers (`EncodecModel`,
`MimiModel` and `DacModel`) so that every one of them turns a batch of waveforms into codes shaped
`(batch, codebooks, frames)`, coarse level first (codebook 0 is the first residual-quantizer level),
and turns such codes back into waveforms. Audio comes in through :func:`hf_slm.audio.load_audio`, so
it accepts the same inputs and fails with the same :class:`~hf_slm.audio.AudioError` as the rest of
hf-slm.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import numbers
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import (
    AutoFeatureExtractor,
    AutoModel,
    DacConfig,
    DacFeatureExtractor,
    EncodecConfig,
    EncodecFeatureExtractor,
    MimiConfig,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.utils import ModelOutput, cached_file

from hf_slm.audio import AudioError, load_audio

logger = logging.getLogger(__name__)

CODEC_KINDS = ("encodec", "mimi", "dac")
CODEC_TOKENIZER_CONFIG_NAME = "codec_tokenizer_config.json"
PAD_CODE = -1

# keyword arguments of `from_pretrained` that also locate the feature extractor and our own config file
_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")


@dataclass
class CodecOutput(ModelOutput):
    """
    Codes of a batch of waveforms, as returned by [`CodecTokenizer.encode`].

    Args:
        codes (`torch.LongTensor` of shape `(batch, codebooks, frames)`, *optional*):
            Residual-vector-quantizer ids, coarse level first: `codes[:, 0]` is the first quantizer level.
            Every id is in `[0, codebook_size)`; the frames past an item's length are padding, set to -1.
        lengths (`torch.LongTensor` of shape `(batch,)`, *optional*):
            Number of valid frames of each item.
        attention_mask (`torch.LongTensor` of shape `(batch, frames)`, *optional*):
            1 for the valid frames of each item, 0 for padding.
    """

    codes: torch.LongTensor | None = None
    lengths: torch.LongTensor | None = None
    attention_mask: torch.LongTensor | None = None


class CodecTokenizer:
    """
    Audio to discrete codes and back with a transformers neural codec: Encodec, Mimi or DAC.

    Load one from the Hub with [`~CodecTokenizer.from_pretrained`], e.g. `"facebook/encodec_24khz"`,
    `"kyutai/mimi"` or `"descript/dac_16khz"`, or wrap a codec model you already built. Audio of any rate
    is resampled to the codec's rate; a batch is right-padded and encoded in one forward pass, and the
    codes of every item are the same as when that item is encoded alone:

    - Encodec and Mimi are causal, so padding after an item cannot change its frames (the padding mask
      is passed to the model all the same).
    - DAC takes no padding mask and its convolutions look ahead, so the input of every encoder and decoder
      convolution is zeroed past each item's length during the call, which is what the convolution's own
      zero padding does when the item is encoded alone.

    Each item is padded with zeros to a whole number of frames: it gets `ceil(samples / samples_per_frame)`
    frames, and audio shorter than one frame is refused.

    Args:
        model ([`EncodecModel`], [`MimiModel`] or [`DacModel`]):
            The codec. It is put in eval mode and used under `torch.inference_mode()`.
        feature_extractor ([`EncodecFeatureExtractor`] or [`DacFeatureExtractor`], *optional*):
            The codec's feature extractor (Mimi uses [`EncodecFeatureExtractor`]); it must have the model's
            sampling rate. Built from the model's config when not given; saved by
            [`~CodecTokenizer.save_pretrained`] so that the folder also loads with `AutoFeatureExtractor`.
        num_codebooks (`int`, *optional*):
            Number of quantizer levels to encode with, between 1 and `max_num_codebooks`. Defaults to what the
            codec itself uses by default: the smallest target bandwidth of Encodec (2 codebooks at 1.5 kbps for
            `facebook/encodec_24khz`), every quantizer of Mimi (32) and of DAC (`n_codebooks`). Encodec's
            bandwidth in kbps is `num_codebooks * log2(codebook_size) * frame_rate / 1000`; a count between two
            target bandwidths is encoded at the next one up and truncated, which gives the same codes since
            each level only depends on the ones before it.

    Example:

    ```python
    >>> import numpy as np
    >>> from transformers import AutoModel
    >>> from hf_slm.units.codec import CodecTokenizer, tiny_codec_config
    >>> codec = CodecTokenizer(AutoModel.from_config(tiny_codec_config("dac")))  # or .from_pretrained("kyutai/mimi")
    >>> t = np.arange(16_000) / 16_000
    >>> out = codec.encode([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t[:8000])], sampling_rate=16_000)
    >>> out.codes.shape, out.lengths.tolist()
    (torch.Size([2, 4, 750]), [750, 375])
    >>> [wave.shape for wave in codec.decode(out.codes, out.lengths)]
    [(24000,), (12000,)]
    ```
    """

    def __init__(
        self,
        model: PreTrainedModel,
        feature_extractor: SequenceFeatureExtractor | None = None,
        *,
        num_codebooks: int | None = None,
    ) -> None:
        config = getattr(model, "config", None)
        kind = getattr(config, "model_type", None)
        if kind not in CODEC_KINDS:
            raise ValueError(
                f"CodecTokenizer wraps transformers' EncodecModel, MimiModel or DacModel; got a "
                f"{type(model).__name__} (model_type={kind!r})."
            )
        if getattr(config, "audio_channels", 1) != 1:
            raise ValueError(
                f"this {kind} codec takes {config.audio_channels} audio channels; CodecTokenizer encodes mono audio "
                "and supports mono codecs only (e.g. facebook/encodec_24khz, kyutai/mimi, descript/dac_16khz)."
            )
        if kind == "encodec" and (config.chunk_length_s is not None or config.normalize):
            raise ValueError(
                "this Encodec codec encodes in overlapping chunks and/or normalizes each input "
                f"(chunk_length_s={config.chunk_length_s}, normalize={config.normalize}): its codes cannot be "
                "decoded without per-chunk scales, so they are not a self-contained token sequence. Use an "
                "unchunked, unnormalized Encodec such as facebook/encodec_24khz or facebook/encodec_32khz."
            )
        self.model = model.eval()
        self.kind: str = kind
        if feature_extractor is None:
            feature_extractor = _feature_extractor_for(config)
        if feature_extractor.sampling_rate != config.sampling_rate:
            raise ValueError(
                f"the feature extractor works at {feature_extractor.sampling_rate} Hz but the {kind} model at "
                f"{config.sampling_rate} Hz; pass the feature extractor saved with this model."
            )
        self.feature_extractor = feature_extractor
        self._encode_takes_padding_mask = "padding_mask" in inspect.signature(model.encode).parameters
        if kind == "encodec":
            # the number of codebooks each target bandwidth gives, computed by the model's own quantizer
            quantizer = model.quantizer
            self._encodec_bandwidths = sorted(
                (min(quantizer.get_num_quantizers_for_bandwidth(bw), len(quantizer.layers)), bw)
                for bw in config.target_bandwidths
            )
            default = self._encodec_bandwidths[0][0]
        elif kind == "mimi":
            default = config.num_quantizers
        else:
            default = config.n_codebooks
        self.num_codebooks: int = self._check_num_codebooks(
            default if num_codebooks is None else num_codebooks
        )

    # --- construction and saving ----------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        num_codebooks: int | None = None,
        **kwargs: Any,
    ) -> CodecTokenizer:
        """
        Load a codec and its feature extractor from the Hub or from a folder written by
        [`~CodecTokenizer.save_pretrained`].

        Args:
            pretrained_model_name_or_path (`str` or `os.PathLike`):
                A Hub repo id such as `"facebook/encodec_24khz"`, `"kyutai/mimi"` or `"descript/dac_16khz"`, or a
                local folder.
            num_codebooks (`int`, *optional*):
                Number of quantizer levels to encode with; defaults to the saved value, else the codec's default.
            kwargs:
                Passed to `AutoModel.from_pretrained` (e.g. `revision`, `dtype`, `device_map`); the Hub ones
                (`revision`, `token`, `cache_dir`, `local_files_only`, ...) also locate the feature extractor.

        Example:

        ```python
        >>> codec = CodecTokenizer.from_pretrained("kyutai/mimi", num_codebooks=8)  # doctest: +SKIP
        >>> codec.frame_rate, codec.num_codebooks  # doctest: +SKIP
        (12.5, 8)
        ```
        """
        hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
        model = AutoModel.from_pretrained(pretrained_model_name_or_path, **kwargs)
        feature_extractor = AutoFeatureExtractor.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        if num_codebooks is None:
            saved = cached_file(
                pretrained_model_name_or_path,
                CODEC_TOKENIZER_CONFIG_NAME,
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
                **hub_kwargs,
            )
            if saved is not None:
                num_codebooks = json.loads(Path(saved).read_text())["num_codebooks"]
        return cls(model, feature_extractor, num_codebooks=num_codebooks)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """
        Save the codec model, its feature extractor and `num_codebooks` to a folder that
        [`~CodecTokenizer.from_pretrained`] loads back to the same tokenizer.

        Args:
            save_directory (`str` or `os.PathLike`):
                The folder to write (created if needed).
            kwargs:
                Passed to the model's `save_pretrained` (e.g. `safe_serialization`).

        Example:

        ```python
        >>> codec.save_pretrained("my-codec")  # doctest: +SKIP
        >>> CodecTokenizer.from_pretrained("my-codec").num_codebooks == codec.num_codebooks  # doctest: +SKIP
        True
        ```
        """
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(save_directory, **kwargs)
        self.feature_extractor.save_pretrained(save_directory)
        config = {"kind": self.kind, "num_codebooks": self.num_codebooks}
        (save_directory / CODEC_TOKENIZER_CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")

    # --- properties -----------------------------------------------------------------------------
    @property
    def sampling_rate(self) -> int:
        """Sampling rate of the codec's audio, in Hz."""
        return int(self.model.config.sampling_rate)

    @property
    def samples_per_frame(self) -> int:
        """Number of audio samples (at `sampling_rate`) per frame of codes."""
        config = self.model.config
        return int(config.frame_size if self.kind == "mimi" else config.hop_length)

    @property
    def frame_rate(self) -> float:
        """Frames of codes per second of audio (75 for Encodec 24 kHz, 12.5 for Mimi, 50 for DAC 16 kHz)."""
        return self.sampling_rate / self.samples_per_frame

    @property
    def codebook_size(self) -> int:
        """Number of ids of each codebook: codes are in `[0, codebook_size)`."""
        return int(self.model.config.codebook_size)

    @property
    def max_num_codebooks(self) -> int:
        """Number of quantizer levels the codec has (the most `num_codebooks` can be)."""
        if self.kind == "encodec":
            return self._encodec_bandwidths[-1][0]
        config = self.model.config
        return int(config.num_quantizers if self.kind == "mimi" else config.n_codebooks)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(kind={self.kind!r}, sampling_rate={self.sampling_rate}, "
            f"frame_rate={self.frame_rate:g}, num_codebooks={self.num_codebooks}, codebook_size={self.codebook_size})"
        )

    # --- encoding -------------------------------------------------------------------------------
    def encode(
        self, audio: Any, sampling_rate: int | None = None, *, num_codebooks: int | None = None
    ) -> CodecOutput:
        """
        Encode one waveform or a batch of them into codes.

        Args:
            audio (`str`, `bytes`, `np.ndarray`, `torch.Tensor`, `dict` or a `list` of them):
                One waveform, or a list of waveforms (a batch), in any form [`~hf_slm.audio.load_audio`] takes:
                file paths, file bytes, arrays or tensors (with `sampling_rate`), `datasets` Audio values.
                An array or tensor is always one recording (a 2-D one is read as channels and mixed to
                mono): pass a batch as a list.
            sampling_rate (`int`, *optional*):
                Rate of the arrays and tensors in `audio`, in Hz; they are resampled to `self.sampling_rate`.
            num_codebooks (`int`, *optional*):
                Number of quantizer levels to return; defaults to `self.num_codebooks`.

        Returns:
            [`CodecOutput`]: `codes` of shape `(batch, codebooks, frames)` (padding -1), `lengths` of shape
            `(batch,)` and `attention_mask` of shape `(batch, frames)`. A single waveform gives a batch of one.

        Raises:
            AudioError: unreadable, empty or non-finite audio, an array without its sampling rate, or audio
                shorter than one frame (`samples_per_frame` samples at `sampling_rate`).

        Example:

        ```python
        >>> out = codec.encode(["a.wav", "b.flac"])  # doctest: +SKIP
        >>> out.codes.shape  # (batch, codebooks, frames)  # doctest: +SKIP
        torch.Size([2, 8, 41])
        ```
        """
        num_codebooks = self._check_num_codebooks(
            self.num_codebooks if num_codebooks is None else num_codebooks
        )
        items = _as_batch(audio)
        waves = [load_audio(item, sampling_rate, target_sampling_rate=self.sampling_rate) for item in items]
        hop = self.samples_per_frame
        for index, wave in enumerate(waves):
            if wave.size < hop:
                which = "the audio" if len(waves) == 1 else f"audio item {index}"
                raise AudioError(
                    f"{which} is {wave.size} samples ({1000 * wave.size / self.sampling_rate:.1f} ms) long at "
                    f"{self.sampling_rate} Hz, shorter than one {self.kind} frame: it needs at least {hop} samples "
                    f"({1000 * hop / self.sampling_rate:.1f} ms) at {self.sampling_rate} Hz."
                )
        samples = torch.tensor([wave.size for wave in waves], dtype=torch.long)
        lengths = -(-samples // hop)  # ceil: the last, partial frame is padded with zeros
        frames = int(lengths.max())
        input_values, padding_mask = _right_pad(waves, frames * hop)

        self._ensure_eval()
        device, dtype = self.model.device, self.model.dtype
        input_values = input_values.to(device=device, dtype=dtype)
        with torch.inference_mode(), self._mask_padding(lengths * hop):
            codes = self._encode(input_values, padding_mask.to(device), num_codebooks)
        # clone outside inference mode: callers may edit the codes in place, which inference tensors refuse
        codes = codes[:, :num_codebooks].to("cpu", torch.long).clone()

        if codes.shape[-1] < frames:
            raise RuntimeError(
                f"the {self.kind} model gave {codes.shape[-1]} frames for {frames * hop} samples, expected {frames}."
            )
        attention_mask = (torch.arange(frames)[None, :] < lengths[:, None]).long()
        codes = codes[..., :frames].masked_fill(attention_mask[:, None, :] == 0, PAD_CODE)
        return CodecOutput(codes=codes, lengths=lengths, attention_mask=attention_mask)

    def _encode(
        self, input_values: torch.Tensor, padding_mask: torch.Tensor, num_codebooks: int
    ) -> torch.Tensor:
        kwargs = {"padding_mask": padding_mask} if self._encode_takes_padding_mask else {}
        if self.kind == "encodec":
            # the smallest target bandwidth that gives at least `num_codebooks` levels
            bandwidth = next(bw for count, bw in self._encodec_bandwidths if count >= num_codebooks)
            out = self.model.encode(input_values, bandwidth=bandwidth, return_dict=True, **kwargs)
            return out.audio_codes[0]  # (chunks=1, batch, codebooks, frames) -> (batch, codebooks, frames)
        if self.kind == "mimi":
            # Mimi always encodes its semantic level(s); more levels than asked for are cut off by the caller
            count = max(num_codebooks, self.model.config.num_semantic_quantizers)
            return self.model.encode(
                input_values, num_quantizers=count, return_dict=True, **kwargs
            ).audio_codes
        return self.model.encode(
            input_values, n_quantizers=num_codebooks, return_dict=True, **kwargs
        ).audio_codes

    # --- decoding -------------------------------------------------------------------------------
    def decode(
        self, codes: torch.Tensor | np.ndarray, lengths: torch.Tensor | Sequence[int] | int | None = None
    ) -> list[np.ndarray]:
        """
        Decode codes back into waveforms.

        Args:
            codes (`torch.LongTensor` of shape `(batch, codebooks, frames)` or `(codebooks, frames)`):
                Codes as [`~CodecTokenizer.encode`] returns them, coarse level first; fewer codebooks than the
                codec has decode at a lower quality. Frames past an item's length may hold -1.
            lengths (`torch.LongTensor` of shape `(batch,)` or `int`, *optional*):
                Number of valid frames of each item; frames past it are ignored. Defaults to the frames before
                the first -1 of codebook 0 (all of them when there is no padding).

        Returns:
            `list[np.ndarray]`: one float32 mono waveform per item at `self.sampling_rate`, each
            `lengths[i] * samples_per_frame` samples long.

        Raises:
            ValueError: codes of the wrong rank or dtype, more codebooks than the codec has, ids outside
                `[0, codebook_size)` in the valid frames, or lengths that do not fit the codes.

        Example:

        ```python
        >>> out = codec.encode(wave, sampling_rate=16_000)  # doctest: +SKIP
        >>> (audio,) = codec.decode(out.codes, out.lengths)  # doctest: +SKIP
        >>> audio.dtype, audio.shape[0] == out.lengths[0] * codec.samples_per_frame  # doctest: +SKIP
        (dtype('float32'), True)
        ```
        """
        codes, lengths = self._check_codes(codes, lengths)
        valid = torch.arange(codes.shape[-1])[None, :] < lengths[:, None]
        codes = codes.masked_fill(~valid[:, None, :], 0)  # padding ids are never looked up in a codebook

        self._ensure_eval()
        with torch.inference_mode(), self._mask_padding(lengths):
            codes = codes.to(self.model.device)
            if self.kind == "encodec":
                out = self.model.decode(codes[None], [None], return_dict=True)
            elif self.kind == "mimi":
                out = self.model.decode(codes, return_dict=True)
            else:
                out = self.model.decode(audio_codes=codes, return_dict=True)
            audio = out.audio_values.float().cpu()
        audio = audio.reshape(audio.shape[0], -1, audio.shape[-1]).mean(dim=1)  # (batch, samples), mono
        hop = self.samples_per_frame
        return [
            np.ascontiguousarray(audio[i, : int(n) * hop].numpy(), dtype=np.float32)
            for i, n in enumerate(lengths)
        ]

    def _check_codes(
        self, codes: torch.Tensor | np.ndarray, lengths: torch.Tensor | Sequence[int] | int | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        codes = torch.as_tensor(codes)
        if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
            raise ValueError(f"codes must be integer ids, got dtype {codes.dtype}.")
        if codes.ndim == 2:
            codes = codes[None]
        elif codes.ndim != 3:
            raise ValueError(
                f"codes must have shape (codebooks, frames) for one item or (batch, codebooks, frames), got "
                f"shape {tuple(codes.shape)}."
            )
        batch, count, frames = codes.shape
        if batch == 0 or frames == 0:
            raise ValueError(f"codes of shape {tuple(codes.shape)} hold no frames to decode.")
        if count < 1 or count > self.max_num_codebooks:
            raise ValueError(
                f"codes have {count} codebooks but this {self.kind} codec has {self.max_num_codebooks}; pass "
                f"between 1 and {self.max_num_codebooks} (codes are shaped (batch, codebooks, frames))."
            )
        codes = codes.long().cpu()
        if lengths is None:
            padded = codes[:, 0, :] == PAD_CODE
            first_pad = torch.where(padded.any(-1), padded.long().argmax(-1), torch.full((batch,), frames))
            lengths = first_pad
        else:
            lengths = torch.as_tensor(lengths, dtype=torch.long).reshape(-1).cpu()
            if lengths.numel() != batch:
                raise ValueError(f"got {lengths.numel()} lengths for a batch of {batch} codes.")
            if (lengths < 0).any() or (lengths > frames).any():
                raise ValueError(
                    f"lengths must be between 0 and the {frames} frames of codes, got {lengths.tolist()}."
                )
        valid = torch.arange(frames)[None, None, :] < lengths[:, None, None]
        bad = valid & ((codes < 0) | (codes >= self.codebook_size))
        if bad.any():
            item, level, frame = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"code {int(codes[item, level, frame])} (item {item}, codebook {level}, frame {frame}) is outside "
                f"[0, {self.codebook_size}); only the frames past an item's length may be padding ({PAD_CODE})."
            )
        return codes, lengths

    # --- helpers --------------------------------------------------------------------------------
    def _check_num_codebooks(self, num_codebooks: int) -> int:
        if isinstance(num_codebooks, bool) or not isinstance(num_codebooks, numbers.Integral):
            raise ValueError(f"num_codebooks must be an integer, got {num_codebooks!r}.")
        if not 1 <= num_codebooks <= self.max_num_codebooks:
            raise ValueError(
                f"num_codebooks must be between 1 and {self.max_num_codebooks} for this {self.kind} codec, "
                f"got {num_codebooks}."
            )
        return int(num_codebooks)

    def _ensure_eval(self) -> None:
        if self.model.training:  # DAC drops quantizers at random in training mode
            self.model.eval()

    @contextlib.contextmanager
    def _mask_padding(self, lengths: torch.Tensor) -> Iterator[None]:
        """For DAC, zero each convolution's input past every item's length (`lengths` at the input's rate)."""
        if self.kind != "dac":
            yield
            return
        # items are padded to the batch's longest, so an item's share of every layer's time axis is the same
        fractions = lengths.double() / max(int(lengths.max()), 1)

        def zero_padding(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            hidden_states = args[0]
            steps = hidden_states.shape[-1]
            valid = torch.round(fractions * steps).long().to(hidden_states.device)
            mask = torch.arange(steps, device=hidden_states.device)[None, :] < valid[:, None]
            return (hidden_states * mask[:, None, :].to(hidden_states.dtype), *args[1:])

        convs = [m for m in self.model.modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]
        handles = [conv.register_forward_pre_hook(zero_padding) for conv in convs]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


def tiny_codec_config(kind: str) -> PreTrainedConfig:
    """
    A tiny transformers config of a codec, for tests and examples: a model built from it has random weights
    and builds in a few milliseconds on CPU. It works at 24 kHz with 4 codebooks of 64 ids (Encodec: 2, 4 or 8
    codebooks by bandwidth) and 32 samples per frame (Mimi: 64).

    Encodec and Mimi initialise their codebooks to zeros, so a freshly built model gives id 0 everywhere until
    its codebooks are filled (e.g. with random vectors); DAC's codebooks are random from the start.

    Args:
        kind (`str`):
            `"encodec"`, `"mimi"` or `"dac"`.

    Returns:
        [`EncodecConfig`], [`MimiConfig`] or [`DacConfig`].

    Example:

    ```python
    >>> from transformers import AutoModel
    >>> from hf_slm.units.codec import CodecTokenizer, tiny_codec_config
    >>> codec = CodecTokenizer(AutoModel.from_config(tiny_codec_config("mimi")))
    >>> codec.frame_rate, codec.num_codebooks, codec.codebook_size
    (375.0, 4, 64)
    ```
    """
    if kind == "encodec":
        # 750 frames/s * log2(64) bits = 4.5 kbps per codebook: 2, 4 and 8 codebooks
        return EncodecConfig(
            sampling_rate=24_000,
            target_bandwidths=[9.0, 18.0, 36.0],
            hidden_size=16,
            num_filters=4,
            upsampling_ratios=[4, 4, 2],
            num_lstm_layers=1,
            codebook_size=64,
        )
    if kind == "mimi":
        return MimiConfig(
            sampling_rate=24_000,
            hidden_size=16,
            num_filters=4,
            upsampling_ratios=[4, 4, 2],
            codebook_size=64,
            codebook_dim=8,
            vector_quantization_hidden_dimension=8,  # must equal codebook_dim
            num_quantizers=4,
            num_semantic_quantizers=1,
            upsample_groups=16,  # must equal hidden_size
            num_hidden_layers=1,
            intermediate_size=32,
            num_attention_heads=2,
            num_key_value_heads=2,
            sliding_window=16,
            max_position_embeddings=4096,
        )
    if kind == "dac":
        return DacConfig(
            sampling_rate=24_000,
            encoder_hidden_size=4,
            downsampling_ratios=[2, 4, 4],
            decoder_hidden_size=32,
            n_codebooks=4,
            codebook_size=64,
            codebook_dim=4,
        )
    raise ValueError(f"kind must be one of {list(CODEC_KINDS)}, got {kind!r}.")


def _feature_extractor_for(config: PreTrainedConfig) -> SequenceFeatureExtractor:
    """The feature extractor the codec's Hub checkpoints ship with (Mimi's is an Encodec one)."""
    if config.model_type == "dac":
        return DacFeatureExtractor(sampling_rate=config.sampling_rate, hop_length=config.hop_length)
    return EncodecFeatureExtractor(sampling_rate=config.sampling_rate, feature_size=config.audio_channels)


def _as_batch(audio: Any) -> list[Any]:
    """A list (or tuple) of recordings is a batch; anything else, a list of numbers included, is one recording."""
    if isinstance(audio, (list, tuple)):
        if len(audio) == 0:
            raise AudioError(
                "got an empty list: pass one recording, or a list of recordings to encode as a batch."
            )
        if not isinstance(audio[0], numbers.Number):
            return list(audio)
    return [audio]


def _right_pad(waves: list[np.ndarray], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack waveforms into `(batch, 1, length)` with zeros after each, and its `(batch, length)` padding mask."""
    input_values = torch.zeros(len(waves), 1, length)
    for index, wave in enumerate(waves):
        input_values[index, 0, : wave.size] = torch.from_numpy(wave)
    sizes = torch.tensor([wave.size for wave in waves])
    padding_mask = (torch.arange(length)[None, :] < sizes[:, None]).long()
    return input_values, padding_mask


__all__ = ["CODEC_KINDS", "CodecOutput", "CodecTokenizer", "tiny_codec_config"]
