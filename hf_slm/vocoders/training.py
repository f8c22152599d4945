"""Training a unit vocoder on a corpus: units from a fitted tokenizer, the audio as the target."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hf_slm.audio import load_audio
from hf_slm.training import warmup_cosine
from hf_slm.vocoders.modeling_unit_vocoder import UnitVocoder

__all__ = ["VocoderTrainingData", "train_vocoder"]


@dataclass
class VocoderTrainingData:
    """Frame-level units (no de-duplication) and the matching audio of every training clip."""

    units: list[np.ndarray]  # int16, one id per frame at the unit rate
    waves: list[np.ndarray]  # float32 at the vocoder's rate
    speakers: list[str | None]

    @classmethod
    def from_dataset(
        cls, tokenizer: Any, dataset: Any, *, batch_size: int = 32, progress: bool = True
    ) -> VocoderTrainingData:
        """Encode every clip of a `datasets.Dataset` (columns ``audio`` and optionally ``voice``)."""
        from tqdm.auto import tqdm

        units, waves = [], []
        speakers = list(dataset["voice"]) if "voice" in dataset.column_names else [None] * len(dataset)
        audio = dataset.select_columns(["audio"])
        for start in tqdm(range(0, len(audio), batch_size), desc="encoding units", disable=not progress):
            rows = audio.select(range(start, min(start + batch_size, len(audio))))
            clips = [
                load_audio(r["audio"], target_sampling_rate=tokenizer.config.sampling_rate) for r in rows
            ]
            out = tokenizer.encode(clips, sampling_rate=tokenizer.config.sampling_rate, deduplicate=False)
            for i, clip in enumerate(clips):
                units.append(out.units[i, : int(out.lengths[i])].numpy().astype(np.int16))
                waves.append(clip)
        return cls(units, waves, speakers)


def train_vocoder(
    vocoder: UnitVocoder,
    data: VocoderTrainingData,
    *,
    steps: int = 3000,
    batch_size: int = 16,
    segment_units: int = 48,
    learning_rate: float = 1e-3,
    warmup_steps: int = 200,
    seed: int = 0,
    progress: bool = True,
    log_every: int = 50,
) -> list[dict[str, float]]:
    """Train ``vocoder`` on random segments of ``data`` with AdamW and a cosine schedule.

    Returns the logged history (step, loss terms, seconds).
    """
    from tqdm.auto import tqdm

    # Tiny gradients turn into denormal floats, which slow CPU matmuls tenfold: flush them to zero.
    torch.set_flush_denormal(True)
    cfg = vocoder.config
    spu = cfg.samples_per_unit
    rng = np.random.default_rng(seed)
    usable = [i for i, u in enumerate(data.units) if len(u) >= segment_units]
    if not usable:
        raise ValueError(
            f"no clip has {segment_units} units ({segment_units / cfg.unit_rate:.2f} s); lower segment_units"
        )
    opt = torch.optim.AdamW(vocoder.parameters(), lr=learning_rate, betas=(0.8, 0.99), weight_decay=0.01)

    sched = warmup_cosine(opt, warmup_steps, steps)
    vocoder.train()
    history: list[dict[str, float]] = []
    start_time = time.perf_counter()
    bar = tqdm(range(steps), desc="training vocoder", disable=not progress)
    running: dict[str, float] = {}
    for step in bar:
        idx = rng.choice(usable, size=batch_size)
        u = np.zeros((batch_size, segment_units), dtype=np.int64)
        w = np.zeros((batch_size, segment_units * spu), dtype=np.float32)
        spk = np.zeros(batch_size, dtype=np.int64)
        for b, i in enumerate(idx):
            s = int(rng.integers(0, len(data.units[i]) - segment_units + 1))
            u[b] = data.units[i][s : s + segment_units]
            seg = data.waves[i][s * spu : (s + segment_units) * spu]
            w[b, : len(seg)] = seg
            if rng.random() >= cfg.speaker_dropout:
                spk[b] = cfg.speaker_id(data.speakers[i])
        out = vocoder(
            torch.from_numpy(u), speaker_ids=torch.from_numpy(spk), target_values=torch.from_numpy(w)
        )
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(vocoder.parameters(), 1.0)
        opt.step()
        sched.step()
        for k, v in out.losses.items():
            running[k] = running.get(k, 0.0) + v.item()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            n = log_every if (step + 1) % log_every == 0 else (step + 1) % log_every
            entry = {
                "step": step + 1,
                **{k: v / n for k, v in running.items()},
                "seconds": time.perf_counter() - start_time,
            }
            entry["loss"] = sum(v for k, v in entry.items() if k in out.losses)
            history.append(entry)
            bar.set_postfix(loss=f"{entry['loss']:.3f}", mel=f"{entry['mel']:.3f}")
            running = {}
    vocoder.eval()
    return history
