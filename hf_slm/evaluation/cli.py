"""The evaluation harness on the command line: ``hf-slm data benchmarks`` and ``hf-slm eval``.

```
hf-slm data benchmarks --out DIR [--seed S] [--lexical-pairs N] [--syntactic-pairs N]
                       [--storycloze-pairs N] [--continuation-prompts N]
hf-slm eval MODEL --task lexical|syntactic|storycloze|continuation|all --data DIR
                  [--split test|dev] [--scoring sum|mean|both] [--text-field phonemes|text]
                  [--submission-out SUBDIR] [--out results.json] [--judge-corpus CORPUS]
```

On a corpus instead of the benchmark sets: ``hf-slm eval MODEL --task asr,tts --data CORPUS`` (a
speech+text LM) and ``hf-slm eval MODEL --task asr,instructions,retention --data CORPUS --instructions DIR
--text-lm DIR`` (a speech-aware LM: :mod:`hf_slm.evaluation.speech_aware`).

``hf-slm eval --task resynthesis`` (unit tokenizer + vocoder pairs on a corpus) keeps its own
options, ``--tokenizer`` / ``--vocoder``, and is run by :mod:`hf_slm.cli`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from hf_slm.evaluation.tasks import LIKELIHOOD_TASKS, SCORINGS, TASKS, TaskError

__all__ = [
    "add_benchmarks_parser",
    "add_eval_parser",
    "plot_results",
    "print_results",
    "run_benchmarks",
    "run_eval",
]

EVAL_TASKS = (*TASKS, "all", "resynthesis", "asr", "tts", "instructions", "retention")
CORPUS_TASKS = (
    "asr",
    "tts",
    "instructions",
    "retention",
)  # on a corpus (or instruction set), not the benchmarks


# --- hf-slm data benchmarks ----------------------------------------------------------------------
def add_benchmarks_parser(data_subparsers: Any) -> argparse.ArgumentParser:
    """Add ``benchmarks`` to the ``hf-slm data`` subcommands."""
    from hf_slm.data.benchmarks import BenchmarkConfig

    d = BenchmarkConfig()
    p = data_subparsers.add_parser(
        "benchmarks",
        help="build the benchmark sets (lexical, syntactic, storycloze, continuation) with held-out voices",
        description="Write ZeroSpeech 2021-style benchmark sets spoken by espeak-ng voices that training "
        "never hears: dev (validation voices) and test (test voices) splits of 16 kHz wavs, gold.csv, "
        "phonemes.csv and prompts.csv.",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=d.seed, help="the same seed gives byte-identical files")
    p.add_argument("--lexical-pairs", type=int, default=d.lexical_pairs, help="word/nonword ids per split")
    p.add_argument("--syntactic-pairs", type=int, default=d.syntactic_pairs, help="minimal pairs per split")
    p.add_argument("--storycloze-pairs", type=int, default=d.storycloze_pairs, help="stories per split")
    p.add_argument(
        "--continuation-prompts", type=int, default=d.continuation_prompts, help="prompts per split"
    )
    p.add_argument("--workers", type=int, default=None, help="processes to use (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace a build already in --out")
    p.set_defaults(func=run_benchmarks)
    return p


def run_benchmarks(args: argparse.Namespace) -> int:
    """``hf-slm data benchmarks``: build the sets and print what was written."""
    from rich.console import Console
    from rich.table import Table

    from hf_slm.data.benchmarks import BenchmarkConfig, build_benchmarks

    config = BenchmarkConfig(
        seed=args.seed,
        lexical_pairs=args.lexical_pairs,
        syntactic_pairs=args.syntactic_pairs,
        storycloze_pairs=args.storycloze_pairs,
        continuation_prompts=args.continuation_prompts,
    )
    start = time.perf_counter()
    info = build_benchmarks(args.out, config, num_workers=args.workers, overwrite=args.overwrite)
    seconds = time.perf_counter() - start
    table = Table(title=f"benchmark sets in {args.out}")
    for col in ("task", "split", "pairs / prompts", "voices", "wavs", "minutes"):
        table.add_column(col, justify="left" if col in ("task", "split") else "right")
    voices = {}
    for task, splits in info["splits"].items():
        for split, s in splits.items():
            n = s.get("pairs", s.get("prompts"))
            voices[split] = s["voices"]
            table.add_row(
                task, split, str(n), str(len(s["voices"])), str(s["wavs"]), f"{s['seconds'] / 60:.1f}"
            )
    Console().print(table)
    for split, names in voices.items():
        print(f"{split} voices (never in training): {', '.join(names)}")
    if info["reused"]:
        print(f"{args.out} already holds these benchmark sets (same settings and seed): reused them")
    else:
        print(f"wrote {args.out} in {seconds:.1f} s")
    return 0


# --- hf-slm eval ---------------------------------------------------------------------------------
def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` command; the caller sets its ``func``."""
    ev = subparsers.add_parser(
        "eval",
        help="evaluate a model on the benchmark tasks (or tokenizer + vocoder pairs on resynthesis)",
        description="Likelihood tasks (lexical, syntactic, storycloze) score a speech LM (audio) or a "
        "causal text LM with a tokenizer (phonemes or text: the topline) by the ZeroSpeech 2021 rules; "
        "continuation generates speech from prompts and has an ASR judge transcribe it. Prints a table "
        "and writes JSON (--out).",
    )
    ev.add_argument(
        "model",
        nargs="?",
        default=None,
        help="the model folder or Hub id: a speech LM (it has .score) or a causal text LM with its "
        "tokenizer (not used by --task resynthesis)",
    )
    ev.add_argument(
        "--task",
        required=True,
        help="lexical, syntactic, storycloze, continuation, all (every task the model can do), "
        "several joined by commas, or resynthesis; on a corpus: asr, tts (speech+text LMs), "
        "asr, instructions, retention (speech-aware LMs)",
    )
    ev.add_argument(
        "--data",
        required=True,
        help="the benchmark folder (hf-slm data benchmarks); for resynthesis, a corpus",
    )
    ev.add_argument("--split", default="test", help="test (default) or dev; for resynthesis, a corpus split")
    ev.add_argument(
        "--scoring",
        choices=["sum", "mean", "both"],
        default="both",
        help="item score: summed or mean log-likelihood",
    )
    ev.add_argument(
        "--text-field",
        choices=["phonemes", "text"],
        default="phonemes",
        help="what a text LM reads of each item (default: its phonemes)",
    )
    ev.add_argument("--batch-size", type=int, default=16, help="items per scoring batch")
    ev.add_argument(
        "--prompt-modality",
        choices=["speech", "text"],
        default="speech",
        help="a speech+text LM reads the likelihood items as speech (default) or as text",
    )
    ev.add_argument(
        "--limit", type=int, default=None, help="only the first N ids / prompts (resynthesis: clips)"
    )
    ev.add_argument(
        "--submission-out",
        default=None,
        help="write sLM21 submission files (<filename> <score> lines) to DIR/<task>/<split>.txt, scored "
        "with --scoring (sum when both)",
    )
    ev.add_argument(
        "--out",
        default=None,
        help="results JSON file (a PNG is written beside it); a folder gets eval_results.json. For "
        "resynthesis: the folder of resynthesis.json and resynthesis.png",
    )
    ev.add_argument(
        "--judge-corpus",
        default=None,
        help="continuation: a corpus whose train text builds the judge's language model (default: the "
        "text of the seed-0 corpus plan)",
    )
    ev.add_argument("--max-new-tokens", type=int, default=150, help="continuation: units to generate")
    ev.add_argument("--temperature", type=float, default=1.0, help="continuation: sampling temperature")
    ev.add_argument("--seed", type=int, default=0, help="continuation: prompt i is continued with seed + i")
    ev.add_argument(
        "--update-cards",
        action="store_true",
        help="write the results into the model card (resynthesis: the cards of each vocoder, its unit "
        "tokenizer and, for k-means units of an SSL encoder, that encoder; each keeps resynthesis.json)",
    )
    sa = ev.add_argument_group("speech-aware LMs (--task asr,instructions,retention)")
    sa.add_argument(
        "--instructions", default=None, help="instructions: the instruction set (hf-slm data instructions)"
    )
    sa.add_argument(
        "--text-lm",
        default=None,
        help="retention: the text LM the model was built from (perplexity before), on the text of --data's split",
    )
    res = ev.add_argument_group("resynthesis")
    res.add_argument(
        "--tokenizer",
        action="append",
        default=None,
        help="unit tokenizer folder (repeat for several systems)",
    )
    res.add_argument(
        "--vocoder",
        action="append",
        default=None,
        help="vocoder folder, or griffin-lim (one per --tokenizer)",
    )
    res.add_argument("--lm-split", default="train", help="split whose text builds the judge's language model")
    return ev


