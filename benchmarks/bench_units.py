"""Unit extraction throughput: our batched `SpeechUnitTokenizer.encode` vs the field's usual loop.

The baseline is what slamkit and textlesslib do: one utterance at a time, a full transformers
encoder forward with `output_hidden_states=True`, the layer taken out to numpy, then
scikit-learn's `KMeans.predict` with the same centroids. Ours: clips sorted by length and run 8 at a
time through the encoder (layers above the one read are never run), one torch matmul per batch
for the nearest centroids. Both run in this process on the same clips; warm-up, then the median of 3 runs.

    python benchmarks/bench_units.py [--tokenizer zoo/units-hubert-256] [--clips 64] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def _clips(n: int) -> list[np.ndarray]:
    from hf_slm import load_audio
    from hf_slm.data import synthesize_corpus

    corpus = Path("data/corpus")
    if not (corpus / "dataset_dict.json").exists():
        corpus = Path("data/bench-corpus")
        synthesize_corpus(corpus, hours=0.1, seed=0, progress=False)
    from datasets import load_from_disk

    test = load_from_disk(str(corpus))["test"]
    return [load_audio(a) for a in test.select(range(min(n, len(test))))["audio"]]


def _tokenizer(path: str | None):
    from hf_slm.units import SpeechUnitTokenizer
    from hf_slm.units.hubert_pretraining import small_hubert_config

    if path and Path(path).exists():
        return SpeechUnitTokenizer.from_pretrained(path).eval()
    # no trained tokenizer here: same architecture, random weights (speed does not depend on them)
    from transformers import HubertModel

    tok = SpeechUnitTokenizer.from_ssl_encoder(HubertModel(small_hubert_config()), layer=3, n_units=256)
    g = torch.Generator().manual_seed(0)
    tok.centroids.data.copy_(torch.randn(tok.centroids.shape, generator=g))
    tok.is_fitted.fill_(1)
    return tok.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", default="zoo/units-hubert-256")
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8, help="clips per forward pass of ours")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from sklearn.cluster import KMeans
    from transformers import AutoModel

    torch.set_flush_denormal(True)
    tok = _tokenizer(args.tokenizer)
    cfg = tok.config
    clips = _clips(args.clips)
    seconds = sum(len(c) for c in clips) / cfg.sampling_rate

    # the baseline's parts: the full encoder, and sklearn k-means holding our centroids
    full = AutoModel.from_config(cfg.ssl_config).eval()
    full.load_state_dict(tok.frontend.encoder.state_dict(), strict=False)
    centroids = tok.centroids.detach().numpy().astype(np.float32)
    km = KMeans(n_clusters=len(centroids), init=centroids, n_init=1, max_iter=1).fit(centroids)
    km.cluster_centers_ = centroids

    def baseline() -> list[np.ndarray]:
        out = []
        with torch.inference_mode():
            for clip in clips:
                x = torch.from_numpy(clip)[None]
                x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)
                h = full(x, output_hidden_states=True).hidden_states[cfg.ssl_layer][0]
                if cfg.normalize:
                    h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + 1e-5)
                out.append(km.predict(h.numpy()))
        return out

    def ours(dtype: torch.dtype | None = None) -> list[np.ndarray]:
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            enc = tok.encode(
                clips, sampling_rate=cfg.sampling_rate, deduplicate=False, batch_size=args.batch_size
            )
        return [enc.units[i, : int(n)].numpy() for i, n in enumerate(enc.lengths)]

    def timed(fn) -> tuple[float, list[np.ndarray]]:
        result = fn()  # warm-up
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times), result

    t_base, u_base = timed(baseline)
    t_ours, u_ours = timed(ours)
    t_bf16, u_bf16 = timed(lambda: ours(torch.bfloat16))
    agree = float(np.mean(np.concatenate([a == b for a, b in zip(u_base, u_ours)])))
    agree_bf16 = float(np.mean(np.concatenate([a == b for a, b in zip(u_ours, u_bf16)])))

    print(
        f"{len(clips)} clips, {seconds:.1f} s of audio; encoder {cfg.ssl_config.model_type}, layer {cfg.ssl_layer}, {cfg.n_units} units"
    )
    print(f"{'method':<58}{'audio s / wall s':>18}{'ratio':>8}")
    print(
        f"{'baseline: per clip, full encoder + sklearn KMeans.predict':<58}{seconds / t_base:>18.1f}{1.0:>8.2f}"
    )
    print(f"{'ours: batched encode (fp32)':<58}{seconds / t_ours:>18.1f}{t_base / t_ours:>8.2f}")
    print(f"{'ours: batched encode (bf16 autocast)':<58}{seconds / t_bf16:>18.1f}{t_base / t_bf16:>8.2f}")
    print(f"units identical to the baseline: {agree:.4f} (fp32), bf16 vs fp32: {agree_bf16:.4f}")


if __name__ == "__main__":
    main()
