"""What a corpus holds, as a table and as a picture of one utterance with its word boundaries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["corpus_summary", "plot_utterance", "print_summary"]


def corpus_summary(dsd) -> list[dict[str, Any]]:
    """One row per split: hours, utterances, words, distinct words, voices, accents.

    Durations come from the ``duration`` column when there is one, else from decoding the audio.
    """
    from hf_slm.audio import load_audio

    rows = []
    for name, ds in dsd.items():
        if "duration" in ds.column_names:
            seconds = float(np.sum(ds["duration"]))
        else:
            seconds = sum(len(load_audio(a)) / 16_000 for a in ds["audio"])
        texts = ds["text"]
        tokens = [w for t in texts for w in t.lower().split()]
        voices = sorted(set(ds["voice"])) if "voice" in ds.column_names else []
        accents = sorted(set(ds["accent"])) if "accent" in ds.column_names else []
        rows.append(
            {
                "split": name,
                "hours": seconds / 3600,
                "utterances": len(ds),
                "words": len(tokens),
                "distinct_words": len(set(tokens)),
                "voices": voices,
                "accents": accents,
            }
        )
    return rows


def print_summary(rows: list[dict[str, Any]], lexicon_size: int | None = None, console=None) -> None:
    """Print :func:`corpus_summary` rows as a table (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    title = "corpus" + (f" (lexicon: {lexicon_size} words)" if lexicon_size else "")
    table = Table(title=title)
    table.add_column("split")
    for col in ("hours", "utterances", "words", "distinct words", "voices", "accents"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["split"], f"{r['hours']:.3f}", str(r["utterances"]), str(r["words"]), str(r["distinct_words"]),
            str(len(r["voices"])), str(len(r["accents"])),
        )  # fmt: skip
    table.add_section()
    table.add_row(
        "all", f"{sum(r['hours'] for r in rows):.3f}", str(sum(r["utterances"] for r in rows)),
        str(sum(r["words"] for r in rows)), "", str(len({v for r in rows for v in r["voices"]})),
        str(len({a for r in rows for a in r["accents"]})),
    )  # fmt: skip
    console.print(table)
    for r in rows:
        if r["voices"]:
            console.print(f"[bold]{r['split']}[/bold] voices: {', '.join(r['voices'])}")


def plot_utterance(example: dict[str, Any], path: str | Path, sampling_rate: int = 16_000) -> Path:
    """Save a PNG of one utterance's log-mel spectrogram with its word boundaries and words."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    import torchaudio

    from hf_slm.audio import load_audio

    wave = load_audio(example["audio"], target_sampling_rate=sampling_rate)
    hop = sampling_rate // 100
    mel = torchaudio.transforms.MelSpectrogram(sampling_rate, n_fft=400, hop_length=hop, n_mels=80)(
        torch.from_numpy(wave)
    )
    logmel = torch.log10(mel.clamp_min(1e-6)).numpy()
    seconds = len(wave) / sampling_rate

    fig, (ax_w, ax_s) = plt.subplots(2, 1, figsize=(max(8.0, 3.2 * seconds), 5.0), sharex=True,
                                     gridspec_kw={"height_ratios": [1, 3]})  # fmt: skip
    t = np.arange(len(wave)) / sampling_rate
    ax_w.plot(t, wave, lw=0.4, color="0.25")
    ax_w.set_ylabel("amplitude")
    ax_s.imshow(logmel, origin="lower", aspect="auto", extent=(0, seconds, 0, logmel.shape[0]), cmap="magma")
    ax_s.set_ylabel("mel bin")
    ax_s.set_xlabel("time (s)")
    for i, w in enumerate(example.get("words") or []):
        for ax in (ax_w, ax_s):
            ax.axvline(w["start"], color="cyan", lw=0.8)
            ax.axvline(w["end"], color="cyan", lw=0.8, ls=":")
        y = logmel.shape[0] * (0.92 if i % 2 == 0 else 0.84)
        ax_s.text((w["start"] + w["end"]) / 2, y, w["word"], color="white", ha="center", fontsize=9,
                  bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "lw": 0})  # fmt: skip
    meta = ", ".join(f"{k}={example[k]}" for k in ("voice", "accent", "speaker_sex") if k in example)
    ax_w.set_title(f"\u201c{example['text']}\u201d  ({meta})", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