def parse_tasks(spec: str) -> list[str]:
    """``"lexical,syntactic"`` -> ``["lexical", "syntactic"]``, with a clear error for an unknown task."""
    tasks = [t.strip() for t in spec.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in EVAL_TASKS]
    if unknown or not tasks:
        raise ValueError(f"unknown task {(unknown or [spec])[0]!r}; choose from: {', '.join(EVAL_TASKS)}")
    if "resynthesis" in tasks and len(tasks) > 1:
        raise ValueError("--task resynthesis evaluates tokenizer + vocoder pairs: run it on its own")
    corpus_tasks = [t for t in tasks if t in CORPUS_TASKS]
    if corpus_tasks and len(corpus_tasks) != len(tasks):
        raise ValueError(
            "--task asr / tts / instructions / retention run on a corpus (--data CORPUS), the other tasks on the "
            "benchmark sets: run them in separate calls"
        )
    return tasks


def run_eval(args: argparse.Namespace) -> int:
    """``hf-slm eval MODEL --task ...`` for the benchmark tasks: score, print, write JSON and submissions."""
    from hf_slm.evaluation.tasks import (
        continuation_judge,
        evaluate_continuation,
        evaluate_likelihood_task,
        load_continuer,
        load_scorer,
    )

    tasks = parse_tasks(args.task)
    if args.model is None:
        raise ValueError("give the MODEL to evaluate: hf-slm eval MODEL --task ... --data BENCHMARKS")
    if set(tasks) <= set(CORPUS_TASKS):
        return run_corpus_tasks(args, tasks)
    if args.split not in ("dev", "test"):
        raise ValueError(f"--split must be dev or test for the benchmark tasks, got {args.split!r}")
    data = Path(args.data)
    if not data.is_dir():
        raise TaskError(
            f"{data} does not exist: build the benchmark sets with `hf-slm data benchmarks --out {data}`"
        )
    scorings = list(SCORINGS) if args.scoring == "both" else [args.scoring]

    wanted = [t for t in TASKS if t in tasks or "all" in tasks]
    notes: list[str] = []
    if "all" in tasks:  # only the tasks that were built
        for t in list(wanted):
            need = "prompts.csv" if t == "continuation" else "gold.csv"
            if not (data / t / args.split / need).is_file():
                wanted.remove(t)
                notes.append(f"{t}: not in {data} (built with size 0?), skipped")
    scorer = None
    if any(t in LIKELIHOOD_TASKS for t in wanted):
        scorer = load_scorer(
            args.model,
            text_field=args.text_field,
            batch_size=args.batch_size,
            prompt_modality=args.prompt_modality,
        )
    if "continuation" in wanted and type(scorer).__name__ == "SpeechTextScorer":
        wanted.remove("continuation")
        notes.append("continuation: evaluated for pure speech LMs (speech+text LMs: --task asr,tts), skipped")
    if "continuation" in wanted and scorer is not None and scorer.kind != "speech":
        if "all" in tasks:
            wanted.remove("continuation")
            notes.append("continuation: a text LM does not generate speech, skipped")
        else:
            raise TaskError(
                f"{args.model} is a text LM: the continuation task needs a speech LM that generates speech"
            )

    results: dict[str, Any] = {
        "model": str(args.model),
        "data": str(data),
        "split": args.split,
        "scorer": None if scorer is None else scorer.kind,
        "text_field": args.text_field if type(scorer).__name__ == "TextScorer" else None,
        "limit": args.limit,
        "tasks": {},
    }
    for task in wanted:
        if task in LIKELIHOOD_TASKS:
            r = evaluate_likelihood_task(
                task, data, scorer, split=args.split, scorings=scorings, limit=args.limit
            )
            item_scores = r.pop("item_scores")
            if args.submission_out:
                from hf_slm.evaluation.zerospeech import write_submission

                path = Path(args.submission_out) / task / f"{args.split}.txt"
                write_submission(path, item_scores[scorings[0]])
                r["submission"] = str(path)
        else:
            continuer = load_continuer(
                args.model, max_new_tokens=args.max_new_tokens, temperature=args.temperature
            )
            texts = None
            if args.judge_corpus:
                from hf_slm.data import load_corpus

                texts = load_corpus(args.judge_corpus, split="train")["text"]
            judge = continuation_judge(texts)
            r = evaluate_continuation(
                data, continuer, judge, split=args.split, limit=args.limit, seed=args.seed
            )
            r["generation"] = {
                "max_new_tokens": args.max_new_tokens,
                "temperature": args.temperature,
                "seed": args.seed,
            }
        results["tasks"][task] = r
    results["notes"] = notes

    print_results(results)
    for note in notes:
        print(f"note: {note}")
    if args.out:
        write_results(results, args.out, plot_results)
    if args.submission_out:
        print(f"wrote submission files to {args.submission_out}")
    if args.update_cards:
        _results_into_card(results, args.model)
    return 0


