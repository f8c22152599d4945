"""HuBERT's first iteration, on our own corpus: masked prediction of MFCC k-means units.

No pretrained HuBERT can be downloaded here, so hf-slm trains a small one with transformers' own
`HubertModel`: frames of the convolutional encoder are masked in spans (HuBERT: spans of 10
frames covering about half the clip), and a linear head predicts, at the masked frames, the unit
that an MFCC k-means tokenizer gives that frame (Hsu et al. 2021, iteration 1). Its hidden layers
then feed a `SpeechUnitTokenizer(frontend="ssl")`.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import HubertConfig, HubertModel
from transformers.models.hubert.modeling_hubert import _compute_mask_indices

from hf_slm.audio import load_audio
from hf_slm.training import warmup_cosine
from hf_slm.units.modeling_unit_tokenizer import SpeechUnitTokenizer, pad_waves

__all__ = ["pretrain_hubert", "small_hubert_config"]


def small_hubert_config(
    hidden_size: int = 256, num_hidden_layers: int = 4, num_attention_heads: int = 4, conv_dim: int = 128
) -> HubertConfig:
    """A HuBERT that trains in minutes on two CPU cores: the base model's 20 ms framing
    (stride 320 at 16 kHz, receptive field 400 samples), narrower and shallower. The
    convolutional encoder dominates the cost (~18,600 x conv_dim^2 FLOPs per second of audio),
    hence its 128 channels."""
    return HubertConfig(
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=4 * hidden_size,
        conv_dim=[conv_dim] * 7,
        feat_extract_norm="layer",  # layer norm in the conv stack: padding-safe with an attention mask
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=64,
        num_conv_pos_embedding_groups=8,
        hidden_dropout=0.05,
        attention_dropout=0.05,
        activation_dropout=0.0,
        layerdrop=0.0,
        mask_time_prob=0.5,
        mask_time_length=10,
        vocab_size=32,
    )


def pretrain_hubert(
    dataset: Any,
    target_tokenizer: SpeechUnitTokenizer,
    config: HubertConfig | None = None,
    *,
    steps: int = 2000,
    batch_size: int = 8,
    max_seconds: float = 3.0,
    learning_rate: float = 5e-4,
    warmup_steps: int = 200,
    seed: int = 0,
    progress: bool = True,
    log_every: int = 50,
) -> tuple[HubertModel, list[dict[str, float]]]:
    """Train a HuBERT on ``dataset`` (a `datasets.Dataset` with an ``audio`` column) to predict
    the frame units of ``target_tokenizer`` at masked frames.

    Returns the trained `HubertModel` and the logged history (masked-frame loss and accuracy).
    """
    from tqdm.auto import tqdm

    torch.set_flush_denormal(True)  # denormal gradients slow CPU matmuls tenfold
    config = config or small_hubert_config()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = HubertModel(config)
    head = torch.nn.Linear(config.hidden_size, target_tokenizer.config.n_units)
    sr = target_tokenizer.config.sampling_rate

    # 1. the targets: frame units of every clip (no de-duplication), and the audio
    waves, targets = [], []
    audio = dataset.select_columns(["audio"])
    for start in tqdm(range(0, len(audio), 32), desc="MFCC targets", disable=not progress):
        clips = [
            load_audio(r["audio"], target_sampling_rate=sr)
            for r in audio.select(range(start, min(start + 32, len(audio))))
        ]
        out = target_tokenizer.encode(clips, sampling_rate=sr, deduplicate=False)
        for i, clip in enumerate(clips):
            waves.append(clip)
            targets.append(out.units[i, : int(out.lengths[i])].numpy())

    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=learning_rate, betas=(0.9, 0.98), weight_decay=0.01)

    sched = warmup_cosine(opt, warmup_steps, steps)
    max_samples = int(max_seconds * sr)
    hop = math.prod(config.conv_stride)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(range(steps), desc="HuBERT masked prediction", disable=not progress)
    run_loss = run_acc = 0.0
    for step in bar:
        # 2. a batch of random crops, cut on frame boundaries so that the targets stay aligned
        crops, crop_targets = [], []
        for i in rng.integers(0, len(waves), size=batch_size):
            w, t = waves[i], targets[i]
            if len(w) > max_samples:
                n_frames = (max_samples - config.conv_kernel[0]) // hop
                s = int(rng.integers(0, len(t) - n_frames + 1))
                w = w[s * hop : s * hop + max_samples]
            else:
                s = 0
            crops.append(w)
            crop_targets.append(t[s:])
        input_values, attention_mask = pad_waves(crops)
        frame_lengths = model._get_feat_extract_output_lengths(attention_mask.sum(-1)).long()
        n_frames = int(frame_lengths.max())
        frame_mask = (torch.arange(n_frames)[None, :] < frame_lengths[:, None]).long()
        labels = torch.full((batch_size, n_frames), -100, dtype=torch.long)
        for b, t in enumerate(crop_targets):
            n = min(len(t), int(frame_lengths[b]))
            labels[b, :n] = torch.from_numpy(t[:n].astype(np.int64))
        # 3. HuBERT's span masking (transformers' own helper), then predict the masked frames
        masked = _compute_mask_indices(
            (batch_size, n_frames),
            config.mask_time_prob,
            config.mask_time_length,
            attention_mask=frame_mask,
            min_masks=2,
        )
        masked = torch.from_numpy(masked) & frame_mask.bool()
        input_values = (input_values - input_values.mean(-1, keepdim=True)) / (
            input_values.std(-1, keepdim=True) + 1e-7
        )
        hidden = model(
            input_values * attention_mask, attention_mask=attention_mask, mask_time_indices=masked
        ).last_hidden_state
        logits = head(hidden[masked])
        target = labels[masked]
        keep = target >= 0
        loss = F.cross_entropy(logits[keep], target[keep])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        sched.step()
        run_loss += loss.item()
        run_acc += float((logits[keep].argmax(-1) == target[keep]).float().mean())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            n = (step % log_every) + 1
            history.append(
                {
                    "step": step + 1,
                    "loss": run_loss / n,
                    "masked_accuracy": run_acc / n,
                    "seconds": time.perf_counter() - t0,
                }
            )
            bar.set_postfix(loss=f"{run_loss / n:.3f}", acc=f"{run_acc / n:.3f}")
            run_loss = run_acc = 0.0
    model.eval()
    return model, history
