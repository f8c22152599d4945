"""Speed of the speech-aware LM: prefill against Qwen2-Audio, and `generate` against its bare LLM.

Both models are built from configs with random weights, at matched tiny sizes: the same Whisper-tiny
sized audio encoder (d_model 384, 4 layers, 6 heads, ffn 1536, 128 mel bins, 1500 positions; the
encoder weights are copied from one model to the other), the same `qwen2` LLM (hidden 384, 4 layers,
6 heads, 2 key/value heads, vocabulary 2048; weights copied too) and the same number of audio
embeddings per clip (25 per second: Qwen2-Audio average-pools the encoder frames by 2, ours stacks
them by 2 in its `stack_mlp` adapter). Only the adapters differ (Qwen2-Audio: one linear map; ours:
Ultravox's stacking + SwiGLU MLP, which is larger).

Claims checked, each as a ratio against a baseline run in this process on the same clips:
1. prefill (one forward pass with `use_cache=True` over a 3-s clip's placeholders and ~10 text tokens,
   batch 1 and 4) of `SpeechAwareLMForConditionalGeneration` vs transformers'
   `Qwen2AudioForConditionalGeneration` given the inputs its processor makes (log-mel frames padded to
   30 s, `feature_attention_mask`, 75 `<|AUDIO|>` placeholders). Ours runs the Whisper encoder on the
   clip's real length, Qwen2-Audio on 30 s (aim: ratio ours / Qwen2-Audio <= 0.25). The audio path
   (encoder + adapter / projector) and the LLM's pass are also timed apart;
2. `generate` on an audio prompt (3-s clip + instruction) vs the bare LLM's own `generate` on a text
   prompt of the same number of tokens, for exactly N new tokens, greedy (aim: time ratio <= 1.05).
   Ours includes encoding the clip, which the text prompt does not need.

Timings are medians of `--repeats` calls (the generate pairs alternate calls); nothing is asserted.

Usage: python benchmarks/bench_speech_aware_lm.py [--repeats 5] [--threads 2] [--out results.json [--plot]]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch
from _timing import median_seconds, paired_median_seconds, print_table  # benchmarks/_timing.py
from transformers import (
    Qwen2AudioConfig,
    Qwen2AudioForConditionalGeneration,
    WhisperFeatureExtractor,
)
from transformers.masking_utils import create_bidirectional_mask

import hf_slm  # noqa: F401  (registers the Auto classes)
from hf_slm.models.speech_aware_lm import SpeechAwareLMConfig, SpeechAwareLMForConditionalGeneration

SR = 16_000
CLIP_SECONDS = 3.0
VOCAB = 2048
AUDIO_TOKEN_ID = VOCAB - 1
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
TEXT_TOKENS = 10  # the instruction after the clip

# Whisper-tiny's encoder, with Qwen2-Audio's 128 mel bins and 1500 positions (30 s)
ENCODER = {"d_model": 384, "encoder_layers": 4, "encoder_attention_heads": 6, "encoder_ffn_dim": 1536,
           "num_mel_bins": 128, "max_source_positions": 1500}  # fmt: skip
# a small Whisper config also needs its decoder's special ids (the decoder itself is not built)
WHISPER_SPECIAL = {"vocab_size": 64, "decoder_layers": 1, "decoder_attention_heads": 2, "decoder_ffn_dim": 64,
                   "decoder_start_token_id": 1, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}  # fmt: skip
TEXT = {"model_type": "qwen2", "vocab_size": VOCAB, "hidden_size": 384, "intermediate_size": 1024,
        "num_hidden_layers": 4, "num_attention_heads": 6, "num_key_value_heads": 2,
        "max_position_embeddings": 2048, "tie_word_embeddings": False,
        "pad_token_id": PAD_ID, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID}  # fmt: skip


def build_models() -> tuple[SpeechAwareLMForConditionalGeneration, Qwen2AudioForConditionalGeneration]:
    torch.manual_seed(0)
    ours = SpeechAwareLMForConditionalGeneration(
        SpeechAwareLMConfig(
            audio_config={"model_type": "whisper", **ENCODER, **WHISPER_SPECIAL},
            text_config=dict(TEXT),
            adapter_type="stack_mlp",
            adapter_config={"stack_factor": 2},
            audio_token_id=AUDIO_TOKEN_ID,
            pad_token_id=PAD_ID,
            bos_token_id=BOS_ID,
            eos_token_id=EOS_ID,
        )
    ).eval()
    qwen = Qwen2AudioForConditionalGeneration(
        Qwen2AudioConfig(
            audio_config={"model_type": "qwen2_audio_encoder", **ENCODER},
            text_config=dict(TEXT),
            audio_token_index=AUDIO_TOKEN_ID,
        )
    ).eval()
    # same weights where the parts are the same (the two encoders share their parameter names)
    with torch.no_grad():
        qwen.model.audio_tower.load_state_dict(ours.audio_encoder.state_dict())
        qwen.model.language_model.load_state_dict(ours.text_model.model.state_dict())
        qwen.lm_head.load_state_dict(ours.text_model.lm_head.state_dict())
    return ours, qwen


def millions(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def clips(batch: int) -> list[np.ndarray]:
    """`batch` different 3-s clips: a rising chirp each (its own range) with a little noise."""
    rng = np.random.default_rng(0)
    t = np.arange(int(CLIP_SECONDS * SR)) / SR
    out = []
    for i in range(batch):
        f0, f1 = 150.0 * (i + 1), 2500.0 + 400.0 * i
        phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * CLIP_SECONDS))
        out.append((0.3 * np.sin(phase) + 0.01 * rng.standard_normal(t.size)).astype(np.float32))
    return out


def prompt_ids(n_audio: int, batch: int) -> torch.Tensor:
    """`(batch, 1 + n_audio + TEXT_TOKENS)`: bos, the clip's placeholders, the instruction's tokens."""
    g = torch.Generator().manual_seed(1)
    text = torch.randint(3, AUDIO_TOKEN_ID, (batch, TEXT_TOKENS), generator=g)
    bos = torch.full((batch, 1), BOS_ID)
    return torch.cat([bos, torch.full((batch, n_audio), AUDIO_TOKEN_ID), text], dim=1)


def build_inputs(ours, qwen, waves: list[np.ndarray]) -> tuple[dict, dict]:
    """The inputs each model's processor would make for the same clips and instruction."""
    fe = WhisperFeatureExtractor(feature_size=128)
    # Qwen2AudioProcessor: log-mel frames padded to 30 s, the mask of the real frames
    padded = fe(
        waves, sampling_rate=SR, padding="max_length", return_attention_mask=True, return_tensors="pt"
    )
    q_feats, q_mask = padded["input_features"], padded["attention_mask"]
    # SpeechAwareLMProcessor: each clip's real frames only (all clips are 3 s: no padding)
    frames = len(waves[0]) // fe.hop_length
    o_feats = q_feats[:, :, :frames].contiguous()
    o_mask = torch.ones(len(waves), frames, dtype=torch.long)

    n_ours = ours.audio_output_lengths(torch.tensor([len(w) for w in waves]))
    _, n_qwen = qwen.model.audio_tower._get_feat_extract_output_lengths(q_mask.sum(-1))
    if n_ours.tolist() != n_qwen.tolist():
        raise SystemExit(
            f"audio embeddings per clip differ: ours {n_ours.tolist()}, Qwen2-Audio {n_qwen.tolist()}"
        )
    ids = prompt_ids(int(n_ours[0]), len(waves))
    mask = torch.ones_like(ids)
    ours_in = {
        "input_ids": ids,
        "attention_mask": mask,
        "input_features": o_feats,
        "feature_attention_mask": o_mask,
    }
    qwen_in = {
        "input_ids": ids,
        "attention_mask": mask,
        "input_features": q_feats,
        "feature_attention_mask": q_mask,
    }
    return ours_in, qwen_in