def run_corpus_tasks(args: argparse.Namespace, tasks: list[str]) -> int:
    """``hf-slm eval MODEL --task asr,tts --data CORPUS --split test``: a speech+text LM's ASR WER and
    its TTS intelligibility beside the original recordings'; table, JSON and PNG."""
    import torch
    from rich.console import Console
    from rich.table import Table
    from transformers import AutoConfig, AutoModelForCausalLM, AutoProcessor

    import hf_slm  # noqa: F401
    from hf_slm.data import load_corpus
    from hf_slm.evaluation.judge import AsrJudge
    from hf_slm.evaluation.speech_text import evaluate_asr, evaluate_tts, plot_corpus_tasks
    from hf_slm.models.speech_aware_lm import SpeechAwareLMConfig
    from hf_slm.models.speech_text_lm import SpeechTextLMForCausalLM

    if isinstance(AutoConfig.from_pretrained(args.model), SpeechAwareLMConfig):
        from hf_slm.evaluation.speech_aware import run_speech_aware_tasks

        return run_speech_aware_tasks(args, tasks)
    if set(tasks) & {"instructions", "retention"}:
        raise TaskError(
            f"{args.model}: --task instructions / retention evaluate a speech-aware LM (family 3)"
        )
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    if not isinstance(model, SpeechTextLMForCausalLM):
        raise TaskError(
            f"{args.model} is a {model.config.model_type!r} model: asr / tts need a speech+text LM"
        )
    processor = AutoProcessor.from_pretrained(args.model)
    corpus = load_corpus(args.data)
    if args.split not in corpus:
        raise TaskError(f"{args.data} has no split {args.split!r} (it has {sorted(corpus)})")
    data = corpus[args.split]
    if args.limit:
        data = data.select(range(min(args.limit, len(data))))
    torch.manual_seed(args.seed)
    results: dict[str, Any] = {
        "model": str(args.model),
        "data": str(args.data),
        "split": args.split,
        "tasks": {},
    }
    if "asr" in tasks:
        results["tasks"]["asr"] = evaluate_asr(model, processor, data, batch_size=args.batch_size)
    if "tts" in tasks:
        judge_texts = load_corpus(args.judge_corpus or args.data, split=args.lm_split)["text"]
        judge = AsrJudge.from_texts(judge_texts)
        r = evaluate_tts(model, processor, data, judge, max_new_tokens=args.max_new_tokens)
        r.pop("_example_audio")
        results["tasks"]["tts"] = r
    from rich.markup import escape

    table = Table(title=escape(f"{args.model} on {args.data} [{args.split}]"))
    for col in ("task", "utterances", "WER", "topline WER", "x topline"):
        table.add_column(col, justify="left" if col == "task" else "right")
    if "asr" in results["tasks"]:
        r = results["tasks"]["asr"]
        table.add_row("ASR (greedy)", str(r["num_utterances"]), f"{r['wer']:.3f}", "", "")
    if "tts" in results["tasks"]:
        r = results["tasks"]["tts"]
        table.add_row("TTS (judge on its speech)", str(r["num_utterances"]), f"{r['wer']:.3f}",
                      f"{r['topline_wer']:.3f}", f"{r['wer_ratio']:.2f}")  # fmt: skip
    Console().print(table)
    if args.out:
        write_results(results, args.out, plot_corpus_tasks)
    return 0


