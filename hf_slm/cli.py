"""The ``hf-slm`` command.

hf-slm data synth --out DIR [--hours H] [--seed S]   build the synthetic speech corpus
hf-slm data summary DIR [--plot PNG]                  describe a corpus (ours or a user's)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from hf_slm.data import lexicon, synthesize_corpus
    from hf_slm.data.summary import corpus_summary, plot_utterance, print_summary

    start = time.perf_counter()
    dsd = synthesize_corpus(
        args.out, hours=args.hours, seed=args.seed, num_workers=args.workers, overwrite=args.overwrite
    )
    minutes = (time.perf_counter() - start) / 60
    rows = corpus_summary(dsd)
    print_summary(rows, lexicon_size=len(lexicon()))
    hours = sum(r["hours"] for r in rows)
    print(
        f"wrote {args.out} in {minutes * 60:.1f} s ({hours / max(minutes, 1e-9):.2f} audio hours per wall minute)"
    )
    if args.plot:
        split = "test" if "test" in dsd else next(iter(dsd))
        print(
            f"wrote {plot_utterance(dsd[split][0], args.plot)} ({split}[0]: spectrogram with word boundaries)"
        )
    return 0


def _cmd_data_summary(args: argparse.Namespace) -> int:
    from hf_slm.data import lexicon, load_corpus
    from hf_slm.data.summary import corpus_summary, plot_utterance, print_summary

    dsd = load_corpus(args.corpus)
    print_summary(corpus_summary(dsd), lexicon_size=len(lexicon()))
    if args.plot:
        split = args.split or ("test" if "test" in dsd else next(iter(dsd)))
        print(f"wrote {plot_utterance(dsd[split][args.index], args.plot)} ({split}[{args.index}])")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-slm", description="A Hugging Face-native zoo of spoken language models."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="make and inspect speech corpora").add_subparsers(
        dest="data_command", required=True
    )
    synth = data.add_parser(
        "synth", help="build the synthetic espeak-ng speech corpus (a datasets.DatasetDict)"
    )
    synth.add_argument("--out", required=True, help="output folder (read back with datasets.load_from_disk)")
    synth.add_argument("--hours", type=float, default=1.0, help="hours of audio in all (default 1.0)")
    synth.add_argument(
        "--seed", type=int, default=0, help="the same seed gives byte-identical output (default 0)"
    )
    synth.add_argument("--workers", type=int, default=None, help="processes to use (default: all cores)")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing corpus in --out")
    synth.add_argument(
        "--plot", type=Path, default=None, help="also write a PNG of a test utterance with word boundaries"
    )
    synth.set_defaults(func=_cmd_data_synth)

    summary = data.add_parser("summary", help="print a table of a corpus: hours, utterances, words, voices")
    summary.add_argument(
        "corpus", help="a corpus folder, a .jsonl manifest, an audiofolder, or a Hub dataset id"
    )
    summary.add_argument("--plot", type=Path, default=None, help="write a PNG of one utterance")
    summary.add_argument("--split", default=None, help="split of the utterance to plot (default: test)")
    summary.add_argument("--index", type=int, default=0, help="index of the utterance to plot")
    summary.set_defaults(func=_cmd_data_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    from hf_slm.audio import AudioError
    from hf_slm.data.corpus import CorpusError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (AudioError, CorpusError, FileExistsError, ValueError) as err:
        print(f"hf-slm: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
