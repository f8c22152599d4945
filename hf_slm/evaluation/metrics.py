"""Metrics of speech output: word error rate (intelligibility) and mel cepstral distortion (spectral fidelity).

- :func:`word_error_rate`: corpus-level WER of transcripts against references, computed by jiwer
  (all edits over all reference words, not a mean of per-utterance rates).
- :func:`mel_cepstral_distortion`: MCD in dB between a reference recording and a synthesised one
  of the same words, after aligning their frames with dynamic time warping, so that a copy spoken
  a little faster or slower is not punished for its timing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from typing import Any

import jiwer
import numpy as np

from hf_slm.audio import DEFAULT_SAMPLING_RATE, AudioError, load_audio

# How mel cepstra are computed for MCD: 25 ms windows every 10 ms at 16 kHz, 40 mel bands up to
# 8 kHz, coefficients 1..24 (c0, the frame's loudness, is left out as usual).
MCD_SETTINGS = {"n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 40, "n_cepstra": 24}
_MEL_FLOOR_DB = -80.0  # mel energies below the recording's peak by more than this are floored
_MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)


def word_error_rate(references: Sequence[str] | str, hypotheses: Sequence[str] | str) -> float:
    """Corpus-level word error rate: (substitutions + deletions + insertions) / reference words.

    Args:
        references: the true transcripts (one string, or one per utterance).
        hypotheses: the recognised transcripts, in the same order. Empty strings are allowed.

    Raises:
        ValueError: the two lists differ in length, or the references hold no words at all.

    Example:
        >>> word_error_rate(["the dog ran", "a cat"], ["the dog", "a cat"])
        0.2
    """
    if isinstance(references, str):
        references = [references]
    if isinstance(hypotheses, str):
        hypotheses = [hypotheses]
    references, hypotheses = list(references), list(hypotheses)
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses; pass one of each")
    if not any(r.split() for r in references):
        raise ValueError("the references hold no words, so the word error rate is undefined")
    return float(jiwer.wer(references, hypotheses))


def mel_cepstrum(audio: Any, sampling_rate: int | None = DEFAULT_SAMPLING_RATE) -> np.ndarray:
    """Mel cepstra of a recording, coefficients 1..24 per 10 ms frame, shape ``(frames, 24)``.

    The log amplitude of 40 mel bands, turned into cepstra by an orthonormal DCT and rescaled by
    ``1 / sqrt(2 * n_mels)`` so that the coefficients have the scale of a true cepstrum
    (``log|X| = c0 + 2 * sum_d c_d cos(d w)``), the one the usual MCD formula assumes.

    Example:
        >>> import numpy as np
        >>> mel_cepstrum(np.random.default_rng(0).normal(0, 0.1, 16000), 16000).shape
        (101, 24)
    """
    wave = load_audio(audio, sampling_rate, target_sampling_rate=DEFAULT_SAMPLING_RATE)
    s = MCD_SETTINGS
    if wave.size < s["win_length"]:
        raise AudioError(
            f"the audio is {1000 * wave.size / DEFAULT_SAMPLING_RATE:.1f} ms long; mel cepstral "
            f"distortion needs at least {1000 * s['win_length'] / DEFAULT_SAMPLING_RATE:.0f} ms (one frame)."
        )
    window, fbank, dct = _analysis_tools()
    # Frames centred on multiples of the hop (the signal reflected at its ends), as torch.stft does.
    half = s["n_fft"] // 2
    padded = np.pad(wave.astype(np.float64), half, mode="reflect")
    n_frames = 1 + wave.size // s["hop_length"]
    starts = np.arange(n_frames) * s["hop_length"]
    frames = padded[starts[:, None] + np.arange(s["n_fft"])] * window
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (frames, n_fft // 2 + 1)
    mel = power @ fbank  # (frames, n_mels)
    floor = max(float(mel.max()) * 10.0 ** (_MEL_FLOOR_DB / 10.0), 1e-20)
    log_amplitude = 0.5 * np.log(np.maximum(mel, floor))
    cepstra = log_amplitude @ dct / math.sqrt(2.0 * s["n_mels"])  # (frames, n_cepstra + 1)
    return cepstra[:, 1:]


@cache
def _analysis_tools() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Analysis window (Hann, centred in the FFT frame), mel filterbank and orthonormal DCT matrix.

    The filterbank and DCT come from torchaudio; the FFT runs in numpy (on small frames, torch's
    thread pool costs more than the transform itself).
    """
    import torchaudio.functional as AF

    s = MCD_SETTINGS
    window = np.zeros(s["n_fft"])
    offset = (s["n_fft"] - s["win_length"]) // 2
    n = np.arange(s["win_length"])
    window[offset : offset + s["win_length"]] = 0.5 - 0.5 * np.cos(2 * np.pi * n / s["win_length"])
    fbank = AF.melscale_fbanks(
        s["n_fft"] // 2 + 1,
        f_min=0.0,
        f_max=DEFAULT_SAMPLING_RATE / 2,
        n_mels=s["n_mels"],
        sample_rate=DEFAULT_SAMPLING_RATE,
    )
    dct = AF.create_dct(s["n_cepstra"] + 1, s["n_mels"], norm="ortho")  # (n_mels, n_cepstra + 1)
    return window, fbank.double().numpy(), dct.double().numpy()