def write_results(results: dict[str, Any], out: str | Path, plot: Any) -> Path:
    """Write results as JSON (a folder gets eval_results.json) and ``plot(results, PNG)`` beside it."""
    out = Path(out)
    if out.suffix != ".json":
        out = out / "eval_results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    png = plot(results, out.with_suffix(".png"))
    print(f"wrote {out}" + (f" and {png}" if png else ""))
    return out


def _fmt(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def print_results(results: dict[str, Any]) -> None:
    """Rich tables of :func:`run_eval`'s results: accuracies, breakdowns, continuation metrics."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    tasks = results["tasks"]
    lik = {t: r for t, r in tasks.items() if t in LIKELIHOOD_TASKS}
    if lik:
        scorer = results["scorer"] + (f" ({results['text_field']})" if results.get("text_field") else "")
        table = Table(title=f"{results['model']} on {results['split']} ({scorer} scorer; chance = 0.5)")
        table.add_column("task")
        table.add_column("ids", justify="right")
        table.add_column("pairs", justify="right")
        for s in SCORINGS:
            if any(s in r for r in lik.values()):
                table.add_column(f"accuracy ({s})", justify="right")
        for task, r in lik.items():
            table.add_row(
                task,
                str(r["num_ids"]),
                str(r["num_pairs"]),
                *[_fmt(r[s]["score"]) for s in SCORINGS if s in r],
            )
        console.print(table)
        for task, key, label in (
            ("lexical", "by_frequency", "frequency band"),
            ("syntactic", "by_type", "type"),
        ):
            if task not in lik:
                continue
            r = lik[task]
            scorings = [s for s in SCORINGS if s in r]
            t = Table(title=f"{task} by {label}")
            t.add_column(label)
            t.add_column("ids", justify="right")
            for s in scorings:
                t.add_column(s, justify="right")
            for group, v in r[scorings[0]][key].items():
                t.add_row(group, str(v["n"]), *[_fmt(r[s][key][group]["score"]) for s in scorings])
            console.print(t)
    if "continuation" in tasks:
        r = tasks["continuation"]
        top = r.get("topline", {})
        t = Table(title=f"continuation: {r['num_transcripts']} prompts, transcribed by the ASR judge")
        t.add_column("metric")
        t.add_column("generated", justify="right")
        t.add_column("original sentences", justify="right")
        for key, label in (
            ("word_validity", "word validity (lexicon words / words)"),
            ("repeated_3gram_rate", "repeated word 3-grams"),
            ("distinct_2", "distinct-2"),
            ("mean_words", "words per transcript"),
            ("empty_rate", "empty transcripts"),
        ):
            t.add_row(label, _fmt(r.get(key)), _fmt(top.get(key)))
        t.add_row("judge WER on the originals", "", _fmt(top.get("wer")))
        console.print(t)


def plot_results(results: dict[str, Any], path: str | Path) -> Path | None:
    """A bar chart of the likelihood-task accuracies (sum and mean scoring), with chance at 0.5."""
    lik = {t: r for t, r in results["tasks"].items() if t in LIKELIHOOD_TASKS}
    if not lik:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scorings = [s for s in SCORINGS if any(s in r for r in lik.values())]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / len(scorings)
    for k, s in enumerate(scorings):
        xs = [i + (k - (len(scorings) - 1) / 2) * width for i in range(len(lik))]
        ax.bar(xs, [r[s]["score"] if s in r else 0 for r in lik.values()], width, label=f"{s} log-likelihood")
    ax.axhline(0.5, color="gray", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(range(len(lik)), list(lik))
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"{Path(results['model']).name} ({results['split']})")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def card_results(results: dict[str, Any], topline: dict[str, Any] | None = None) -> tuple[str, list]:
    """The Results section of a model card (Markdown) and its ``model-index`` entries.

    ``topline`` (the results of a reference model on the same sets, e.g. the same backbone trained on
    phonemes) adds two columns beside the model's own.
    """
    from huggingface_hub import EvalResult

    names = {
        "lexical": "lexical (sWUGGY-style word vs nonword)",
        "syntactic": "syntactic (sBLIMP-style minimal pairs)",
        "storycloze": "spoken StoryCloze-style",
    }
    evals, lines = [], []
    subset = f" (first {results['limit']} ids of each task)" if results.get("limit") else ""
    lines.append(
        f"Zero-shot likelihood tasks on the `{results['split']}` split of the hf-slm benchmark sets{subset} "
        "(held-out voices), scored by the ZeroSpeech 2021 rules (`hf-slm eval`); chance is 0.5."
        + (
            " The topline is the same backbone trained on the corpus's phoneme transcriptions."
            if topline
            else ""
        )
        + "\n"
    )
    header = "| task | ids | accuracy (sum) | accuracy (mean) |"
    if topline:
        header += " topline (sum) | topline (mean) |"
    lines.append(header + "\n|" + "---|" * (6 if topline else 4))
    for task, r in results["tasks"].items():
        if task not in LIKELIHOOD_TASKS:
            continue
        row = f"| {task} | {r['num_ids']} | {_fmt(r.get('sum', {}).get('score'))} | {_fmt(r.get('mean', {}).get('score'))} |"
        if topline:
            t = topline.get("tasks", {}).get(task, {})
            row += f" {_fmt(t.get('sum', {}).get('score'))} | {_fmt(t.get('mean', {}).get('score'))} |"
        lines.append(row)
        for s in SCORINGS:
            if s in r:
                evals.append(
                    EvalResult(
                        task_type="audio-classification",
                        task_name=names[task],
                        dataset_type=f"hf-slm/benchmarks-{task}",
                        dataset_name=f"hf-slm {task} benchmark, held-out voices",
                        dataset_split=results["split"],
                        metric_type="accuracy",
                        metric_name=f"accuracy ({s} log-likelihood)",
                        metric_value=round(r[s]["score"], 4),
                    )
                )
    if "continuation" in results["tasks"]:
        r = results["tasks"]["continuation"]
        lines.append(
            f"\nContinuation of {r['num_transcripts']} spoken prompts, transcribed by the ASR judge: word validity "
            f"{_fmt(r['word_validity'])} (original sentences: {_fmt(r.get('topline', {}).get('word_validity'))}), "
            f"repeated word 3-grams {_fmt(r['repeated_3gram_rate'])}, distinct-2 {_fmt(r['distinct_2'])}, "
            f"{_fmt(r.get('mean_words'), 1)} words per transcript, {_fmt(r.get('empty_rate'), 2)} of them empty "
            "(word validity alone barely tells speech from babble: read it with these)."
        )
    return "\n".join(lines), evals


def _results_into_card(results: dict[str, Any], model: str) -> None:
    from hf_slm.hub import update_card_results

    if not (Path(model) / "README.md").exists():
        print(f"{model} has no README.md model card; nothing updated")
        return
    table, evals = card_results(results)
    update_card_results(model, table, evals)
    print(f"updated the card of {model}")
