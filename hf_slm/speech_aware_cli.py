"""`hf-slm speech-aware-lm init | export`: compose a speech-aware text LM, then publish it as a zoo folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_speech_aware_lm_parser"]


def _json(value: str | None, what: str) -> dict | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise ValueError(
            f'{what} must be JSON, e.g. \'{{"r": 8, "target_modules": ["q_proj"]}}\': {err}'
        ) from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{what} must be a JSON object, got {value!r}")
    return parsed


def _cmd_init(args: argparse.Namespace) -> int:
    from transformers import AutoProcessor

    from hf_slm.models.speech_aware_lm import SpeechAwareLMForConditionalGeneration

    text_lora, audio_lora = _json(args.text_lora, "--text-lora"), _json(args.audio_lora, "--audio-lora")
    if args.from_model:
        if args.audio_encoder or args.text_model:
            raise ValueError("give --from MODEL (add LoRA to it) or --audio-encoder + --text-model, not both")
        model = SpeechAwareLMForConditionalGeneration.from_pretrained(args.from_model)
        processor = AutoProcessor.from_pretrained(args.from_model)
        model.add_lora(text=text_lora, audio=audio_lora, audio_only=not args.lora_always)
    else:
        if not (args.audio_encoder and args.text_model):
            raise ValueError("give --audio-encoder and --text-model (folders or Hub ids), or --from MODEL")
        model, processor = SpeechAwareLMForConditionalGeneration.from_components(
            args.audio_encoder, args.text_model, adapter=args.adapter,
            adapter_config=_json(args.adapter_config, "--adapter-config"), return_processor=True,
            text_lora=text_lora, audio_lora=audio_lora, text_lora_audio_only=not args.lora_always,
        )  # fmt: skip
    model.config.freeze_adapter = args.freeze_adapter
    model.apply_freezing()
    out = Path(args.out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    parts = ", ".join(
        f"{name} {sum(p.numel() for p in part.parameters()) / 1e6:.2f}M"
        for name, part in (
            ("encoder", model.audio_encoder),
            ("adapter", model.adapter),
            ("LLM", model.text_model),
        )
    )
    print(f"wrote {out}: {total / 1e6:.2f}M parameters ({parts}); {trainable / 1e6:.3f}M trainable")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    import shutil

    import torch
    from transformers import AutoProcessor

    from hf_slm.cli import _write_trained_card, training_summary
    from hf_slm.models.speech_aware_lm import SpeechAwareLMForConditionalGeneration

    src, out = Path(args.model), Path(args.out)
    if not (src / "model.safetensors").exists():
        raise ValueError(
            f"{src} holds no model.safetensors: point --model at a trained speech-aware LM folder"
        )
    if not args.card_only:
        model = SpeechAwareLMForConditionalGeneration.from_pretrained(src)
        if args.storage_dtype == "bfloat16":  # half the download; the parts load back in float32
            for part in (model.audio_encoder, model.adapter, model.text_model):
                part.to(torch.bfloat16)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        if (
            args.storage_dtype == "bfloat16"
        ):  # save_pretrained records the weights' dtype as the one to load in
            config = json.loads((out / "config.json").read_text())
            config["dtype"] = "float32"
            (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        AutoProcessor.from_pretrained(src).save_pretrained(out)
        for name in ("training_log.json", "loss_curve.png"):
            if (src / name).exists():
                shutil.copy2(src / name, out / name)
    results = json.loads(Path(args.results).read_text()) if args.results else None
    ablation = {}
    for item in args.ablation or []:
        name, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"--ablation takes NAME=EVAL_JSON (e.g. linear=runs/x/eval.json), got {item!r}")
        ablation[name] = json.loads(Path(path).read_text())
    if args.results and Path(args.results).resolve() != (out / "eval_results.json").resolve():
        shutil.copy2(args.results, out / "eval_results.json")
    log = json.loads((src / "training_log.json").read_text()) if (src / "training_log.json").exists() else {}
    config = json.loads((out / "config.json").read_text())
    ac, tc = config["audio_config"], config["text_config"]
    training = {
        "audio encoder": f"{ac['model_type']}, {ac.get('num_hidden_layers', ac.get('encoder_layers'))} layers x "
        f"{ac.get('hidden_size', ac.get('d_model'))} ({args.audio_encoder or 'pretrained with CTC'})",
        "adapter": f"{config['adapter_type']} {config['adapter_config']}",
        "LLM": f"{tc['model_type']}, {tc['num_hidden_layers']} layers x {tc['hidden_size']}, vocabulary "
        f"{tc['vocab_size']} ({args.text_lm or 'a text LM'})",
        "LoRA": f"LLM {config['text_lora']} (active only with audio: {config['text_lora_audio_only']})"
        if config.get("text_lora") else "none",
        "data": args.data_description or "instruction rows made from the corpus metadata",
    }  # fmt: skip
    training.update(training_summary(log.get("summary", {})))
    table, evals = speech_aware_card_results(results, ablation)
    name = out.name
    _write_trained_card(
        out,
        args,
        summary="A speech-aware text LM (SALMONN / Qwen-Audio / Ultravox style): an audio encoder, a modality "
        "adapter and a text LLM in one checkpoint. Audio and an instruction in, text out: it transcribes, answers "
        "questions about what was said, tells the speaker's sex, accent and speaking rate, counts words, and says "
        "when there is no speech. Text-only prompts run on the untouched LLM (its LoRA is active only with audio).",
        usage="```python\nfrom transformers import AutoModel, AutoProcessor\n\n"
        f'm = AutoModel.from_pretrained("hf-slm/{name}")\n'
        f'p = AutoProcessor.from_pretrained("hf-slm/{name}")\n'
        'chat = [{"role": "user", "content": [{"type": "audio", "audio": "clip.wav"},\n'
        '                                     {"type": "text", "text": "What did the speaker say?"}]}]\n'
        "inputs = p.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)\n"
        "ids = m.generate(**inputs, max_new_tokens=48)\n"
        "print(p.batch_decode(ids, skip_special_tokens=True, answer_only=True))  # the answer alone\n```",
        training=training,
        results_table=table,
        eval_results=evals,
        pipeline_tag="automatic-speech-recognition",
        tags=["speech-aware-lm", "audio-text-to-text"],
    )
    print(f"wrote {out}")
    return 0


def speech_aware_card_results(results: dict | None, ablation: dict | None) -> tuple[str, list]:
    """The card's results table (markdown) and its `model-index` entries."""
    from huggingface_hub import EvalResult

    if not results:
        return "", []
    split = results.get("split", "test")

    def entry(task_type: str, metric: str, value: float, name: str) -> EvalResult:
        return EvalResult(task_type=task_type, dataset_type="hf-slm/corpus", dataset_split=split,
                          dataset_name="hf-slm synthetic corpus, held-out voices", metric_type=metric,
                          metric_name=name, metric_value=round(float(value), 4))  # fmt: skip

    rows, evals = ["| task | metric | value |", "|---|---|---|"], []
    if "asr" in results:
        wer = results["asr"]["wer"]
        rows.append(f"| ASR (held-out voices, {results['asr']['num_utterances']} clips) | WER | {wer:.3f} |")
        evals.append(entry("automatic-speech-recognition", "wer", wer, "WER"))
    for task, r in (results.get("instructions", {}).get("tasks") or {}).items():
        metric, value = ("WER", r["wer"]) if "wer" in r else ("accuracy", r["accuracy"])
        rows.append(f"| instruction: {task} ({r['n']} rows) | {metric} | {value:.3f} |")
        evals.append(entry("audio-text-to-text", metric.lower(), value, f"{task} {metric.lower()}"))
    if "retention" in results:
        r = results["retention"]
        rows.append(f"| text-only perplexity, before -> after | perplexity | {r['before']:.3f} -> {r['after']:.3f} "
                    f"({100 * r['relative_change']:+.2f}%) |")  # fmt: skip
        if "after_lora_always_on" in r:
            rows.append(f"| same, LoRA always on (no guard) | perplexity | {r['after_lora_always_on']:.3f} "
                        f"({100 * r['relative_change_lora_always_on']:+.2f}%) |")  # fmt: skip
    table = "\n".join(rows)
    if ablation:
        lines = ["", "", "Adapter ablation: stage 2 only (adapter-only ASR alignment, encoder and LLM frozen, the "
                 "same steps for each), ASR on held-out voices:", "",
                 "| adapter | adapter parameters | audio embeddings per second | WER |", "|---|---|---|---|"]  # fmt: skip
        for name, r in ablation.items():
            rate = r["asr"].get("audio_embeddings_per_second")
            rate = f"{rate:.1f}" if rate is not None else ""
            lines.append(
                f"| {name} | {r['parameters']['adapter'] / 1e6:.2f}M | {rate} | {r['asr']['wer']:.3f} |"
            )
        table += "\n".join(lines)
    return table, evals


