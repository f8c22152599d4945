"""The ``hf-slm`` command (``hf-slm COMMAND --help`` for every option).

hf-slm data synth --out DIR [--hours H] [--seed S]       build the synthetic speech corpus
hf-slm data summary CORPUS [--plot PNG]                   describe a corpus (ours or a user's)
hf-slm data text --data CORPUS --field text|phonemes      its words or phonemes + a word-level tokenizer
hf-slm data instructions --data CORPUS --out DIR          audio instruction data of a speech-aware text LM
hf-slm data benchmarks --out DIR                          sLM21 lexical/syntactic, StoryCloze, prompts
hf-slm units fit / units pretrain-hubert                  unit tokenizers (k-means; HuBERT iteration 1)
hf-slm vocoder train                                      a unit vocoder
hf-slm speech-lm init / speech-lm export                  assemble a speech LM; write it as a zoo folder
hf-slm speech-text-lm init / mix                          a speech+text LM and its mixed training data
hf-slm speech-aware-lm init / export                      compose a speech-aware text LM (encoder + adapter + LLM)
hf-slm train RECIPE.yaml [--set section.key=value]        the training loop (also: accelerate launch -m hf_slm.train)
hf-slm finetune --model M --data D --task T --out DIR     a LoRA adapter on your data (also: -m hf_slm.finetune)
hf-slm zoo build | list | install | push                  the zoo: from recipes; a table; into the HF cache; to the Hub
hf-slm leaderboard --corpus C --benchmarks B --out DIR    every zoo LM on every task it supports (md + png)
hf-slm eval MODEL --task T --data BENCH                   lexical, syntactic, storycloze, continuation
hf-slm eval MODEL --task asr,instructions,retention       a speech-aware LM on a corpus and an instruction set
hf-slm eval --task resynthesis --tokenizer T --vocoder V  resynthesis intelligibility
hf-slm recipe run RECIPE.yaml                             run a recipe's steps (modeling/recipes/)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hf_slm.evaluation.cli import add_benchmarks_parser, add_eval_parser
from hf_slm.evaluation.leaderboard import add_leaderboard_parser
from hf_slm.finetune import add_finetune_arguments
from hf_slm.speech_aware_cli import add_speech_aware_lm_parser
from hf_slm.speech_text_cli import add_speech_text_lm_parser
from hf_slm.training.cli import add_train_parser
from hf_slm.zoo import add_zoo_parser

__all__ = ["main"]


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from hf_slm.data import lexicon, synthesize_corpus
    from hf_slm.data.summary import corpus_summary, plot_utterance, print_summary

    existed = (Path(args.out) / "synth_config.json").exists() and not args.overwrite
    start = time.perf_counter()
    config = None
    voices = {split: getattr(args, f"{split}_voices") for split in ("train", "validation", "test")}
    if any(voices.values()):
        from dataclasses import replace

        from hf_slm.data import SynthConfig

        default = SynthConfig().voices
        chosen = {
            split: tuple(v.strip() for v in value.split(",") if v.strip()) if value else default[split]
            for split, value in voices.items()
        }
        config = replace(SynthConfig(), voices=chosen)
    dsd = synthesize_corpus(
        args.out,
        hours=args.hours,
        seed=args.seed,
        num_workers=args.workers,
        overwrite=args.overwrite,
        config=config,
    )
    minutes = (time.perf_counter() - start) / 60
    rows = corpus_summary(dsd)
    print_summary(rows, lexicon_size=len(lexicon()))
    hours = sum(r["hours"] for r in rows)
    if existed:
        print(f"{args.out} already holds this corpus (same settings and seed): reused it")
    else:
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


def _write_json(path: Path, obj) -> None:
    import json

    path.write_text(json.dumps(obj, indent=2))


def _write_trained_card(out: Path, args: argparse.Namespace, **card) -> None:
    """The model card of a folder a command just trained, with the command (or recipe) that made it."""
    from hf_slm.hub import write_card

    command = args.recipe_command or " ".join(["hf-slm", *sys.argv[1:]])
    write_card(out, model_name=out.name, command=command, recipe=args.recipe, **card)


def store_in_bfloat16(model) -> None:
    """Cast a speech LM's backbone, vocoder and SSL encoder to bfloat16 for saving (half the download;
    they load back in float32). Centroids and spectral filterbanks stay float32."""
    import torch

    model.lm.to(torch.bfloat16)
    if model.vocoder is not None:
        model.vocoder.to(torch.bfloat16)
    if model.config.unit_tokenizer_config.frontend == "ssl":
        model.unit_tokenizer.frontend.encoder.to(torch.bfloat16)


def training_summary(summary: dict) -> dict[str, str]:
    """The model card's lines about a training run (`training_log.json`'s summary), if there was one."""
    if not summary:
        return {}
    return {
        "steps": summary["steps"], "final training loss": f"{summary['final_train_loss']:.3f}",
        "final validation loss": f"{summary['final_eval_loss']:.3f}",
        "throughput": f"{summary['tokens_per_second']:.0f} tokens/s", "training time": f"{summary['minutes']:.1f} min",
    }  # fmt: skip


def _cmd_units_fit(args: argparse.Namespace) -> int:
    import time

    from hf_slm.data import load_corpus
    from hf_slm.units import SpeechUnitTokenizer, SpeechUnitTokenizerConfig

    ds = load_corpus(args.data, split=args.split)
    common = {"normalize": not args.no_normalize, "deduplicate": not args.no_deduplicate}
    if args.frontend == "ssl":
        if not args.ssl_model:
            raise ValueError(
                "--frontend ssl needs --ssl-model (a HuBERT / WavLM / wav2vec 2.0 folder or Hub id)"
            )
        tok = SpeechUnitTokenizer.from_ssl_encoder(args.ssl_model, args.ssl_layer, args.n_units, **common)
    else:
        tok = SpeechUnitTokenizer(
            SpeechUnitTokenizerConfig(frontend=args.frontend, n_units=args.n_units, **common)
        )
    t0 = time.perf_counter()
    stats = tok.fit(ds, batch_size=args.batch_size, epochs=args.epochs, seed=args.seed)
    minutes = (time.perf_counter() - t0) / 60
    out = Path(args.out)
    tok.save_pretrained(out)
    log = {**stats, "fit_minutes": minutes, "clips": len(ds), "command": " ".join(sys.argv)}
    _write_json(out / "training_log.json", log)
    frontend = args.frontend if args.frontend != "ssl" else f"layer {args.ssl_layer} of {args.ssl_model}"
    _write_trained_card(
        out,
        args,
        summary=f"A discrete speech unit tokenizer: {frontend} features, {args.n_units}-way k-means "
        f"(fitted by hf-slm), {'de-duplicated with run lengths' if common['deduplicate'] else 'one unit per frame'}.",
        usage='```python\nunits = model.encode("speech.wav")  # .units, .durations, .lengths\n```',
        tags=["speech-units", "k-means"],
        training={"clips": len(ds), "frames": int(stats["frames"]), "k-means inertia": f"{stats['inertia']:.3f}",
                  "fit time": f"{minutes:.1f} min"},
    )  # fmt: skip
    print(f"wrote {out} ({args.n_units} units, inertia {stats['inertia']:.3f}, {minutes:.1f} min)")
    return 0


def _cmd_units_pretrain_hubert(args: argparse.Namespace) -> int:
    from hf_slm.data import load_corpus
    from hf_slm.units import SpeechUnitTokenizer
    from hf_slm.units.hubert_pretraining import pretrain_hubert, small_hubert_config

    ds = load_corpus(args.data, split=args.split)
    targets = SpeechUnitTokenizer.from_pretrained(args.targets)
    config = small_hubert_config(args.hidden_size, args.layers, args.heads, args.conv_dim)
    model, history = pretrain_hubert(
        ds,
        targets,
        config,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
    )
    out = Path(args.out)
    model.save_pretrained(out)
    _write_json(out / "training_log.json", {"history": history, "targets": args.targets})
    last = history[-1]
    _write_trained_card(
        out,
        args,
        summary=f"A small HuBERT ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters) trained by hf-slm "
        "with HuBERT's first iteration: masked prediction of MFCC k-means units.",
        usage="Use a hidden layer as unit features: `hf-slm units fit --frontend ssl --ssl-model THIS --ssl-layer L`.",
        tags=["hubert", "self-supervised"],
        pipeline_tag="feature-extraction",
        training={"steps": args.steps, "final masked-frame loss": f"{last['loss']:.3f}",
                  "final masked-frame accuracy": f"{last['masked_accuracy']:.3f}",
                  "training time": f"{last['seconds'] / 60:.1f} min"},
    )  # fmt: skip
    print(f"wrote {out}: masked accuracy {last['masked_accuracy']:.3f} after {args.steps} steps")
    return 0


def _cmd_units_pretrain_ctc(args: argparse.Namespace) -> int:
    from hf_slm.data import load_corpus
    from hf_slm.units.ctc_pretraining import PER_LIMIT, phone_processor, pretrain_ctc, small_ctc_config

    corpus = load_corpus(args.data)
    processor = phone_processor(corpus[args.split])
    config = small_ctc_config(len(processor.tokenizer), args.hidden_size, args.layers, args.conv_dim)
    model, history = pretrain_ctc(
        corpus[args.split], processor, config, eval_dataset=corpus[args.eval_split] if args.eval_split else None,
        steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
    )  # fmt: skip
    out = Path(args.out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    _write_json(out / "training_log.json", {"history": history})
    _plot_history(history, ["loss"], out / "training_loss.png", "CTC phone recognition")
    last = history[-1]
    per = last.get("phone_error_rate")
    results_table, evals = "", None
    if per is not None:
        results_table, evals = phone_error_rate_card_results(
            per, args.eval_split, min(PER_LIMIT, len(corpus[args.eval_split]))
        )
    _write_trained_card(
        out,
        args,
        results_table=results_table,
        eval_results=evals,
        summary=f"A small HuBERT-architecture phone recogniser ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
        "parameters) trained from scratch by hf-slm with CTC on espeak phoneme transcripts of the train voices. "
        "Its hidden layers give speaker-independent speech units (`hf-slm units fit --frontend ssl`).",
        usage='```python\nfrom transformers import pipeline\nasr = pipeline("automatic-speech-recognition", model=THIS)  # phones, | between words\n```',
        tags=["hubert", "ctc", "phone-recognition"],
        pipeline_tag="automatic-speech-recognition",
        training={"steps": args.steps, "final CTC loss": f"{last['loss']:.3f}",
                  f"phone error rate ({args.eval_split}, voices never heard in training)": "-" if per is None else f"{per:.3f}",
                  "training time": f"{last['seconds'] / 60:.1f} min"},
    )  # fmt: skip
    print(
        f"wrote {out}: CTC loss {last['loss']:.3f}" + ("" if per is None else f", phone error rate {per:.3f}")
    )
    return 0


def phone_error_rate_card_results(per: float, split: str, num_clips: int) -> tuple[str, list]:
    """The Results section and ``model-index`` entry of a CTC phone recogniser's card: its phone error
    rate as `units pretrain-ctc` measures it at the end of training (``training_log.json``)."""
    from huggingface_hub import EvalResult

    table = (
        f"Phone error rate {per:.3f} on the first {num_clips} clips of the `{split}` split (voices never heard in "
        "training): greedy CTC decoding against espeak-ng's phonemes, word boundaries not counted "
        "(measured by `hf-slm units pretrain-ctc` at the end of training; `training_log.json`)."
    )
    evals = [
        EvalResult(task_type="automatic-speech-recognition", task_name="phone recognition",
                   dataset_type="hf-slm/synthetic-espeak-corpus", dataset_name="hf-slm synthetic corpus, held-out voices",
                   dataset_split=split, metric_type="per", metric_name="phone error rate (greedy CTC)",
                   metric_value=round(per, 4)),
    ]  # fmt: skip
    return table, evals


def _cmd_units_from_ctc(args: argparse.Namespace) -> int:
    from hf_slm.units import SpeechUnitTokenizer

    tok = SpeechUnitTokenizer.from_ctc_model(args.model, layer=args.layer)
    out = Path(args.out)
    tok.save_pretrained(out)
    _write_trained_card(
        out,
        args,
        summary=f"Phone units: each 20-ms frame of `{args.model}` (a CTC phone recogniser trained by hf-slm) "
        f"takes the phone its CTC head finds most likely; blank frames continue the phone before them; runs are "
        f"de-duplicated with durations. {tok.config.n_units} units, each named by its phone (`config.unit_labels`).",
        usage='```python\nout = model.encode("speech.wav")\nphones = [model.config.unit_labels[u] for u in out.units[0]]\n```',
        tags=["speech-units", "phones", "ctc"],
        training={"phone classes": tok.config.n_units, "encoder": args.model},
    )  # fmt: skip
    print(f"wrote {out} ({tok.config.n_units} phone units from {args.model})")
    return 0


def _cmd_vocoder_train(args: argparse.Namespace) -> int:
    from hf_slm.data import load_corpus
    from hf_slm.units import SpeechUnitTokenizer
    from hf_slm.vocoders import UnitVocoder, UnitVocoderConfig
    from hf_slm.vocoders.training import VocoderTrainingData, train_vocoder

    ds = load_corpus(args.data, split=args.split)
    tok = SpeechUnitTokenizer.from_pretrained(args.tokenizer)
    speakers = sorted(set(ds["voice"])) if "voice" in ds.column_names else None
    config = UnitVocoderConfig(
        n_units=tok.config.n_units, unit_rate=tok.config.sampling_rate / tok.config.hop_length,
        hidden_size=args.hidden_size, intermediate_size=3 * args.hidden_size,
        num_unit_layers=args.layers, num_frame_layers=args.layers, speakers=speakers,
    )  # fmt: skip
    vocoder = UnitVocoder(config)
    data = VocoderTrainingData.from_dataset(tok, ds)
    history = train_vocoder(
        vocoder,
        data,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
    )
    out = Path(args.out)
    vocoder.save_pretrained(out)
    _write_json(out / "training_log.json", {"history": history, "tokenizer": args.tokenizer})
    _plot_history(history, ["mel", "stft_mag", "stft_sc"], out / "training_loss.png", "unit vocoder training")
    last = history[-1]
    _write_trained_card(
        out,
        args,
        summary=f"A unit vocoder ({sum(p.numel() for p in vocoder.parameters()) / 1e6:.1f}M parameters): units of "
        f"`{args.tokenizer}` -> ConvNeXt stack -> inverse-STFT head -> 16 kHz audio, trained by hf-slm with "
        "multi-resolution STFT and log-mel losses.",
        usage='```python\nwave = model.generate_speech(units, durations)[0]  # float32, 16 kHz\n```',
        tags=["vocoder", "speech-units"],
        pipeline_tag="text-to-audio",
        training={"steps": args.steps, "batch": f"{args.batch_size} x 0.96 s", "final mel L1": f"{last['mel']:.3f}",
                  "training time": f"{last['seconds'] / 60:.1f} min"},
    )  # fmt: skip
    print(f"wrote {out}: mel L1 {last['mel']:.3f} after {args.steps} steps ({last['seconds'] / 60:.1f} min)")
    return 0


def _plot_history(history: list[dict], keys: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [h["step"] for h in history]
    for k in keys:
        ax.plot(steps, [h[k] for h in history], label=k)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _cmd_eval(args: argparse.Namespace) -> int:
    if args.task != "resynthesis":
        from hf_slm.evaluation.cli import run_eval

        return run_eval(args)
    if not args.tokenizer or not args.vocoder:
        raise ValueError("--task resynthesis needs --tokenizer and --vocoder (one --vocoder per --tokenizer)")
    from hf_slm.data import load_corpus
    from hf_slm.evaluation.judge import AsrJudge
    from hf_slm.evaluation.resynthesis import evaluate_resynthesis, print_resynthesis_table
    from hf_slm.units import SpeechUnitTokenizer
    from hf_slm.vocoders import UnitVocoder
    from hf_slm.vocoders.griffin_lim import GriffinLimVocoder

    if len(args.tokenizer) != len(args.vocoder):
        raise ValueError(
            "give one --vocoder per --tokenizer (use 'griffin-lim' for the Griffin-Lim baseline)"
        )
    corpus = load_corpus(args.data)
    judge = AsrJudge.from_texts(corpus[args.lm_split]["text"])
    systems = {}
    for t, v in zip(args.tokenizer, args.vocoder):
        tok = SpeechUnitTokenizer.from_pretrained(t)
        voc = GriffinLimVocoder(tok) if v == "griffin-lim" else UnitVocoder.from_pretrained(v)
        systems[f"{Path(t).name} + {Path(v).name}"] = (tok, voc)
    results = evaluate_resynthesis(systems, corpus[args.split], judge, limit=args.limit, out_dir=args.out)
    print_resynthesis_table(results)
    if args.update_cards:
        _resynthesis_into_cards(results, dict(zip(systems, zip(args.tokenizer, args.vocoder))), args)
    if args.out:
        print(f"wrote {Path(args.out) / 'resynthesis.json'} and {Path(args.out) / 'resynthesis.png'}")
    return 0


def _resynthesis_into_cards(
    results: dict, folders: dict[str, tuple[str, str]], args: argparse.Namespace
) -> None:
    """Put each system's measured resynthesis into the cards of the folders it measures: the vocoder, the
    unit tokenizer and, for k-means units of an SSL encoder's hidden layer, that encoder (the resynthesis
    of its units is its measured result). Each folder keeps the measurement as ``resynthesis.json``."""
    import json

    from hf_slm.hub import update_card_results

    for name, (tokenizer, vocoder) in folders.items():
        table, evals = resynthesis_card_results(results, name, args.split)
        targets = [(vocoder, ""), (tokenizer, "")]
        encoder = _kmeans_ssl_encoder(tokenizer)
        if encoder is not None:
            folder, layer, n_units = encoder
            targets.append((folder, (
                f"The measured result of this encoder is the resynthesis of its layer-{layer} features as "
                f"{n_units} k-means units (`{Path(tokenizer).name}`), spoken again by `{Path(vocoder).name}`. "
            )))  # fmt: skip
        for folder, preface in targets:
            if folder == "griffin-lim" or not (Path(folder) / "README.md").exists():
                continue
            (Path(folder) / "resynthesis.json").write_text(
                json.dumps({"topline": results["topline"], name: results["systems"][name]}, indent=2)
            )
            update_card_results(folder, preface + table, evals)
            print(f"updated the card of {folder}")


def _kmeans_ssl_encoder(tokenizer: str) -> tuple[str, int, int] | None:
    """(folder, layer, units) of the SSL encoder whose hidden layer a k-means unit tokenizer quantizes, when
    that encoder is a local folder with a card (a zoo folder beside the tokenizer); else None."""
    import json

    path = Path(tokenizer) / "config.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text())
    source = str((config.get("ssl_config") or {}).get("_name_or_path") or "")
    if config.get("frontend") != "ssl" or config.get("quantizer", "kmeans") != "kmeans" or not source:
        return None
    for folder in (Path(tokenizer).parent / Path(source).name, Path(source)):
        if (folder / "README.md").is_file():
            return str(folder), int(config["ssl_layer"]), int(config["n_units"])
    return None


def resynthesis_card_results(results: dict, name: str, split: str) -> tuple[str, list]:
    """The Results section and ``model-index`` entries of system ``name`` in `evaluate_resynthesis` results."""
    from huggingface_hub import EvalResult

    top = results["topline"]["wer"]
    r = results["systems"][name]
    dataset = dict(dataset_type="hf-slm/synthetic-espeak-corpus", dataset_name="hf-slm synthetic corpus, held-out voices",
                   dataset_split=split, task_type="audio-to-audio", task_name="resynthesis")  # fmt: skip
    evals = [
        EvalResult(**dataset, metric_type="wer", metric_name="judge WER (pocketsphinx + corpus LM)", metric_value=round(r["wer"], 4)),
        EvalResult(**dataset, metric_type="wer_ratio", metric_name="WER / WER of the original audio", metric_value=round(r["wer_ratio"], 4)),
        EvalResult(**dataset, metric_type="mcd", metric_name="mel-cepstral distortion (dB)", metric_value=round(r["mcd_db"], 4)),
    ]  # fmt: skip
    table = (
        f"Resynthesis of {results['num_utterances']} clips of held-out voices (`{name}`), judged by pocketsphinx "
        "with a language model of the training text (`hf-slm eval --task resynthesis`):\n\n"
        "| audio | judge WER | x original | MCD (dB) |\n|---|---|---|---|\n"
        f"| original (topline) | {top:.3f} | 1.00 | 0.00 |\n"
        f"| resynthesised | {r['wer']:.3f} | {r['wer_ratio']:.2f} | {r['mcd_db']:.2f} |\n"
    )
    return table, evals


def _cmd_data_text(args: argparse.Namespace) -> int:
    from hf_slm.data import load_corpus
    from hf_slm.data.text_corpus import build_subword_tokenizer, build_word_tokenizer, text_dataset

    if args.instructions and (args.field != "text" or args.tokenizer != "wordpiece"):
        raise ValueError(
            "--instructions adds chat-formatted text: use it with --field text --tokenizer wordpiece"
        )
    corpus = load_corpus(args.data)
    dsd = text_dataset(corpus, args.field)
    special = None
    if args.instructions:
        from datasets import Dataset, concatenate_datasets

        from hf_slm.data.instructions import CHAT_SPECIAL_TOKENS, instruction_texts

        special = CHAT_SPECIAL_TOKENS
        for split, n in (("train", args.instructions), ("validation", args.instructions // 10)):
            if split in dsd and n:
                texts = instruction_texts(corpus[split], n=n)
                rows = {
                    "id": [f"instruction-{split}-{i:06d}" for i in range(n)],
                    "voice": [""] * n,
                    "text": texts,
                }
                extra = Dataset.from_dict(
                    {k: rows[k] for k in dsd[split].column_names}, features=dsd[split].features
                )
                dsd[split] = concatenate_datasets([dsd[split], extra])
    out = Path(args.out)
    dsd.save_to_disk(str(out))
    if args.tokenizer == "wordpiece":
        tok = build_subword_tokenizer(dsd["train"]["text"], args.vocab_size, out / "tokenizer", special)
    else:
        tok = build_word_tokenizer(dsd["train"]["text"], out / "tokenizer")
    sizes = ", ".join(f"{k} {len(v)}" for k, v in dsd.items())
    if args.instructions:
        sizes += (
            f"; with {args.instructions} text instructions in train, {args.instructions // 10} in validation"
        )
    print(f"wrote {out} ({args.field}: {sizes}) and its tokenizer {out / 'tokenizer'} ({len(tok)} tokens)")
    return 0


def _cmd_data_instructions(args: argparse.Namespace) -> int:
    from collections import Counter

    from hf_slm.data import load_corpus
    from hf_slm.data.instructions import TASKS, build_instruction_dataset

    start = time.perf_counter()
    dsd = build_instruction_dataset(
        load_corpus(args.data),
        rows_per_utterance=args.rows_per_utterance,
        nonspeech_fraction=args.nonspeech_fraction,
        per_task=args.eval_per_task or None,
        seed=args.seed,
        tasks=args.tasks.split(",") if args.tasks else None,
    )
    out = Path(args.out)
    dsd.save_to_disk(str(out))
    for split, ds in dsd.items():
        counts = Counter(ds["task"])
        no = sum(1 for t, r in zip(ds["task"], ds["response"]) if t == "speech_presence" and r == "no")
        tasks = ", ".join(f"{t} {counts[t]}" for t in TASKS if counts[t])
        print(f"{split}: {len(ds)} rows ({tasks}; {no} of them non-speech clips)")
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_speech_lm_init(args: argparse.Namespace) -> int:
    import json

    from datasets import DatasetDict

    from hf_slm.data import load_corpus
    from hf_slm.models.speech_lm import SpeechLMForCausalLM, SpeechLMProcessor

    if (args.text_lm is None) == (args.backbone_config is None):
        raise ValueError("give --text-lm FOLDER (TWIST warm start) or --backbone-config JSON (from scratch)")
    backbone = json.loads(Path(args.backbone_config).read_text()) if args.backbone_config else None
    model = SpeechLMForCausalLM.from_components(
        args.unit_tokenizer, vocoder=args.vocoder, text_config=backbone, text_lm=args.text_lm
    )
    corpus = load_corpus(args.data)
    splits = [s for s in (args.split, args.eval_split) if s]
    units = DatasetDict(
        {s: model.prepare_training_dataset(corpus[s], num_proc=args.num_proc) for s in splits}
    )
    offset = model.config.unit_offset
    train_units = [[u - offset for u in ids[1:-1]] for ids in units[args.split]["input_ids"]]
    model.set_unit_durations(train_units, units[args.split]["durations"])
    out = Path(args.out)
    model.save_pretrained(out)
    SpeechLMProcessor.default(model.config.sampling_rate, model.config.max_audio_seconds).save_pretrained(out)
    units.save_to_disk(str(out / "units"))
    n_tok = sum(len(x) for x in units[args.split]["input_ids"])
    hours = (
        sum(corpus[args.split]["duration"]) / 3600
        if "duration" in corpus[args.split].column_names
        else float("nan")
    )
    print(
        f"wrote {out} ({sum(p.numel() for p in model.lm.parameters()) / 1e6:.2f}M-parameter backbone, "
        f"{'warm-started from ' + args.text_lm if args.text_lm else 'from scratch'}) and {out / 'units'}: "
        f"{n_tok} tokens in {args.split} ({n_tok / max(hours * 3600, 1e-9):.1f} tokens per second of audio)"
    )
    return 0


def _cmd_speech_lm_export(args: argparse.Namespace) -> int:
    import json
    import shutil

    from hf_slm.evaluation.cli import card_results
    from hf_slm.models.speech_lm import SpeechLMForCausalLM

    src, out = Path(args.model), Path(args.out)
    if not (src / "model.safetensors").exists():
        raise ValueError(f"{src} holds no model.safetensors: point --model at a trained speech LM folder")
    if not args.card_only:  # with --card-only, the weights in --out stay: they are what was evaluated
        model = SpeechLMForCausalLM.from_pretrained(src)
        if args.vocoder:
            model.set_vocoder(args.vocoder)
        if args.storage_dtype == "bfloat16":
            store_in_bfloat16(model)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        for name in ("processor_config.json", "training_log.json", "loss_curve.png"):
            if (src / name).exists():
                shutil.copy2(src / name, out / name)
    log = json.loads((src / "training_log.json").read_text()) if (src / "training_log.json").exists() else {}
    summary = log.get("summary", {})
    results = json.loads(Path(args.results).read_text()) if args.results else None
    topline = json.loads(Path(args.topline_results).read_text()) if args.topline_results else None
    table, evals = card_results(results, topline) if results else ("", [])
    if results and Path(args.results).resolve() != (out / "eval_results.json").resolve():
        shutil.copy2(args.results, out / "eval_results.json")
    config = json.loads((out / "config.json").read_text())
    tc, uc = config["text_config"], config["unit_tokenizer_config"]
    if uc.get("quantizer") == "classifier":
        units = f"{uc['n_units']} phone units (a CTC recogniser's head), de-duplicated with durations"
    else:
        units = f"{uc['n_units']} k-means units of {uc['frontend']} features, de-duplicated with durations"
    training = {
        "backbone": f"{tc['model_type']}, {tc['num_hidden_layers']} layers x {tc['hidden_size']}, "
        f"{summary.get('trainable_parameters', 0) / 1e6:.2f}M parameters",
        "units": units,
        "warm start": args.warm_start or "none (from scratch)",
    }
    training.update(training_summary(summary))
    _write_trained_card(
        out,
        args,
        summary="A pure speech LM (GSLM / TWIST style): a frozen unit tokenizer, a causal LM over its units and "
        "a unit vocoder in one checkpoint. It continues speech, and scores it (log-likelihood per utterance).",
        usage="```python\nfrom transformers import AutoModelForCausalLM, AutoProcessor, pipeline\n\n"
        f'lm = AutoModelForCausalLM.from_pretrained("hf-slm/{out.name}")\n'
        f'proc = AutoProcessor.from_pretrained("hf-slm/{out.name}")\n'
        'inputs = proc(audio="prompt.wav", return_tensors="pt")\n'
        "ids = lm.generate(**inputs, max_new_tokens=150)   # unit continuation\n"
        "audio = lm.decode_speech(ids)[0]                  # 16 kHz, bundled vocoder\n"
        "ll = lm.score(**inputs)                           # .sum, .mean, .num_tokens\n"
        f'pipe = pipeline("speech-continuation", model="hf-slm/{out.name}")\n```',
        tags=["speech-lm", "speech-units", "gslm", "twist"],
        pipeline_tag="audio-to-audio",
        training=training,
        results_table=table,
        eval_results=evals,
    )
    print(f"wrote {out} ({sum(f.stat().st_size for f in out.iterdir()) / 1e6:.1f} MB)")
    return 0


def _cmd_recipe_run(args: argparse.Namespace) -> int:
    from hf_slm.recipes import load_recipe

    parser = build_parser()
    steps = load_recipe(args.recipe, parser)  # validates every step before running any
    for i, argv in enumerate(steps, 1):
        print(f"[{i}/{len(steps)}] hf-slm {' '.join(argv)}", flush=True)
        step = parser.parse_args(argv)
        if hasattr(step, "recipe_command"):  # provenance for the model card
            step.recipe, step.recipe_command = str(args.recipe), f"hf-slm recipe run {args.recipe}"
        code = step.func(step)
        if code:
            return code
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
    for split, default in (
        ("train", "TRAIN_VOICES"),
        ("validation", "VALIDATION_VOICES"),
        ("test", "TEST_VOICES"),
    ):
        synth.add_argument(
            f"--{split}-voices",
            default=None,
            help=f"comma-separated espeak-ng voices of the {split} split, e.g. en-us-nyc+m1,en-us-nyc+f2 "
            f"(`espeak-ng --voices=en` lists the accents; +m1..m7 / +f1..f5 the variants; default: {default})",
        )
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

    add_benchmarks_parser(data)  # hf-slm data benchmarks --out DIR

    text = data.add_parser("text", help="the words or phonemes of a corpus as a text dataset + tokenizer")
    text.add_argument("--data", required=True, help="a corpus")
    text.add_argument("--field", choices=["text", "phonemes"], default="text", help="words or phonemes")
    text.add_argument(
        "--tokenizer",
        choices=["word", "wordpiece"],
        default="word",
        help="word: one token per word (unknown words -> <unk>); wordpiece: subwords that spell any word",
    )
    text.add_argument("--vocab-size", type=int, default=1000, help="wordpiece vocabulary size")
    text.add_argument(
        "--out", required=True, help="output folder (datasets.load_from_disk; tokenizer/ inside)"
    )
    text.add_argument(
        "--instructions", type=int, default=0, metavar="N",
        help="add N text-only chat instructions to train (N//10 to validation) and the chat tokens to the "
        "tokenizer (with --tokenizer wordpiece)",
    )  # fmt: skip
    text.set_defaults(func=_cmd_data_text)

    ins = data.add_parser(
        "instructions", help="audio instruction data of a speech-aware text LM (a datasets.DatasetDict)"
    )
    ins.add_argument("--data", required=True, help="a corpus with speaker metadata (hf-slm data synth)")
    ins.add_argument("--out", required=True, help="output folder (read back with datasets.load_from_disk)")
    ins.add_argument("--rows-per-utterance", type=int, default=2, help="rows (tasks) per utterance")
    ins.add_argument(
        "--nonspeech-fraction", type=float, default=0.08, help="share of rows that are non-speech clips"
    )
    ins.add_argument(
        "--eval-per-task", type=int, default=60,
        help="rows per task in validation and test (default 60; 0: the train scheme)",
    )  # fmt: skip
    ins.add_argument("--seed", type=int, default=0, help="the same seed gives the same rows (default 0)")
    ins.add_argument(
        "--tasks", default=None, help="only these tasks, comma-separated (e.g. transcribe for ASR alignment)"
    )
    ins.set_defaults(func=_cmd_data_instructions)

    slm = sub.add_parser("speech-lm", help="pure speech LMs").add_subparsers(
        dest="speech_lm_command", required=True
    )
    init = slm.add_parser(
        "init", help="assemble a speech LM (tokenizer + backbone + vocoder) and its unit data"
    )
    init.add_argument("--unit-tokenizer", required=True, help="a fitted unit tokenizer folder")
    init.add_argument("--vocoder", default=None, help="a unit vocoder folder trained on that tokenizer")
    init.add_argument(
        "--text-lm", default=None, help="TWIST warm start: a text LM folder (AutoModelForCausalLM)"
    )
    init.add_argument(
        "--backbone-config", default=None, help="or a JSON file of a backbone config (from scratch)"
    )
    init.add_argument("--data", required=True, help="a corpus to tokenise into units for training")
    init.add_argument("--split", default="train")
    init.add_argument("--eval-split", default="validation")
    init.add_argument("--num-proc", type=int, default=None, help="processes for datasets.map")
    init.add_argument("--out", required=True, help="output folder: the model, its processor, and units/")
    init.set_defaults(func=_cmd_speech_lm_init)

    export = slm.add_parser("export", help="write a trained speech LM as a zoo folder with its model card")
    export.add_argument("--model", required=True, help="the trained speech LM folder (hf-slm train output)")
    export.add_argument("--out", required=True, help="the zoo folder to write")
    export.add_argument("--results", default=None, help="its eval JSON (hf-slm eval --out)")
    export.add_argument("--topline-results", default=None, help="the eval JSON of its phoneme topline")
    export.add_argument(
        "--warm-start", default=None, help="what the backbone was warm-started from (for the card)"
    )
    export.add_argument("--vocoder", default=None, help="attach (or swap in) this vocoder folder")
    export.add_argument(
        "--card-only", action="store_true", help="only render the card of an exported --out (after eval)"
    )
    export.add_argument(
        "--storage-dtype", choices=["float32", "bfloat16"], default="bfloat16",
        help="dtype of the stored backbone, vocoder and SSL-encoder weights (they load back in float32)",
    )  # fmt: skip
    export.set_defaults(func=_cmd_speech_lm_export)

    units = sub.add_parser("units", help="speech unit tokenizers").add_subparsers(
        dest="units_command", required=True
    )
    fit = units.add_parser("fit", help="fit a k-means unit tokenizer on a corpus")
    fit.add_argument("--data", required=True, help="a corpus (see `hf-slm data summary`)")
    fit.add_argument("--split", default="train", help="split to fit on (default train)")
    fit.add_argument("--out", required=True, help="output folder (loads with AutoModel.from_pretrained)")
    fit.add_argument(
        "--frontend", choices=["mfcc", "log_mel", "ssl"], default="mfcc", help="features to quantise"
    )
    fit.add_argument("--ssl-model", default=None, help="SSL encoder folder or Hub id, for --frontend ssl")
    fit.add_argument("--ssl-layer", type=int, default=6, help="hidden layer of the SSL encoder")
    fit.add_argument("--n-units", type=int, default=256, help="k-means centroids (default 256)")
    fit.add_argument("--no-normalize", action="store_true", help="skip per-utterance feature normalisation")
    fit.add_argument("--no-deduplicate", action="store_true", help="one unit per frame, no run lengths")
    fit.add_argument("--batch-size", type=int, default=32, help="clips per k-means mini-batch")
    fit.add_argument("--epochs", type=int, default=2, help="passes of mini-batch k-means")
    fit.add_argument("--seed", type=int, default=0)
    fit.set_defaults(func=_cmd_units_fit)

    hub = units.add_parser(
        "pretrain-hubert", help="train a small HuBERT on MFCC k-means targets (iteration 1)"
    )
    hub.add_argument("--data", required=True, help="a corpus")
    hub.add_argument("--split", default="train")
    hub.add_argument(
        "--targets", required=True, help="a fitted MFCC unit tokenizer folder (the prediction targets)"
    )
    hub.add_argument("--out", required=True, help="output folder of the HubertModel")
    hub.add_argument("--steps", type=int, default=1500)
    hub.add_argument("--batch-size", type=int, default=8)
    hub.add_argument("--learning-rate", type=float, default=5e-4)
    hub.add_argument("--hidden-size", type=int, default=256)
    hub.add_argument("--layers", type=int, default=4)
    hub.add_argument("--heads", type=int, default=4)
    hub.add_argument("--conv-dim", type=int, default=128)
    hub.add_argument("--seed", type=int, default=0)
    hub.set_defaults(func=_cmd_units_pretrain_hubert)

    ctc = units.add_parser(
        "pretrain-ctc",
        help="train a small phone recogniser with CTC (its layers give speaker-independent units)",
    )
    ctc.add_argument("--data", required=True, help="a corpus with word alignments (words column, phonemes)")
    ctc.add_argument("--split", default="train")
    ctc.add_argument(
        "--eval-split", default="validation", help="split for the phone error rate (empty: none)"
    )
    ctc.add_argument("--out", required=True, help="output folder: HubertForCTC + Wav2Vec2Processor")
    ctc.add_argument("--steps", type=int, default=2000)
    ctc.add_argument("--batch-size", type=int, default=8)
    ctc.add_argument("--learning-rate", type=float, default=1e-3)
    ctc.add_argument("--hidden-size", type=int, default=256)
    ctc.add_argument("--layers", type=int, default=4)
    ctc.add_argument("--conv-dim", type=int, default=64)
    ctc.add_argument("--seed", type=int, default=0)
    ctc.set_defaults(func=_cmd_units_pretrain_ctc)

    fctc = units.add_parser("from-ctc", help="phone units from a CTC recogniser's head (no k-means)")
    fctc.add_argument("--model", required=True, help="a CTC model folder (hf-slm units pretrain-ctc)")
    fctc.add_argument(
        "--layer", type=int, default=None, help="hidden layer its head reads (default: the last)"
    )
    fctc.add_argument("--out", required=True, help="output folder (loads with AutoModel.from_pretrained)")
    fctc.set_defaults(func=_cmd_units_from_ctc)

    voc = sub.add_parser("vocoder", help="unit vocoders").add_subparsers(
        dest="vocoder_command", required=True
    )
    train = voc.add_parser("train", help="train a unit vocoder on a corpus")
    train.add_argument("--tokenizer", required=True, help="a fitted unit tokenizer folder")
    train.add_argument("--data", required=True, help="a corpus")
    train.add_argument("--split", default="train")
    train.add_argument("--out", required=True, help="output folder")
    train.add_argument("--steps", type=int, default=3000)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--hidden-size", type=int, default=256)
    train.add_argument(
        "--layers", type=int, default=4, help="ConvNeXt blocks at the unit rate, and again at the frame rate"
    )
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=_cmd_vocoder_train)

    ev = add_eval_parser(sub)  # hf-slm eval MODEL --task ... (hf_slm/evaluation/cli.py)
    ev.set_defaults(func=_cmd_eval)

    rec = sub.add_parser("recipe", help="recipes in modeling/recipes").add_subparsers(
        dest="recipe_command", required=True
    )
    run = rec.add_parser("run", help="validate a recipe against the commands, then run its steps in order")
    run.add_argument("recipe", type=Path, help="a recipe YAML file")
    run.set_defaults(func=_cmd_recipe_run)
    add_speech_text_lm_parser(sub)  # hf-slm speech-text-lm init | mix (hf_slm/speech_text_cli.py)
    add_speech_aware_lm_parser(sub)  # hf-slm speech-aware-lm init | export (hf_slm/speech_aware_cli.py)
    add_train_parser(sub)  # hf-slm train RECIPE.yaml [--set section.key=value]
    add_zoo_parser(sub)  # hf-slm zoo list | install | push
    add_leaderboard_parser(sub)  # hf-slm leaderboard --corpus C --benchmarks B --out DIR
    add_finetune_arguments(
        sub.add_parser(
            "finetune",
            help="fine-tune a model on your own data with a LoRA adapter (asr, instruction, continuation, tts)",
            description="Fine-tune a speech LM, speech+text LM or speech-aware LM on your data with PEFT LoRA: "
            "writes the adapter, the merged model, before/after results and a model card.",
        )
    )

    for p in (fit, hub, ctc, fctc, train, export):  # provenance for cards; set by `recipe run`
        p.add_argument("--recipe", default=None, help=argparse.SUPPRESS)
        p.add_argument("--recipe-command", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    from hf_slm.audio import AudioError
    from hf_slm.data.corpus import CorpusError
    from hf_slm.training import TrainingError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (AudioError, CorpusError, FileExistsError, ValueError, TrainingError) as err:  # ZooError too
        print(f"hf-slm: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
