"""The Spaces' pictures: a log-mel spectrogram with the speech units' boundaries drawn on it.

Figures are built with matplotlib's object API (`matplotlib.figure.Figure`, no pyplot state), so
that several requests can draw at once in the Space's worker threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["UnitTrack", "log_mel", "spectrogram_figure", "units_text"]


@dataclass(frozen=True)
class UnitTrack:
    """Units laid on the time axis: each unit lasts its run length in frames of `frame_rate`.

    Args:
        name (`str`): what the units are, drawn at the start of the track (e.g. "prompt").
        units (`list[int]`): unit ids, in order.
        durations (`list[int]`): each unit's run length, in frames.
        frame_rate (`float`): frames per second of the unit tokenizer (50 for 20-ms frames).
        start (`float`, defaults to 0.0): where the track starts, in seconds.
        labels (`Sequence[str]`, *optional*): a name per unit id (e.g. its phone); else the id.
    """

    name: str
    units: list[int]
    durations: list[int]
    frame_rate: float
    start: float = 0.0
    labels: Sequence[str] | None = None

    @property
    def boundaries(self) -> np.ndarray:
        """The `len(units) + 1` unit boundaries, in seconds."""
        frames = np.concatenate([[0], np.cumsum(np.asarray(self.durations, dtype=np.float64))])
        return self.start + frames / self.frame_rate

    @property
    def end(self) -> float:
        return float(self.boundaries[-1])

    def label(self, unit: int) -> str:
        if self.labels is not None and 0 <= unit < len(self.labels):
            return str(self.labels[unit])
        return str(unit)


def units_text(track: UnitTrack) -> str:
    """One line: the track's name, its unit count and length, then each unit as `label×frames`."""
    runs = " ".join(f"{track.label(u)}×{d}" for u, d in zip(track.units, track.durations))
    seconds = sum(track.durations) / track.frame_rate
    return f"{track.name} ({len(track.units)} units, {seconds:.2f} s): {runs}"


@lru_cache(maxsize=4)
def _mel_transform(sampling_rate: int):
    import torchaudio

    # 10-ms hop, 25-ms window, 80 mel bins: the project's usual picture of speech
    return torchaudio.transforms.MelSpectrogram(
        sampling_rate, n_fft=400, win_length=400, hop_length=sampling_rate // 100, n_mels=80
    )


def log_mel(wave: np.ndarray, sampling_rate: int) -> np.ndarray:
    """`(80, frames)` log10 mel spectrogram of a mono float waveform, 100 frames per second."""
    import torch

    with torch.no_grad():
        mel = _mel_transform(sampling_rate)(torch.as_tensor(np.asarray(wave, dtype=np.float32)))
    return torch.log10(mel.clamp_min(1e-6)).numpy()


def spectrogram_figure(
    wave: np.ndarray,
    sampling_rate: int,
    title: str,
    tracks: Sequence[UnitTrack] = (),
    max_labels_per_second: float = 25.0,
):
    """A log-mel spectrogram of `wave` with each track's unit boundaries (and labels) on it.

    Tracks after the first are marked off by a solid line at their start (e.g. the prompt, then the
    continuation). Unit labels are drawn when there are at most `max_labels_per_second` units per
    second (boundaries always are).

    Returns:
        `matplotlib.figure.Figure`: for `gr.Plot` (or `fig.savefig(path)`).
    """
    from matplotlib.figure import Figure

    wave = np.asarray(wave, dtype=np.float32)
    seconds = max(len(wave) / sampling_rate, 1e-3)
    spec = log_mel(wave, sampling_rate) if len(wave) >= 400 else np.zeros((80, 1), dtype=np.float32)
    fig = Figure(figsize=(min(14.0, max(7.0, 2.4 * seconds)), 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, spec.shape[0]))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel bin")
    ax.set_xlim(0, max(seconds, max((t.end for t in tracks), default=0.0)))
    colors = ("cyan", "lime", "yellow")
    for k, track in enumerate(tracks):
        color = colors[k % len(colors)]
        bounds = track.boundaries
        ax.vlines(bounds[1:-1], 0, spec.shape[0], colors=color, lw=0.5, alpha=0.7)
        if k > 0:
            ax.axvline(track.start, color="white", lw=2.0)
        ax.text(track.start + 0.01, 2, track.name, color=color, fontsize=8, va="bottom",
                bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "lw": 0})  # fmt: skip
        length = bounds[-1] - bounds[0]
        if not track.units or len(track.units) > max_labels_per_second * max(length, 1e-3):
            continue
        for i, unit in enumerate(track.units):
            y = spec.shape[0] * (0.93, 0.85, 0.77)[i % 3]
            ax.text((bounds[i] + bounds[i + 1]) / 2, y, track.label(unit), color="white", ha="center",
                    fontsize=7, bbox={"facecolor": "black", "alpha": 0.45, "pad": 0.5, "lw": 0})  # fmt: skip
    ax.set_title(title, fontsize=10)
    return fig
