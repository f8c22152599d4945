"""A phone recogniser trained with CTC on our corpus: the encoder behind supervised speech units.

Self-supervised units (HuBERT) need far more audio and compute than two CPU cores have; units from
an encoder trained to recognise phones (the "supervised semantic tokens" of CosyVoice's S3
tokenizer, or ASR-derived units) are speaker-independent by construction. hf-slm trains
transformers' own `HubertForCTC` on the train voices' espeak phoneme transcripts (word boundaries
as `|`), saves it with a `Wav2Vec2Processor` (so it is also a phone recogniser for
`pipeline("automatic-speech-recognition")`), and a hidden layer then feeds a
`SpeechUnitTokenizer(frontend="ssl")`. Held-out voices are never seen in training.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    HubertConfig,
    HubertForCTC,
    Wav2Vec2CTCTokenizer,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Processor,
)

from hf_slm.audio import load_audio
from hf_slm.training import warmup_cosine

__all__ = ["phone_error_rate", "phone_processor", "phone_targets", "pretrain_ctc", "small_ctc_config"]

WORD_DELIMITER = "|"


def phone_targets(words: list[dict[str, Any]]) -> str:
    """The CTC target of an utterance: its phonemes, space-separated, with `|` between words."""
    return f" {WORD_DELIMITER} ".join(w["phonemes"] for w in words if w.get("phonemes"))


def phone_processor(dataset: Any, sampling_rate: int = 16_000) -> Wav2Vec2Processor:
    """A `Wav2Vec2Processor` whose tokenizer knows every phoneme of the dataset's `words` column."""
    phones = sorted({p for ws in dataset["words"] for w in ws for p in (w.get("phonemes") or "").split()})
    vocab = {"<pad>": 0, "<unk>": 1, WORD_DELIMITER: 2, **{p: i + 3 for i, p in enumerate(phones)}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vocab.json"
        path.write_text(json.dumps(vocab, ensure_ascii=False))
        tokenizer = Wav2Vec2CTCTokenizer(
            str(path), unk_token="<unk>", pad_token="<pad>", word_delimiter_token=WORD_DELIMITER
        )
    fe = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=sampling_rate,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )
    return Wav2Vec2Processor(feature_extractor=fe, tokenizer=tokenizer)


def small_ctc_config(
    vocab_size: int, hidden_size: int = 256, num_hidden_layers: int = 4, conv_dim: int = 64
) -> HubertConfig:
    """A HuBERT-architecture CTC model for two CPU cores: 20 ms frames, a narrow convolutional
    feature encoder (its cost grows with conv_dim squared and dominates at this size)."""
    return HubertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=4,
        intermediate_size=4 * hidden_size,
        conv_dim=[conv_dim] * 7,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=64,
        num_conv_pos_embedding_groups=8,
        hidden_dropout=0.1,
        attention_dropout=0.1,
        activation_dropout=0.0,
        final_dropout=0.1,
        layerdrop=0.0,
        mask_time_prob=0.05,  # SpecAugment-style time masking, as wav2vec 2.0 fine-tuning does
        mask_time_length=5,
        ctc_loss_reduction="mean",
        ctc_zero_infinity=True,
        pad_token_id=0,
    )


def _examples(
    dataset: Any, processor: Wav2Vec2Processor, progress: bool
) -> tuple[list[np.ndarray], list[list[int]]]:
    from tqdm.auto import tqdm

    waves, labels = [], []
    sr = processor.feature_extractor.sampling_rate
    for row in tqdm(dataset, desc="loading audio", disable=not progress):
        waves.append(load_audio(row["audio"], target_sampling_rate=sr))
        # one id per phoneme: the tokenizer's own text path would split multi-character IPA symbols
        labels.append(processor.tokenizer.convert_tokens_to_ids(phone_targets(row["words"]).split()))
    return waves, labels


def _batch(processor: Wav2Vec2Processor, waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    feats = processor.feature_extractor(
        waves, sampling_rate=processor.feature_extractor.sampling_rate, padding=True, return_tensors="pt"
    )
    return feats["input_values"], feats["attention_mask"]


PER_LIMIT = 200  # clips the end-of-training phone error rate is measured on


@torch.inference_mode()
def phone_error_rate(
    model: HubertForCTC,
    processor: Wav2Vec2Processor,
    dataset: Any,
    limit: int = PER_LIMIT,
    batch_size: int = 16,
) -> float:
    """Greedy-CTC phone error rate (word boundaries not counted) on the first ``limit`` rows."""
    import jiwer

    model.eval()
    rows = dataset.select(range(min(limit, len(dataset))))
    waves, _ = _examples(rows, processor, progress=False)
    refs = [phone_targets(w).replace(f" {WORD_DELIMITER} ", " ") for w in rows["words"]]
    hyps, pad = [], processor.tokenizer.pad_token_id
    for start in range(0, len(waves), batch_size):
        x, mask = _batch(processor, waves[start : start + batch_size])
        ids = model(x, attention_mask=mask).logits.argmax(-1)
        for row in ids.tolist():
            collapsed = [t for i, t in enumerate(row) if t != pad and (i == 0 or t != row[i - 1])]
            phones = [p for p in processor.tokenizer.convert_ids_to_tokens(collapsed) if p != WORD_DELIMITER]
            hyps.append(" ".join(phones) or "<empty>")
    return float(jiwer.wer(refs, hyps))


def pretrain_ctc(
    dataset: Any,
    processor: Wav2Vec2Processor,
    config: HubertConfig,
    *,
    eval_dataset: Any = None,
    steps: int = 1500,
    batch_size: int = 8,
    learning_rate: float = 1e-3,
    warmup_steps: int = 150,
    seed: int = 0,
    progress: bool = True,
    log_every: int = 50,
) -> tuple[HubertForCTC, list[dict[str, float]]]:
    """Train a `HubertForCTC` from scratch on ``dataset`` (columns ``audio`` and ``words``).

    Batches are drawn from length-sorted buckets (little padding). Returns the model and the
    history (CTC loss; phone error rate on ``eval_dataset`` at the end).
    """
    from tqdm.auto import tqdm

    torch.set_flush_denormal(True)  # denormal gradients slow CPU matmuls tenfold
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = HubertForCTC(config)
    waves, labels = _examples(dataset, processor, progress)
    order = np.argsort([len(w) for w in waves])
    buckets = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, betas=(0.9, 0.98), weight_decay=0.01)
    sched = warmup_cosine(opt, warmup_steps, steps)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(range(steps), desc="CTC phone recognition", disable=not progress)
    run = 0.0
    for step in bar:
        idx = buckets[int(rng.integers(len(buckets)))]
        x, mask = _batch(processor, [waves[i] for i in idx])
        y = [labels[i] for i in idx]
        width = max(len(t) for t in y)
        target = torch.full((len(y), width), -100, dtype=torch.long)
        for b, t in enumerate(y):
            target[b, : len(t)] = torch.tensor(t)
        loss = model(x, attention_mask=mask, labels=target).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        run += loss.item()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            n = (step % log_every) + 1
            history.append({"step": step + 1, "loss": run / n, "seconds": time.perf_counter() - t0})
            bar.set_postfix(loss=f"{run / n:.3f}")
            run = 0.0
    model.eval()
    if eval_dataset is not None:
        history[-1]["phone_error_rate"] = phone_error_rate(model, processor, eval_dataset)
    return model, history