def add_speech_aware_lm_parser(sub: argparse._SubParsersAction) -> None:
    sal = sub.add_parser(
        "speech-aware-lm", help="speech-aware text LMs (audio encoder + adapter + LLM)"
    ).add_subparsers(dest="speech_aware_lm_command", required=True)
    init = sal.add_parser(
        "init", help="compose a model from an audio encoder and a text LLM, or add LoRA to a model (--from)"
    )
    init.add_argument(
        "--audio-encoder", default=None, help="a Whisper / HuBERT / wav2vec 2.0 folder or Hub id"
    )
    init.add_argument("--text-model", default=None, help="a causal LM folder or Hub id (with its tokenizer)")
    init.add_argument(
        "--from", dest="from_model", default=None, help="a speech-aware LM folder to add LoRA to"
    )
    init.add_argument("--adapter", choices=["linear", "stack_mlp", "conv", "qformer"], default="stack_mlp")
    init.add_argument(
        "--adapter-config", default=None, help="the adapter's settings as JSON, e.g. '{\"stack_factor\": 4}'"
    )
    init.add_argument(
        "--text-lora",
        default=None,
        help='LoRA on the LLM as JSON, e.g. \'{"r": 8, "target_modules": ["q_proj", "v_proj"]}\'',
    )
    init.add_argument("--audio-lora", default=None, help="LoRA on the audio encoder as JSON")
    init.add_argument("--lora-always", action="store_true", help="the LLM's LoRA also on text-only input")
    init.add_argument("--freeze-adapter", action="store_true", help="train the LoRA weights only")
    init.add_argument("--out", required=True, help="output folder: model + processor")
    init.set_defaults(func=_cmd_init)

    export = sal.add_parser(
        "export", help="write a trained speech-aware LM as a zoo folder with its model card"
    )
    export.add_argument("--model", required=True, help="the trained model folder (hf-slm train output)")
    export.add_argument("--out", required=True, help="the zoo folder to write")
    export.add_argument("--results", default=None, help="eval JSON of --task asr,instructions,retention")
    export.add_argument("--ablation", action="append", default=None,
                        help="NAME=EVAL_JSON of an adapter of the ablation (repeat; eval JSON of --task asr)")  # fmt: skip
    export.add_argument("--audio-encoder", default=None, help="where the encoder came from (for the card)")
    export.add_argument("--text-lm", default=None, help="where the LLM came from (for the card)")
    export.add_argument("--data-description", default=None, help="its training data (for the card)")
    export.add_argument("--card-only", action="store_true", help="only render the card of an exported --out")
    export.add_argument("--storage-dtype", choices=["float32", "bfloat16"], default="bfloat16",
                        help="dtype of the stored weights (they load back in float32)")  # fmt: skip
    export.add_argument("--recipe", default=None, help=argparse.SUPPRESS)
    export.add_argument("--recipe-command", default=None, help=argparse.SUPPRESS)
    export.set_defaults(func=_cmd_export)
