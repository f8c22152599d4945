"""`hf-slm speech-text-lm init | mix`: assemble a speech+text LM and write its mixed training data."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_speech_text_lm_parser"]

_WEIGHTS = ("interleaved", "asr", "tts", "text_only", "speech_only")


def _mixture(args: argparse.Namespace):
    from hf_slm.data.interleave import MixtureConfig

    names = (
        *_WEIGHTS,
        "speech_ratio",
        "mean_span_words",
        "paired_span_prob",
        "max_span_words",
        "views",
        "seed",
    )
    values = {k: getattr(args, k) for k in names}
    return MixtureConfig(**{k: v for k, v in values.items() if v is not None})


def _write_mixture(model, processor, units, config, out: Path) -> None:
    import collections
    import json

    from datasets import DatasetDict

    from hf_slm.data.interleave import build_mixture

    frame_rate = model.config.unit_tokenizer_config.frame_rate
    mix = DatasetDict({s: build_mixture(units[s], processor, config, frame_rate) for s in units})
    mix.save_to_disk(str(out))
    (out / "mixture.json").write_text(json.dumps(config.to_dict(), indent=2))
    for split, ds in mix.items():
        kinds = collections.Counter(ds["kind"])
        tokens = sum(len(x) for x in ds["input_ids"])
        print(
            f"{out} [{split}]: {len(ds)} sequences, {tokens} tokens; "
            + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
        )


def _cmd_init(args: argparse.Namespace) -> int:
    from datasets import DatasetDict
    from transformers import AutoTokenizer

    from hf_slm.data import load_corpus
    from hf_slm.models.speech_text_lm import SpeechTextLMForCausalLM, SpeechTextLMProcessor

    text_tokenizer = AutoTokenizer.from_pretrained(args.text_tokenizer or args.text_lm)
    model = SpeechTextLMForCausalLM.from_components(
        args.unit_tokenizer, vocoder=args.vocoder, text_lm=args.text_lm, text_tokenizer=text_tokenizer
    )
    processor = SpeechTextLMProcessor.from_text_tokenizer(
        text_tokenizer,
        model.config.n_units,
        sampling_rate=model.config.sampling_rate,
        max_seconds=model.config.max_audio_seconds,
        max_length=getattr(model.config.text_config, "max_position_embeddings", None),
    )
    corpus = load_corpus(args.data)
    splits = [s for s in (args.split, args.eval_split) if s]
    units = DatasetDict({s: model.encode_dataset(corpus[s], num_proc=args.num_proc) for s in splits})
    model.set_unit_durations(units[args.split]["units"], units[args.split]["durations"])
    out = Path(args.out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    units.save_to_disk(str(out / "units"))
    _write_mixture(model, processor, units, _mixture(args), out / "mixture")
    print(
        f"wrote {out}: the model ({len(processor.tokenizer)} tokens: text, markers, units), its processor, units/, mixture/"
    )
    return 0


def _cmd_mix(args: argparse.Namespace) -> int:
    from datasets import load_from_disk
    from transformers import AutoProcessor

    import hf_slm  # noqa: F401
    from hf_slm.models.speech_text_lm import SpeechTextLMConfig

    config = SpeechTextLMConfig.from_pretrained(args.model)
    processor = AutoProcessor.from_pretrained(args.model)

    class _Model:  # build_mixture reads the frame rate only
        pass

    model = _Model()
    model.config = config
    units = load_from_disk(args.units or str(Path(args.model) / "units"))
    _write_mixture(model, processor, units, _mixture(args), Path(args.out))
    return 0


def speech_text_card_results(
    corpus: dict | None,
    speech: dict | None,
    text: dict | None,
    baseline: dict | None,
    ablation: dict | None = None,
) -> tuple[str, list]:
    """The Results section (Markdown) and `model-index` entries of a speech+text LM's card: ASR / TTS
    on a corpus split, the likelihood tasks read as speech and as text, beside a pure speech LM
    (`baseline`) and the model trained without interleaving (`ablation`, its speech-read results)."""
    from huggingface_hub import EvalResult

    from hf_slm.evaluation.tasks import LIKELIHOOD_TASKS

    def acc(res: dict | None, task: str) -> str:
        r = (res or {}).get("tasks", {}).get(task)
        return "" if not r else f"{r['sum']['score']:.3f} / {r['mean']['score']:.3f}"

    lines, evals = [], []
    if corpus:
        split = corpus["split"]
        lines.append(f"On the `{split}` split of the corpus (voices never heard in training):\n")
        lines.append(
            "| task | utterances | WER | original recordings (judge) | ratio |\n|---|---|---|---|---|"
        )
        t = corpus["tasks"]
        if "asr" in t:
            lines.append(f"| ASR, greedy | {t['asr']['num_utterances']} | {t['asr']['wer']:.3f} | | |")
            evals.append(EvalResult(task_type="automatic-speech-recognition", dataset_type="hf-slm/corpus",
                                    dataset_name="hf-slm synthetic corpus, held-out voices", dataset_split=split,
                                    metric_type="wer", metric_value=round(t["asr"]["wer"], 4)))  # fmt: skip
        if "tts" in t:
            r = t["tts"]
            lines.append(f"| TTS, judge WER on its speech | {r['num_utterances']} | {r['wer']:.3f} | {r['topline_wer']:.3f} | {r['wer_ratio']:.2f} |")  # fmt: skip
            evals.append(EvalResult(task_type="text-to-speech", dataset_type="hf-slm/corpus",
                                    dataset_name="hf-slm synthetic corpus, held-out voices", dataset_split=split,
                                    metric_type="wer", metric_name="judge WER on generated speech",
                                    metric_value=round(r["wer"], 4)))  # fmt: skip
        lines.append("")
    if speech or text:
        split = (speech or text)["split"]
        lines.append(
            f"Zero-shot likelihood tasks on the `{split}` split of the hf-slm benchmark sets (held-out voices), "
            "ZeroSpeech 2021 rules, accuracy by summed / mean log-likelihood (chance 0.5); each item read as "
            "speech (`[SPEECH]` + its units) or as text (`[TEXT]` + its words): the Spirit LM comparison.\n"
        )
        cols = ["speech prompts", "text prompts"] + (["pure speech LM (family 1)"] if baseline else [])
        cols += ["no interleaving (speech)"] if ablation else []
        lines.append("| task | " + " | ".join(cols) + " |\n|" + "---|" * (len(cols) + 1))
        for task in LIKELIHOOD_TASKS:
            row = [acc(speech, task), acc(text, task)] + ([acc(baseline, task)] if baseline else [])
            row += [acc(ablation, task)] if ablation else []
            lines.append(f"| {task} | " + " | ".join(row) + " |")
            for name, res in (("speech", speech), ("text", text)):
                r = (res or {}).get("tasks", {}).get(task)
                if r:
                    evals.append(EvalResult(task_type="audio-classification", task_name=f"{task} ({name} prompts)",
                                            dataset_type=f"hf-slm/benchmarks-{task}",
                                            dataset_name=f"hf-slm {task} benchmark, held-out voices",
                                            dataset_split=res["split"], metric_type="accuracy",
                                            metric_name=f"accuracy (sum log-likelihood, {name})",
                                            metric_value=round(r["sum"]["score"], 4)))  # fmt: skip
    return "\n".join(lines), evals


def _cmd_export(args: argparse.Namespace) -> int:
    import json
    import shutil

    from hf_slm.cli import _write_trained_card, store_in_bfloat16, training_summary
    from hf_slm.models.speech_text_lm import SpeechTextLMForCausalLM

    src, out = Path(args.model), Path(args.out)
    if not (src / "model.safetensors").exists():
        raise ValueError(
            f"{src} holds no model.safetensors: point --model at a trained speech+text LM folder"
        )
    if not args.card_only:  # with --card-only, the weights in --out stay: they are what was evaluated
        from transformers import AutoProcessor

        model = SpeechTextLMForCausalLM.from_pretrained(src)
        if args.storage_dtype == "bfloat16":
            store_in_bfloat16(model)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        AutoProcessor.from_pretrained(src).save_pretrained(out)
        for name in ("training_log.json", "loss_curve.png"):
            if (src / name).exists():
                shutil.copy2(src / name, out / name)

    def read(path: str | None) -> dict | None:
        return json.loads(Path(path).read_text()) if path else None

    corpus, speech, text = read(args.results_corpus), read(args.results_speech), read(args.results_text)
    table, evals = speech_text_card_results(
        corpus, speech, text, read(args.baseline_results), read(args.ablation_results)
    )
    for path, name in ((args.results_corpus, "eval_asr_tts.json"), (args.results_speech, "eval_speech_prompts.json"),
                       (args.results_text, "eval_text_prompts.json")):  # fmt: skip
        if path and Path(path).resolve() != (out / name).resolve():
            shutil.copy2(path, out / name)
    log = json.loads((src / "training_log.json").read_text()) if (src / "training_log.json").exists() else {}
    summary = log.get("summary", {})
    config = json.loads((out / "config.json").read_text())
    tc, uc = config["text_config"], config["unit_tokenizer_config"]
    training = {
        "backbone": f"{tc['model_type']}, {tc['num_hidden_layers']} layers x {tc['hidden_size']}, vocabulary "
        f"{tc['vocab_size']} ({config['text_vocab_size']} text tokens, 5 markers, {uc['n_units']} units)",
        "starting point": args.text_lm or "a text LM",
        "data": args.data_description or "interleaved, ASR, TTS, text-only and speech-only sequences",
    }
    training.update(training_summary(summary))
    name = out.name
    _write_trained_card(
        out,
        args,
        summary="A speech+text LM (Spirit LM / SpeechGPT style): one causal LM over text tokens and speech units "
        "with `[TEXT]` / `[SPEECH]` markers, with its frozen unit tokenizer and vocoder in one checkpoint. It "
        "transcribes, reads text aloud, continues either modality in either, and scores both.",
        usage="```python\nfrom transformers import AutoModelForCausalLM, AutoProcessor, pipeline\n\n"
        f'm = AutoModelForCausalLM.from_pretrained("hf-slm/{name}")\n'
        f'p = AutoProcessor.from_pretrained("hf-slm/{name}")\n'
        'ids = m.generate(**p(audio="clip.wav", task="asr"), output_modality="text")\n'
        "print(p.batch_decode(ids, skip_special_tokens=True))  # the transcript\n"
        'out = m.generate(**p(text="the dog runs", task="tts"))   # .audio[0], .sampling_rate\n'
        f'asr = pipeline("automatic-speech-recognition", model="hf-slm/{name}")\n'
        f'tts = pipeline("text-to-speech", model="hf-slm/{name}")\n```',
        tags=["speech-text-lm", "speech-units", "spirit-lm", "interleaved"],
        pipeline_tag="automatic-speech-recognition",
        training=training,
        results_table=table,
        eval_results=evals,
    )
    print(f"wrote {out} ({sum(f.stat().st_size for f in out.iterdir()) / 1e6:.1f} MB)")
    return 0


def _add_mixture_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("mixture (weights of each kind of sequence; see hf_slm.data.interleave)")
    for k in _WEIGHTS:
        g.add_argument(
            f"--{k.replace('_', '-')}", dest=k, type=float, default=None, help=f"weight of {k} sequences"
        )
    g.add_argument(
        "--speech-ratio", type=float, default=None, help="share of interleaved words that are spoken"
    )
    g.add_argument("--mean-span-words", type=float, default=None, help="mean interleaved span, in words")
    g.add_argument(
        "--paired-span-prob",
        type=float,
        default=None,
        help="chance an ASR / TTS pair is a span of a few words",
    )
    g.add_argument("--max-span-words", type=int, default=None, help="longest such span, in words")
    g.add_argument("--views", type=int, default=None, help="sequences drawn per utterance")
    g.add_argument("--seed", type=int, default=None)


def add_speech_text_lm_parser(sub: argparse._SubParsersAction) -> None:
    stl = sub.add_parser("speech-text-lm", help="speech+text LMs").add_subparsers(
        dest="speech_text_lm_command", required=True
    )
    init = stl.add_parser(
        "init", help="assemble a speech+text LM from a text LM; write its units and mixed data"
    )
    init.add_argument("--unit-tokenizer", required=True, help="a fitted unit tokenizer folder")
    init.add_argument("--vocoder", default=None, help="a unit vocoder folder trained on that tokenizer")
    init.add_argument("--text-lm", required=True, help="the text LM folder whose vocabulary is extended")
    init.add_argument("--text-tokenizer", default=None, help="its tokenizer (default: the --text-lm folder)")
    init.add_argument("--data", required=True, help="a corpus with word alignments ('words')")
    init.add_argument("--split", default="train")
    init.add_argument("--eval-split", default="validation")
    init.add_argument("--num-proc", type=int, default=None, help="processes for datasets.map")
    init.add_argument("--out", required=True, help="output folder: model, processor, units/, mixture/")
    _add_mixture_args(init)
    init.set_defaults(func=_cmd_init)

    mix = stl.add_parser(
        "mix", help="write another mixture of an initialised model's units (e.g. an ablation)"
    )
    mix.add_argument("--model", required=True, help="a folder written by `speech-text-lm init`")
    mix.add_argument("--units", default=None, help="its units dataset (default MODEL/units)")
    mix.add_argument("--out", required=True, help="output folder (datasets.load_from_disk)")
    _add_mixture_args(mix)
    mix.set_defaults(func=_cmd_mix)

    export = stl.add_parser(
        "export", help="write a trained speech+text LM as a zoo folder with its model card"
    )
    export.add_argument("--model", required=True, help="the trained model folder (hf-slm train output)")
    export.add_argument("--out", required=True, help="the zoo folder to write")
    export.add_argument("--results-corpus", default=None, help="eval JSON of --task asr,tts")
    export.add_argument(
        "--results-speech", default=None, help="eval JSON of the likelihood tasks, speech prompts"
    )
    export.add_argument(
        "--results-text", default=None, help="eval JSON of the likelihood tasks, text prompts"
    )
    export.add_argument(
        "--baseline-results", default=None, help="eval JSON of a pure speech LM, for comparison"
    )
    export.add_argument(
        "--ablation-results", default=None, help="eval JSON (speech prompts) without interleaving"
    )
    export.add_argument("--text-lm", default=None, help="what it started from (for the card)")
    export.add_argument("--data-description", default=None, help="its training data (for the card)")
    export.add_argument("--card-only", action="store_true", help="only render the card of an exported --out")
    export.add_argument(
        "--storage-dtype", choices=["float32", "bfloat16"], default="bfloat16",
        help="dtype of the stored backbone, vocoder and SSL-encoder weights (they load back in float32)",
    )  # fmt: skip
    export.add_argument("--recipe", default=None, help=argparse.SUPPRESS)
    export.add_argument("--recipe-command", default=None, help=argparse.SUPPRESS)
    export.set_defaults(func=_cmd_export)
