"""Tasks of a speech+text LM on a corpus split: ASR (its transcripts' WER) and TTS (the judge's WER
on its speech, beside the judge's WER on the original recordings of the same sentences).

    hf-slm eval zoo/speech-text-lm-tiny --task asr,tts --data data/corpus-6h --split test --limit 200
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from hf_slm.evaluation.metrics import word_error_rate

__all__ = ["CORPUS_TASKS", "evaluate_asr", "evaluate_tts", "plot_corpus_tasks"]

CORPUS_TASKS = ("asr", "tts")


def _per_group(refs: list[str], hyps: list[str], groups: list[str] | None) -> dict[str, float] | None:
    if groups is None:
        return None
    return {
        g: word_error_rate(
            [r for r, x in zip(refs, groups) if x == g], [h for h, x in zip(hyps, groups) if x == g]
        )
        for g in sorted(set(groups))
    }


def evaluate_asr(
    model: Any,
    processor: Any,
    dataset: Any,
    *,
    batch_size: int = 16,
    max_new_tokens: int = 48,
    progress: bool = True,
    transcribe: Any = None,
) -> dict[str, Any]:
    """Transcribe every clip of `dataset` (`audio`, `text`, optional `voice`) greedily with
    `task="asr"`; WER over the corpus and per voice, clips in batches of similar length.

    `transcribe(clips) -> texts` replaces the speech+text LM's ASR template (e.g. a speech-aware LM asked
    to transcribe: `hf_slm.evaluation.speech_aware.chat_transcriber`)."""
    import torch
    from tqdm.auto import tqdm

    from hf_slm.audio import load_audio
    from hf_slm.evaluation.judge import tokenize

    sr = processor.sampling_rate
    refs = [" ".join(tokenize(t)) for t in dataset["text"]]
    voices = list(dataset["voice"]) if "voice" in dataset.column_names else None
    clips = [load_audio(a, target_sampling_rate=sr) for a in dataset["audio"]]
    order = sorted(range(len(clips)), key=lambda i: len(clips[i]))
    hyps: list[str] = [""] * len(clips)
    start = time.perf_counter()
    for k in tqdm(range(0, len(order), batch_size), desc="asr", unit="batch", disable=not progress):
        idx = order[k : k + batch_size]
        if transcribe is not None:
            texts = transcribe([clips[i] for i in idx])
        else:
            inputs = processor(audio=[clips[i] for i in idx], sampling_rate=sr, task="asr")
            with torch.no_grad():
                ids = model.generate(
                    **inputs, output_modality="text", do_sample=False, max_new_tokens=max_new_tokens
                )
            texts = processor.batch_decode(ids, skip_special_tokens=True)
        for i, text in zip(idx, texts):
            hyps[i] = " ".join(tokenize(text))
    seconds = time.perf_counter() - start
    audio_seconds = sum(len(c) for c in clips) / sr
    return {
        "wer": word_error_rate(refs, hyps),
        "per_voice": _per_group(refs, hyps, voices),
        "num_utterances": len(refs),
        "num_words": sum(len(r.split()) for r in refs),
        "audio_seconds": audio_seconds,
        "real_time_factor": seconds / max(audio_seconds, 1e-9),
        "examples": [{"reference": r, "hypothesis": h} for r, h in list(zip(refs, hyps))[:10]],
    }


def evaluate_tts(
    model: Any,
    processor: Any,
    dataset: Any,
    judge: Any,
    *,
    batch_size: int = 8,
    max_new_tokens: int = 200,
    speaker: str | int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Speak every sentence of `dataset` (`text`, `audio`) with `task="tts"` (greedy), have the judge
    transcribe the generated speech and the original recordings, and compare the two WERs."""
    import torch
    from tqdm.auto import tqdm

    from hf_slm.audio import load_audio
    from hf_slm.evaluation.judge import tokenize

    texts = list(dataset["text"])
    refs = [" ".join(tokenize(t)) for t in texts]
    voices = list(dataset["voice"]) if "voice" in dataset.column_names else None
    originals = [load_audio(a, target_sampling_rate=16_000) for a in dataset["audio"]]
    waves: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(texts)
    n_units, hit_limit = [0] * len(texts), 0
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    start = time.perf_counter()
    for k in tqdm(range(0, len(order), batch_size), desc="tts", unit="batch", disable=not progress):
        idx = order[k : k + batch_size]
        inputs = processor(text=[texts[i] for i in idx], task="tts")
        with torch.no_grad():
            out = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens, speaker=speaker)
        for j, i in enumerate(idx):
            waves[i] = out.audio[j].numpy()
            n_units[i] = len(out.units[j])
            hit_limit += int(len(out.units[j]) >= max_new_tokens)
    seconds = time.perf_counter() - start
    empty = [i for i, w in enumerate(waves) if len(w) < 160]
    for i in empty:  # nothing spoken: the judge hears silence
        waves[i] = np.zeros(1600, dtype=np.float32)
    top = judge.evaluate(originals, refs, sampling_rate=16_000, groups=voices, progress=progress)
    gen = judge.evaluate(waves, refs, sampling_rate=16_000, progress=progress)
    audio_seconds = sum(len(w) for w in waves) / 16_000
    return {
        "wer": gen["wer"],
        "topline_wer": top["wer"],
        "wer_ratio": gen["wer"] / max(top["wer"], 1e-9),
        "topline_per_voice": top.get("per_group"),
        "num_utterances": len(refs),
        "empty": len(empty),
        "hit_max_new_tokens": hit_limit,
        "units_per_utterance": float(np.mean(n_units)),
        "audio_seconds": audio_seconds,
        "generation_seconds": seconds,
        "examples": [
            {"text": r, "judge_on_generated": h, "judge_on_original": o}
            for r, h, o in list(zip(refs, gen["hypotheses"], top["hypotheses"]))[:10]
        ],
        "_example_audio": (waves[0], originals[0], texts[0]),
    }


def plot_corpus_tasks(results: dict[str, Any], path: Any) -> Any:
    """Bars: ASR WER per voice; TTS judge WER on generated vs original speech; plus, when given, a
    spectrogram of one generated sentence against its recording."""
    import matplotlib

    matplotlib.use("Agg")
    from pathlib import Path

    import matplotlib.pyplot as plt

    tasks = results["tasks"]
    panels = [t for t in ("asr", "tts") if t in tasks]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.6), squeeze=False)
    for ax, task in zip(axes[0], panels):
        r = tasks[task]
        if task == "asr":
            per = r.get("per_voice") or {}
            names = ["all", *per]
            ax.bar(names, [r["wer"], *per.values()], color=["#333"] + ["#4c72b0"] * len(per))
            ax.set_title(f"ASR WER ({r['num_utterances']} held-out-voice clips)", fontsize=10)
            ax.tick_params(axis="x", rotation=30, labelsize=8)
        else:
            ax.bar(
                ["original recordings", "generated speech"],
                [r["topline_wer"], r["wer"]],
                color=["#777", "#dd8452"],
            )
            ax.set_title(
                f"TTS: judge WER ({r['num_utterances']} sentences), ratio {r['wer_ratio']:.2f}", fontsize=10
            )
        ax.set_ylabel("WER")
        ax.set_ylim(0, max(1.0, ax.get_ylim()[1]))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
