"""The floor every unit vocoder must beat: each unit's log-mel centroid, inverted by Griffin-Lim."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torchaudio

from hf_slm.units.modeling_unit_tokenizer import SpeechUnitTokenizer
from hf_slm.vocoders.modeling_unit_vocoder import _as_padded, expand_durations

__all__ = ["GriffinLimVocoder"]


class GriffinLimVocoder:
    """Units of a log-mel tokenizer (``normalize=False``) -> centroid mel frames -> Griffin-Lim.

    Context-free: a unit always sounds like its centroid, wherever it stands. torchaudio's
    `InverseMelScale` and `GriffinLim` do the inversion.
    """

    def __init__(self, tokenizer: SpeechUnitTokenizer, n_iter: int = 32) -> None:
        cfg = tokenizer.config
        if cfg.frontend != "log_mel" or cfg.normalize:
            raise ValueError(
                "Griffin-Lim needs log-mel centroids in absolute units: use a tokenizer with "
                "frontend='log_mel' and normalize=False"
            )
        self.config = cfg
        self.centroids = tokenizer.centroids.detach().float()
        # gelsd: a least-squares solver that copes with the empty low mel filters of a 512-point FFT
        self.inverse_mel = torchaudio.transforms.InverseMelScale(
            cfg.n_fft // 2 + 1, cfg.n_mels, cfg.sampling_rate, driver="gelsd"
        )
        self.griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=cfg.n_fft, n_iter=n_iter, win_length=cfg.win_length, hop_length=cfg.hop_length, power=2.0
        )

    @property
    def sampling_rate(self) -> int:
        return self.config.sampling_rate

    @torch.inference_mode()
    def generate_speech(self, units: Any, durations: Any = None, speaker: Any = None) -> list[np.ndarray]:
        units = _as_padded(units)
        if durations is not None:
            units, lengths = expand_durations(units, _as_padded(durations, pad=0))
        else:
            lengths = (units >= 0).sum(1)
        out = []
        for row, n in zip(units, lengths):
            mel = torch.exp(self.centroids[row[: int(n)]]).T  # (n_mels, frames), power
            spec = self.inverse_mel(mel)
            wave = self.griffin_lim(spec).numpy().astype(np.float32)
            # the centroids carry the corpus's arbitrary gain (Griffin-Lim output peaked at 2.6 on the
            # 2-hour corpus): keep it within full scale, as the trained vocoder does
            out.append(wave / max(1.0, float(np.abs(wave).max(initial=0.0))))
        return out
