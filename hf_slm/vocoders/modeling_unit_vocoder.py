"""The unit vocoder: discrete units (+ run lengths, + speaker) -> 16 kHz waveform.

Reads top to bottom: the ConvNeXt block, the inverse-STFT head (Vocos-style: predict the
magnitude and phase of every STFT bin, then `torch.istft`), the losses it is trained with
(multi-resolution STFT + log-mel), the output dataclass, the pre-trained model base, and
`UnitVocoder`. Its training loop lives in `hf_slm/vocoders/training.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, can_return_tuple

from hf_slm.units.modeling_unit_tokenizer import init_spectrogram_buffers
from hf_slm.vocoders.configuration_unit_vocoder import UnitVocoderConfig

__all__ = [
    "UnitVocoder",
    "UnitVocoderOutput",
    "UnitVocoderPreTrainedModel",
    "expand_durations",
    "spectral_losses",
]


# --- building blocks -----------------------------------------------------------------------------
class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm -> pointwise MLP, with a learned residual scale (ConvNeXt / Vocos)."""

    def __init__(self, dim: int, intermediate: int, kernel_size: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, intermediate)
        self.pw2 = nn.Linear(intermediate, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, dim, frames)
        y = self.dwconv(x).transpose(1, 2)
        y = self.pw2(F.gelu(self.pw1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


class ISTFTHead(nn.Module):
    """Frames -> log-magnitude and phase of each bin -> waveform by inverse STFT."""

    def __init__(self, dim: int, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop_length
        self.proj = nn.Linear(dim, n_fft + 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, frames, dim) -> (batch, samples)
        log_mag, phase = self.proj(x).transpose(1, 2).chunk(2, dim=1)
        mag = torch.exp(log_mag.clamp(max=8.0))
        spec = torch.polar(mag, phase)
        n_frames = x.shape[1]
        return torch.istft(
            spec, self.n_fft, self.hop, self.n_fft, window=torch.hann_window(self.n_fft, device=x.device), center=True,
            length=n_frames * self.hop,
        )  # fmt: skip


def expand_durations(units: torch.Tensor, durations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat each unit by its run length: `(batch, runs)` -> `(batch, frames)` padded with -1, and lengths."""
    lengths = durations.clamp_min(0).sum(1)
    width = int(lengths.max()) if len(lengths) else 0
    out = torch.full((units.shape[0], width), -1, dtype=torch.long, device=units.device)
    flat = torch.repeat_interleave(units.flatten(), durations.clamp_min(0).flatten())
    rows = torch.repeat_interleave(torch.arange(units.shape[0], device=units.device), lengths)
    starts = torch.cumsum(lengths, 0) - lengths
    cols = torch.arange(len(flat), device=units.device) - torch.repeat_interleave(starts, lengths)
    out[rows, cols] = flat
    return out, lengths


# --- losses --------------------------------------------------------------------------------------
_STFT_RESOLUTIONS = ((512, 128), (1024, 256), (256, 64))


def spectral_losses(pred: torch.Tensor, target: torch.Tensor, mel: nn.Module) -> dict[str, torch.Tensor]:
    """Multi-resolution STFT loss (spectral convergence + log magnitude) and log-mel L1."""
    sc = mag = 0.0
    for n_fft, hop in _STFT_RESOLUTIONS:
        win = torch.hann_window(n_fft, device=pred.device)
        p = torch.stft(pred, n_fft, hop, window=win, return_complex=True).abs().clamp_min(1e-5)
        t = torch.stft(target, n_fft, hop, window=win, return_complex=True).abs().clamp_min(1e-5)
        sc = (
            sc
            + torch.linalg.norm(t - p, dim=(1, 2))
            .div(torch.linalg.norm(t, dim=(1, 2)).clamp_min(1e-5))
            .mean()
        )
        mag = mag + F.l1_loss(torch.log(p), torch.log(t))
    mel_loss = F.l1_loss(torch.log(mel(pred).clamp_min(1e-5)), torch.log(mel(target).clamp_min(1e-5)))
    n = len(_STFT_RESOLUTIONS)
    return {"stft_sc": sc / n, "stft_mag": mag / n, "mel": mel_loss}


# --- outputs -------------------------------------------------------------------------------------
@dataclass
class UnitVocoderOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            Training loss (multi-resolution STFT + log-mel), when `target_values` is given.
        waveform (`torch.FloatTensor` of shape `(batch, samples)`):
            Generated audio at `config.sampling_rate`, padded with zeros past each row's `lengths`.
        lengths (`torch.LongTensor` of shape `(batch,)`):
            Valid samples of each row.
        losses (`dict[str, torch.FloatTensor]`, *optional*): the loss terms.
    """

    loss: torch.FloatTensor | None = None
    waveform: torch.FloatTensor | None = None
    lengths: torch.LongTensor | None = None
    losses: dict[str, torch.Tensor] | None = None


# --- model ---------------------------------------------------------------------------------------
class UnitVocoderPreTrainedModel(PreTrainedModel):
    config_class = UnitVocoderConfig
    base_model_prefix = "vocoder"
    main_input_name = "units"
    supports_gradient_checkpointing = False
    _no_split_modules = ["ConvNeXtBlock"]
    # No attention at all, so every attention implementation is trivially supported: declaring none
    # would make transformers refuse `attn_implementation="sdpa"` (or flash / flex) for a speech LM
    # that holds a vocoder beside its Llama, as the request reaches every sub-model.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _input_embed_layer = "unit_embed"  # what get_input_embeddings / set_input_embeddings reach

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Conv1d, nn.Linear, nn.ConvTranspose1d)):
            init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, std=1.0)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, ConvNeXtBlock):
            init.constant_(module.gamma, 1e-2)
        elif isinstance(module, (torchaudio.transforms.Spectrogram, torchaudio.transforms.MelScale)):
            init_spectrogram_buffers(module)  # the training loss's mel spectrogram


