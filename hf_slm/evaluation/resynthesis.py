"""The resynthesis check: audio -> units -> vocoder -> audio, judged for intelligibility.

The survey's first experiment: a tokenizer and a vocoder, with no LM between them, must keep
speech intelligible. Each held-out clip is encoded and decoded; the ASR judge (pocketsphinx with
a language model of the *training* text) transcribes the original (the topline) and the
resynthesis; the table reports both WERs, their ratio, and the mel-cepstral distortion.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from hf_slm.audio import load_audio
from hf_slm.evaluation.metrics import mel_cepstral_distortion

__all__ = ["evaluate_resynthesis", "plot_resynthesis", "print_resynthesis_table", "resynthesize"]


def resynthesize(
    tokenizer: Any, vocoder: Any, clips: list[np.ndarray], batch_size: int = 16
) -> tuple[list[np.ndarray], float]:
    """Encode and decode ``clips`` (16 kHz arrays) in batches; returns the audio and units per second."""
    out, n_units, seconds = [], 0, 0.0
    sr = tokenizer.config.sampling_rate
    for start in range(0, len(clips), batch_size):
        batch = clips[start : start + batch_size]
        enc = tokenizer.encode(batch, sampling_rate=sr)
        if enc.durations is not None:
            waves = vocoder.generate_speech(enc.units, enc.durations)
        else:
            waves = vocoder.generate_speech(enc.units)
        out.extend(waves)
        n_units += int(enc.lengths.sum())
        seconds += sum(len(c) for c in batch) / sr
    return out, n_units / max(seconds, 1e-9)


def evaluate_resynthesis(
    systems: dict[str, tuple[Any, Any]],
    dataset: Any,
    judge: Any,
    *,
    limit: int | None = None,
    progress: bool = True,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Judge the original audio and each system's resynthesis of it.

    Args:
        systems: name -> (tokenizer, vocoder) pairs; each vocoder has ``generate_speech(units, durations)``.
        dataset: a `datasets.Dataset` with ``audio``, ``text`` and ``voice`` (held-out voices).
        judge: an :class:`hf_slm.evaluation.judge.AsrJudge` built from the training text.
        limit: judge only the first ``limit`` clips.
        out_dir: where to write ``resynthesis.json`` and ``resynthesis.png``.

    Returns:
        ``{"topline": {...}, "systems": {name: {...}}, "num_utterances": ...}``; each entry has
        ``wer``, ``per_voice`` WER, and (systems) ``wer_ratio`` to the topline, ``mcd_db``,
        ``units_per_second``, ``n_units`` and ``seconds`` of encode + decode.
    """
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    refs = list(dataset["text"])
    voices = list(dataset["voice"]) if "voice" in dataset.column_names else None
    clips = [load_audio(a) for a in dataset["audio"]]
    top = judge.evaluate(clips, refs, sampling_rate=16_000, groups=voices, progress=progress)
    results: dict[str, Any] = {
        "num_utterances": len(clips),
        "audio_seconds": sum(len(c) for c in clips) / 16_000,
        "topline": {"wer": top["wer"], "per_voice": top.get("per_group")},
        "systems": {},
    }
    examples = {"original": clips[0]}
    for name, (tokenizer, vocoder) in systems.items():
        t0 = time.perf_counter()
        waves, ups = resynthesize(tokenizer, vocoder, clips)
        seconds = time.perf_counter() - t0
        res = judge.evaluate(waves, refs, sampling_rate=16_000, groups=voices, progress=progress)
        mcd = float(np.mean([mel_cepstral_distortion(c, w) for c, w in zip(clips, waves)]))
        results["systems"][name] = {
            "wer": res["wer"],
            "wer_ratio": res["wer"] / max(top["wer"], 1e-9),
            "mcd_db": mcd,
            "per_voice": res.get("per_group"),
            "n_units": int(tokenizer.config.n_units),
            "units_per_second": ups,
            "seconds": seconds,
        }
        examples[name] = waves[0]
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "resynthesis.json").write_text(json.dumps(results, indent=2))
        plot_resynthesis(examples, refs[0], out / "resynthesis.png")
    return results


def print_resynthesis_table(results: dict[str, Any], console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(
        title=f"resynthesis on {results['num_utterances']} held-out-voice clips (judge: pocketsphinx + corpus LM)"
    )
    for col in ("system", "units", "units/s", "judge WER", "x topline", "MCD (dB)"):
        table.add_column(col, justify="left" if col == "system" else "right")
    table.add_row("original audio (topline)", "", "", f"{results['topline']['wer']:.3f}", "1.00", "0.00")
    for name, r in results["systems"].items():
        table.add_row(
            name,
            str(r["n_units"]),
            f"{r['units_per_second']:.1f}",
            f"{r['wer']:.3f}",
            f"{r['wer_ratio']:.2f}",
            f"{r['mcd_db']:.2f}",
        )
    console.print(table)


def plot_resynthesis(examples: dict[str, np.ndarray], text: str, path: str | Path) -> Path:
    """Log-mel spectrograms of one clip: the original and each system's resynthesis, stacked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(16_000, n_fft=400, hop_length=160, n_mels=80)
    fig, axes = plt.subplots(len(examples), 1, figsize=(10, 2.2 * len(examples)), sharex=True, squeeze=False)
    for ax, (name, wave) in zip(axes[:, 0], examples.items()):
        spec = torch.log10(mel(torch.from_numpy(np.asarray(wave, dtype=np.float32))).clamp_min(1e-6)).numpy()
        ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", extent=(0, len(wave) / 16_000, 0, 80))
        ax.set_ylabel("mel bin")
        ax.set_title(name, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(f"\u201c{text}\u201d", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
