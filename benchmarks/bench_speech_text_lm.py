"""Speed of the speech+text LM: `generate` against its bare backbone, and time to first audio for TTS.

Claims checked, each as a ratio against a baseline run in this process on the same input:
1. `SpeechTextLMForCausalLM.generate` (with its modality mask) adds little over the backbone's own
   `generate` on the same ids and number of new tokens (aim: overhead ratio <= 1.05);
2. streaming TTS (`stream_speech`: the first units are voiced while the rest are generated) gives its
   first audio sooner than voicing the units after generation ends.

Usage: python benchmarks/bench_speech_text_lm.py [--model zoo/speech-text-lm-tiny] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _timing import paired_median_seconds, print_table  # benchmarks/_timing.py
from transformers import AutoProcessor

import hf_slm  # noqa: F401  (registers the Auto classes)
from hf_slm.models.speech_text_lm import SpeechTextLMForCausalLM

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = [
    "the old farmer carried a basket of apples to the market",
    "a quiet river runs past the little house",
    "my brother found a green umbrella under the bridge",
    "the hungry children ate bread and cheese",
    "a tall woman painted the door of her kitchen",
    "the small boat sailed slowly across the lake",
    "our teacher read a story about a brave mouse",
    "the wind blew the yellow leaves into the garden",
]


def first_audio_after_generation(model, inputs, settings) -> tuple[float, float]:
    t0 = time.perf_counter()
    out = model.generate(**inputs, **settings)  # generates every unit, then voices them
    first = time.perf_counter() - t0
    return first, len(out.audio[0]) / model.config.sampling_rate


def first_audio_streaming(model, inputs, settings, chunk_units: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    first, samples = None, 0
    for chunk in model.stream_speech(**inputs, chunk_units=chunk_units, **settings):
        if first is None:
            first = time.perf_counter() - t0
        samples += len(chunk)
    if first is None:  # nothing was spoken
        first = time.perf_counter() - t0
    return first, samples / model.config.sampling_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "zoo" / "speech-text-lm-tiny"))
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--new-tokens", type=int, default=150)
    parser.add_argument("--chunk-units", type=int, default=20, help="units per streamed chunk")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = SpeechTextLMForCausalLM.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    n_params = sum(p.numel() for p in model.lm.parameters()) / 1e6
    rows = []

    # 1. generate: the model (modality mask and all) vs its backbone on the same prompt ids, greedy,
    #    a fixed number of new tokens
    for batch in (1, 8):
        inputs = processor(text=SENTENCES[:batch], task="tts")
        ids = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
        settings = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
        special = {"pad_token_id": model.config.pad_token_id, "eos_token_id": model.config.eos_token_id}
        ours, base = paired_median_seconds(
            lambda i=ids, s=settings: model.generate(**i, output_modality="speech", return_audio=False, **s),
            lambda i=ids, s=settings, sp=special: model.lm.generate(**i, **s, **sp),
            args.repeats,
        )
        tokens = batch * args.new_tokens
        rows.append((f"generate {args.new_tokens} tokens, batch {batch}", f"{tokens / base:.0f} tok/s (bare backbone)",
                     f"{tokens / ours:.0f} tok/s (output_modality='speech')", f"overhead {ours / base:.3f}"))  # fmt: skip

    # 2. TTS time to first audio, one sentence: voicing after generation vs streaming chunks
    inputs = processor(text=SENTENCES[0], task="tts")
    for label, settings in (
        (
            f"{args.new_tokens} units (fixed)",
            dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens),
        ),
        ("the sentence (greedy, ends itself)", dict(max_new_tokens=400)),
    ):
        after = [first_audio_after_generation(model, inputs, settings) for _ in range(args.repeats)]
        stream = [
            first_audio_streaming(model, inputs, settings, args.chunk_units) for _ in range(args.repeats)
        ]
        t_after, t_stream = statistics.median(a for a, _ in after), statistics.median(a for a, _ in stream)
        seconds = after[0][1]
        rows.append((f"TTS first audio, {label}: {seconds:.1f} s of speech", f"{t_after * 1000:.0f} ms (after generation)",
                     f"{t_stream * 1000:.0f} ms (streaming, {args.chunk_units}-unit chunks)",
                     f"{t_stream / t_after:.2f} of the wait ({t_after / t_stream:.1f}x sooner)"))  # fmt: skip

    print_table(f"speech+text LM speed ({Path(args.model).name}, {n_params:.1f}M-parameter backbone, "
                  f"{torch.get_num_threads()} threads)", rows)  # fmt: skip


if __name__ == "__main__":
    main()