def dtw_mean_distance(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """Align two feature sequences by DTW; return the mean Euclidean distance along the best path and its length.

    Steps are the symmetric ``(1, 0)``, ``(0, 1)``, ``(1, 1)``; the path runs from the first frames
    to the last frames of both. Written here in numpy (no maintained DTW package is a dependency of
    hf-slm, and the ones on PyPI are unmaintained or pull in compilers): the dynamic programme runs
    over anti-diagonals, each computed as one vectorised step, and carries the path length along
    with the cost so that no backtracking is needed. Memory is O(len(a)).

    Example:
        >>> import numpy as np
        >>> x = np.arange(6.0).reshape(3, 2)
        >>> dtw_mean_distance(x, x)
        (0.0, 3)
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"DTW needs two (frames, features) arrays of equal width, got {a.shape} and {b.shape}"
        )
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        raise ValueError("DTW needs at least one frame in each sequence")
    # cost[k][i + 1] / length[k][i + 1]: best accumulated cost / path length to cell (i, k - i) of
    # anti-diagonal k; index 0 stands for row -1 and stays infinite.
    prev2_cost = np.full(n + 1, np.inf)
    prev1_cost = np.full(n + 1, np.inf)
    prev2_len = np.zeros(n + 1, dtype=np.int64)
    prev1_len = np.zeros(n + 1, dtype=np.int64)
    for k in range(n + m - 1):
        rows = np.arange(max(0, k - m + 1), min(k, n - 1) + 1)
        dist = np.sqrt(((a[rows] - b[k - rows]) ** 2).sum(axis=1))
        cost = np.full(n + 1, np.inf)
        length = np.zeros(n + 1, dtype=np.int64)
        if k == 0:
            cost[1], length[1] = dist[0], 1
        else:
            # predecessors of (i, j): (i-1, j-1) on diagonal k-2, (i-1, j) and (i, j-1) on diagonal k-1
            cand_cost = np.stack([prev2_cost[rows], prev1_cost[rows], prev1_cost[rows + 1]])
            cand_len = np.stack([prev2_len[rows], prev1_len[rows], prev1_len[rows + 1]])
            best = np.argmin(cand_cost, axis=0)  # ties go to the diagonal step
            pick = np.arange(rows.size)
            cost[rows + 1] = dist + cand_cost[best, pick]
            length[rows + 1] = 1 + cand_len[best, pick]
        prev2_cost, prev1_cost = prev1_cost, cost
        prev2_len, prev1_len = prev1_len, length
    total, steps = float(prev1_cost[n]), int(prev1_len[n])
    return total / steps, steps


def mel_cepstral_distortion(
    reference: Any, synthesized: Any, sampling_rate: int | None = DEFAULT_SAMPLING_RATE
) -> float:
    """Mel cepstral distortion in dB between two recordings of the same words, DTW-aligned.

    ``MCD = (10 / ln 10) * sqrt(2 * sum_d (c_d - c'_d)^2)`` over mel cepstral coefficients
    ``d = 1..24``, averaged over the frame pairs of the DTW path. 0 for identical audio; a few dB
    for a close copy; more for other voices, other words, or noise.

    Args:
        reference: the reference recording (anything :func:`hf_slm.audio.load_audio` reads).
        synthesized: the recording to judge.
        sampling_rate (`int`, defaults to 16000): the rate of the two when they are arrays
            (both are resampled to 16 kHz for the analysis).

    Raises:
        AudioError: empty, NaN/inf or unreadable audio, or audio shorter than one 25 ms frame.

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
        >>> mel_cepstral_distortion(x, x)
        0.0
    """
    ref = mel_cepstrum(reference, sampling_rate)
    syn = mel_cepstrum(synthesized, sampling_rate)
    mean_distance, _ = dtw_mean_distance(ref, syn)
    return float(_MCD_SCALE * mean_distance)


__all__ = ["MCD_SETTINGS", "dtw_mean_distance", "mel_cepstral_distortion", "mel_cepstrum", "word_error_rate"]