def qwen_audio_embeds(
    qwen, input_features: torch.Tensor, feature_attention_mask: torch.Tensor
) -> torch.Tensor:
    """Qwen2-Audio's audio path as its `Qwen2AudioModel.forward` runs it: mask, encoder, projector."""
    model = qwen.model
    tower = model.audio_tower
    feat_lengths, _ = tower._get_feat_extract_output_lengths(feature_attention_mask.sum(-1))
    batch, _, mel_frames = input_features.shape
    max_len = (mel_frames - 2) // 2 + 1
    mask_2d = (torch.arange(max_len)[None, :] < feat_lengths[:, None]).long()
    mask = create_bidirectional_mask(
        config=tower.config, inputs_embeds=torch.zeros(batch, max_len, 1), attention_mask=mask_2d
    )
    return model.multi_modal_projector(tower(input_features, attention_mask=mask).last_hidden_state)


def check_prefill(ours, qwen, ours_in: dict, qwen_in: dict) -> None:
    """One forward pass of each (Qwen2-Audio raises if its placeholders and audio embeddings disagree)."""
    a = ours(**ours_in, use_cache=True)
    b = qwen(**qwen_in, use_cache=True)
    if a.logits.shape != b.logits.shape:
        raise SystemExit(f"prefill logits differ in shape: ours {tuple(a.logits.shape)}, Qwen2-Audio {tuple(b.logits.shape)}")  # fmt: skip


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(r["what"], r["ratio"], r["aim"]) for r in results["rows"] if r.get("ratio") is not None]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.5))
    y = np.arange(len(rows))
    ax.barh(
        y,
        [r for _, r, _ in rows],
        color=["tab:green" if a is None or r <= a else "tab:red" for _, r, a in rows],
    )
    for i, (_, r, a) in enumerate(rows):
        ax.text(r, i, f" {r:.3f}", va="center")
        if a is not None:
            ax.plot([a, a], [i - 0.4, i + 0.4], color="black", linestyle="--", linewidth=1)
    ax.axvline(1.0, color="grey", linewidth=0.8)
    ax.set_yticks(y, [w for w, _, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel("time ratio, ours / baseline (dashed: aim)")
    ax.set_title(f"speech-aware LM speed ({results['threads']} threads)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--out", type=Path, default=None, help="write the results to this JSON file")
    parser.add_argument("--plot", action="store_true", help="also draw the ratios to a PNG beside --out")
    args = parser.parse_args()
    if args.plot and args.out is None:
        parser.error("--plot needs --out (the PNG goes beside the JSON)")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)

    ours, qwen = build_models()
    sizes = {
        "ours": {"audio_encoder": millions(ours.audio_encoder), "adapter": millions(ours.adapter),
                 "llm": millions(ours.text_model), "total": millions(ours)},
        "qwen2_audio": {"audio_encoder": millions(qwen.model.audio_tower),
                        "adapter": millions(qwen.model.multi_modal_projector),
                        "llm": millions(qwen.model.language_model) + millions(qwen.lm_head), "total": millions(qwen)},
    }  # fmt: skip
    rows, results = [], []

    def add(what: str, base_s: float, ours_s: float, base_label: str, aim: float | None) -> None:
        ratio = ours_s / base_s
        rows.append((what, f"{base_s * 1000:.1f} ms {base_label}".strip(), f"{ours_s * 1000:.1f} ms",
                     f"{ratio:.3f}" + (f" (aim <= {aim})" if aim else "")))  # fmt: skip
        results.append({"what": what, "baseline_s": base_s, "ours_s": ours_s, "ratio": ratio, "aim": aim})

    # 1. prefill on 3-s clips: ours (real-length encoder) vs Qwen2-Audio (30-s padded encoder)
    n_audio, audio_path_s = None, {}
    with torch.inference_mode():
        for batch in (1, 4):
            ours_in, qwen_in = build_inputs(ours, qwen, clips(batch))
            n_audio = int((ours_in["input_ids"][0] == AUDIO_TOKEN_ID).sum())
            check_prefill(ours, qwen, ours_in, qwen_in)
            n_tok = ours_in["input_ids"].shape[1]
            t_ours = median_seconds(lambda i=ours_in: ours(**i, use_cache=True), args.repeats)
            t_qwen = median_seconds(lambda i=qwen_in: qwen(**i, use_cache=True), args.repeats)
            what = f"prefill, batch {batch} ({n_tok} tokens, {n_audio} audio)"
            add(what, t_qwen, t_ours, "(Qwen2-Audio)", 0.25)
            # the split: audio path (encoder + adapter / projector), then the LLM on ready embeddings
            a_ours = median_seconds(
                lambda i=ours_in: ours.get_audio_embeds(i["input_features"], i["feature_attention_mask"]),
                args.repeats,
            )
            a_qwen = median_seconds(
                lambda i=qwen_in: qwen_audio_embeds(qwen, i["input_features"], i["feature_attention_mask"]),
                args.repeats,
            )
            add(f"  audio encoder + adapter, batch {batch}", a_qwen, a_ours, "", None)
            audio_path_s[batch] = a_ours
            embeds = torch.randn(batch, n_tok, TEXT["hidden_size"])
            mask = ours_in["attention_mask"]
            l_ours = median_seconds(
                lambda e=embeds, m=mask: ours.text_model(inputs_embeds=e, attention_mask=m, use_cache=True),
                args.repeats,
            )
            l_qwen = median_seconds(
                lambda e=embeds, m=mask: qwen(inputs_embeds=e, attention_mask=m, use_cache=True), args.repeats
            )
            add(f"  LLM pass on {n_tok} embeddings, batch {batch}", l_qwen, l_ours, "", None)

    # 2. generate: audio prompt through ours vs a text prompt of the same length through the bare LLM
    ours_in, _ = build_inputs(ours, qwen, clips(1))
    n_prompt = ours_in["input_ids"].shape[1]
    g = torch.Generator().manual_seed(2)
    text_ids = torch.cat(
        [torch.tensor([[BOS_ID]]), torch.randint(3, AUDIO_TOKEN_ID, (1, n_prompt - 1), generator=g)], 1
    )
    text_in = {"input_ids": text_ids, "attention_mask": torch.ones_like(text_ids)}
    special = {"pad_token_id": PAD_ID, "eos_token_id": EOS_ID}
    for n in args.new_tokens:
        settings = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, **special)
        t_ours, t_bare = paired_median_seconds(
            lambda s=settings: ours.generate(**ours_in, **s),
            lambda s=settings: ours.text_model.generate(**text_in, **s),
            args.repeats,
        )
        # what is left once the clip's encoding (timed in 1.) is taken off: the decoding itself
        net = (t_ours - audio_path_s[1]) / t_bare
        rows.append((f"generate {n} tokens, batch 1 ({n_prompt}-token prompt)",
                     f"{n / t_bare:.0f} tok/s (bare LLM, text prompt)", f"{n / t_ours:.0f} tok/s (3-s clip + text)",
                     f"{t_ours / t_bare:.3f} (aim <= 1.05); {net:.3f} without encoding the clip"))  # fmt: skip
        results.append({"what": f"generate {n} tokens, batch 1", "baseline_s": t_bare, "ours_s": t_ours,
                        "ratio": t_ours / t_bare, "aim": 1.05, "baseline_tok_s": n / t_bare, "ours_tok_s": n / t_ours,
                        "ratio_without_audio_encoding": net})  # fmt: skip

    s_o, s_q = sizes["ours"], sizes["qwen2_audio"]
    print(f"parameters (M): audio encoder ours {s_o['audio_encoder']:.2f} / Qwen2-Audio {s_q['audio_encoder']:.2f}, "
          f"adapter {s_o['adapter']:.2f} / projector {s_q['adapter']:.2f}, "
          f"LLM {s_o['llm']:.2f} / {s_q['llm']:.2f}, total {s_o['total']:.2f} / {s_q['total']:.2f}")  # fmt: skip
    print_table(f"speech-aware LM speed ({CLIP_SECONDS:.0f}-s clips, {n_audio} audio tokens each, "
                f"{torch.get_num_threads()} threads)", rows)  # fmt: skip

    if args.out is not None:
        payload = {
            "threads": torch.get_num_threads(),
            "repeats": args.repeats,
            "torch": torch.__version__,
            "platform": platform.platform(),
            "clip_seconds": CLIP_SECONDS,
            "audio_tokens_per_clip": n_audio,
            "encoder": ENCODER,
            "text_config": TEXT,
            "parameters_millions": sizes,
            "rows": results,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.out}")
        if args.plot:
            png = args.out.with_suffix(".png")
            plot(payload, png)
            print(f"wrote {png}")


if __name__ == "__main__":
    main()
