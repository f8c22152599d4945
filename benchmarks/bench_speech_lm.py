"""Speed of the speech LM: `generate` against its bare backbone, and batched `score` against one by one.

Claims checked, each as a ratio against a baseline run in this process on the same input:
1. `SpeechLMForCausalLM.generate` adds no cost over the backbone's own `generate` on the same ids
   (aim: overhead ratio <= 1.05);
2. batched `score` is faster than scoring one utterance at a time.

Usage: python benchmarks/bench_speech_lm.py [--model zoo/speech-lm-tiny] [--repeats 5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _timing import median_seconds, print_table  # benchmarks/_timing.py

import hf_slm  # noqa: F401  (registers the Auto classes)
from hf_slm.models.speech_lm import SpeechLMForCausalLM

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "zoo" / "speech-lm-tiny"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--utterances", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = SpeechLMForCausalLM.from_pretrained(args.model).eval()
    n_params = sum(p.numel() for p in model.lm.parameters()) / 1e6
    g = torch.Generator().manual_seed(0)

    rows = []
    # 1. generate: the wrapper vs the backbone, same prompt ids, same greedy settings, fixed length
    for batch in (1, 8):
        units = [torch.randint(0, model.config.n_units, (60,), generator=g) for _ in range(batch)]
        prompt = model.units_to_ids(units, add_eos=False, padding_side="left")
        settings = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                        pad_token_id=0, eos_token_id=2)  # fmt: skip
        ours = median_seconds(lambda p=prompt, s=settings: model.generate(**p, **s), args.repeats)
        base = median_seconds(lambda p=prompt, s=settings: model.lm.generate(**p, **s), args.repeats)
        tokens = batch * args.new_tokens
        rows.append((f"generate, batch {batch}", f"{tokens / base:.0f} tok/s (bare backbone)",
                     f"{tokens / ours:.0f} tok/s", f"overhead {ours / base:.3f}"))  # fmt: skip

    # 2. score: one batched call vs one utterance at a time, utterances of 50-250 units
    lengths = torch.randint(50, 250, (args.utterances,), generator=g).tolist()
    ids = model.units_to_ids([torch.randint(0, model.config.n_units, (n,), generator=g) for n in lengths])
    one = median_seconds(
        lambda: [model.score(input_ids=ids["input_ids"][i : i + 1, : n + 2]) for i, n in enumerate(lengths)],
        max(1, args.repeats // 2),
    )
    batched = median_seconds(lambda: model.score(**ids), max(1, args.repeats // 2))
    rows.append((f"score {args.utterances} utterances", f"{args.utterances / one:.1f} utt/s (one at a time)",
                 f"{args.utterances / batched:.1f} utt/s (batched, length-sorted)", f"speed-up {one / batched:.2f}x"))  # fmt: skip

    print_table(f"speech LM speed ({Path(args.model).name}, {n_params:.1f}M-parameter backbone, "
                  f"{torch.get_num_threads()} threads)", rows)  # fmt: skip


if __name__ == "__main__":
    main()