class UnitVocoder(UnitVocoderPreTrainedModel):
    """Units (with run lengths when de-duplicated, and a speaker id) -> waveform.

    Example:
        >>> import torch
        >>> from hf_slm.vocoders import UnitVocoder, UnitVocoderConfig
        >>> voc = UnitVocoder(UnitVocoderConfig(n_units=16, hidden_size=32, intermediate_size=64))
        >>> out = voc(units=torch.randint(0, 16, (2, 25)))
        >>> tuple(out.waveform.shape)
        (2, 8000)
    """

    def __init__(self, config: UnitVocoderConfig) -> None:
        super().__init__(config)
        h = config.hidden_size
        self.unit_embed = nn.Embedding(config.n_units + 1, h, padding_idx=config.n_units)  # last row pads
        self.speaker_embed = nn.Embedding(config.num_speakers, h)
        self.conv_in = nn.Conv1d(h, h, config.kernel_size, padding=config.kernel_size // 2)
        self.unit_layers = nn.ModuleList(
            [
                ConvNeXtBlock(h, config.intermediate_size, config.kernel_size)
                for _ in range(config.num_unit_layers)
            ]
        )
        self.upsample = nn.ConvTranspose1d(
            h, h, 2 * config.upsample, stride=config.upsample, padding=config.upsample // 2
        )
        self.frame_layers = nn.ModuleList(
            [
                ConvNeXtBlock(h, config.intermediate_size, config.kernel_size)
                for _ in range(config.num_frame_layers)
            ]
        )
        self.norm_out = nn.LayerNorm(h, eps=1e-6)
        self.head = ISTFTHead(h, config.n_fft, config.hop_length)
        with torch.device("cpu"):  # a fixed filterbank: built on the CPU even under meta init
            self.loss_mel = torchaudio.transforms.MelSpectrogram(
                config.sampling_rate, n_fft=1024, hop_length=256, n_mels=config.n_mels
            )
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        units: torch.LongTensor,
        durations: torch.LongTensor | None = None,
        speaker_ids: torch.LongTensor | None = None,
        target_values: torch.FloatTensor | None = None,
        **kwargs: Any,
    ) -> UnitVocoderOutput:
        r"""
        Args:
            units (`torch.LongTensor` of shape `(batch, frames)`):
                Unit ids, -1 on padding. One id per frame at `config.unit_rate`, or one per run when
                `durations` is given.
            durations (`torch.LongTensor` of shape `(batch, frames)`, *optional*):
                Run length of each unit in frames (de-duplicated units); 0 on padding.
            speaker_ids (`torch.LongTensor` of shape `(batch,)`, *optional*):
                Speaker ids (`config.speaker_id(name)`); 0 or None is the unknown speaker.
            target_values (`torch.FloatTensor` of shape `(batch, samples)`, *optional*):
                Reference audio of the same length as the output, to compute the training loss.
        """
        if durations is not None:
            units, lengths = expand_durations(units, durations)
        else:
            lengths = (units >= 0).long().sum(1)
        if units.numel() and int(units.max()) >= self.config.n_units:
            raise ValueError(
                f"unit id {int(units.max())} is outside this vocoder's {self.config.n_units} units"
            )
        ids = units.masked_fill(units < 0, self.config.n_units)
        x = self.unit_embed(ids)
        if speaker_ids is None:
            speaker_ids = torch.zeros(units.shape[0], dtype=torch.long, device=units.device)
        x = x + self.speaker_embed(speaker_ids)[:, None, :]
        # Padding is held at zero before every op that mixes frames, as a clip alone sees zeros
        # past its end: a batch then gives each row what that row gives on its own.
        t = torch.arange(units.shape[1], device=units.device)
        unit_mask = (t[None, :] < lengths[:, None]).to(x.dtype)[:, None, :]
        frame_mask = unit_mask.repeat_interleave(self.config.upsample, dim=2)
        x = self.conv_in(x.transpose(1, 2) * unit_mask)
        for layer in self.unit_layers:
            x = layer(x * unit_mask)
        x = self.upsample(x * unit_mask)
        for layer in self.frame_layers:
            x = layer(x * frame_mask)
        wave = self.head(self.norm_out((x * frame_mask).transpose(1, 2)))
        n_samples = lengths * self.config.samples_per_unit
        mask = torch.arange(wave.shape[1], device=wave.device)[None, :] < n_samples[:, None]
        wave = wave * mask
        out = UnitVocoderOutput(waveform=wave, lengths=n_samples)
        if target_values is not None:
            target = target_values[:, : wave.shape[1]] * mask[:, : target_values.shape[1]]
            out.losses = spectral_losses(wave, target, self.loss_mel)
            out.loss = out.losses["stft_sc"] + out.losses["stft_mag"] + out.losses["mel"]
        return out

    @torch.inference_mode()
    def generate_speech(
        self,
        units: Any,
        durations: Any = None,
        speaker: str | int | None = None,
    ) -> list[np.ndarray]:
        """Waveforms (float32 numpy, one per row) from units as a tensor, array or list of lists.

        ``speaker`` is a speaker name from ``config.speakers``, an id, or None (unknown speaker).
        """
        units = _as_padded(units)
        durations = _as_padded(durations, pad=0) if durations is not None else None
        if isinstance(speaker, str) or speaker is None:
            speaker = self.config.speaker_id(speaker)
        spk = torch.full((units.shape[0],), int(speaker), dtype=torch.long, device=self.device)
        out = self(units.to(self.device), None if durations is None else durations.to(self.device), spk)
        waves = [w[: int(n)].float().cpu().numpy() for w, n in zip(out.waveform, out.lengths)]
        # keep the result playable: a rare overshoot past full scale is scaled down, not clipped
        return [w / max(1.0, float(np.abs(w).max(initial=0.0))) for w in waves]


def _as_padded(x: Any, pad: int = -1) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x[None] if x.ndim == 1 else x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x[None] if x.ndim == 1 else x).long()
    rows = [list(r) for r in x] if len(x) and hasattr(x[0], "__len__") else [list(x)]
    width = max(len(r) for r in rows)
    return torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
