"""Evaluation of speech-aware text LMs (family 3): ASR, instruction following, text-only retention."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "DEFAULT_ASR_INSTRUCTION",
    "answer_instructions",
    "chat_transcriber",
    "evaluate_retention",
    "plot_speech_aware",
    "run_speech_aware_tasks",
    "text_perplexity",
]

DEFAULT_ASR_INSTRUCTION = "Transcribe the audio."


def _chat_inputs(processor: Any, clips: Sequence[Any], instructions: Sequence[str]) -> Any:
    conversations = []
    for clip, instruction in zip(clips, instructions):
        content = [{"type": "text", "text": instruction}]
        if clip is not None:
            content.insert(0, {"type": "audio", "audio": clip, "sampling_rate": processor.sampling_rate})
        conversations.append([{"role": "user", "content": content}])
    return processor.apply_chat_template(
        conversations, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )


@torch.no_grad()
def _answer(
    model: Any, processor: Any, clips: Sequence[Any], instructions: Sequence[str], max_new_tokens: int
) -> list[str]:
    inputs = _chat_inputs(processor, clips, instructions)
    ids = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens)
    return processor.batch_decode(
        ids[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True, answer_only=True
    )


def chat_transcriber(
    model: Any, processor: Any, instruction: str = DEFAULT_ASR_INSTRUCTION, max_new_tokens: int = 48
) -> Callable[[list[np.ndarray]], list[str]]:
    """`clips -> transcripts`: the model asked `instruction` about each clip (16 kHz arrays), greedily."""

    def transcribe(clips: list[np.ndarray]) -> list[str]:
        return _answer(model, processor, clips, [instruction] * len(clips), max_new_tokens)

    return transcribe


def answer_instructions(
    model: Any,
    processor: Any,
    dataset: Any,
    *,
    batch_size: int = 16,
    max_new_tokens: int = 48,
    progress: bool = True,
) -> tuple[list[str], float]:
    """The model's greedy answer to each row (`audio`, `instruction`) of an instruction dataset, in the
    rows' order (batched by clip length), and the seconds it took."""
    from tqdm.auto import tqdm

    from hf_slm.audio import load_audio

    sr = processor.sampling_rate
    clips = [load_audio(a, target_sampling_rate=sr) if a is not None else None for a in dataset["audio"]]
    instructions = list(dataset["instruction"])
    order = sorted(range(len(clips)), key=lambda i: 0 if clips[i] is None else len(clips[i]))
    answers = [""] * len(clips)
    start = time.perf_counter()
    for k in tqdm(range(0, len(order), batch_size), desc="instructions", unit="batch", disable=not progress):
        idx = order[k : k + batch_size]
        texts = _answer(
            model, processor, [clips[i] for i in idx], [instructions[i] for i in idx], max_new_tokens
        )
        for i, text in zip(idx, texts):
            answers[i] = text
    return answers, time.perf_counter() - start


@torch.no_grad()
def text_perplexity(
    model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 32
) -> dict[str, float]:
    """Perplexity of a causal LM (or the text path of a speech-aware LM) on plain texts, each with its begin
    token and an end token, as the text LM was trained: `exp(total NLL / predicted tokens)`."""
    eos = tokenizer.eos_token_id
    rows = [ids + [eos] for ids in tokenizer(list(texts))["input_ids"]]
    total, count = 0.0, 0
    device = next(model.parameters()).device
    for k in range(0, len(rows), batch_size):
        chunk = rows[k : k + batch_size]
        width = max(len(r) for r in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(chunk):
            ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
        labels = ids.masked_fill(mask == 0, -100)
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
        n = int((labels[:, 1:] != -100).sum())
        total += float(out.loss) * n
        count += n
    return {"perplexity": math.exp(total / count), "nll_per_token": total / count, "tokens": count}


def evaluate_retention(model: Any, text_lm: Any, tokenizer: Any, texts: Sequence[str]) -> dict[str, Any]:
    """The LLM's perplexity on held-out text before (the text LM it was built from) and after (the
    speech-aware LM, text-only input), and after with the LLM's LoRA forced on (what the audio-only guard
    prevents)."""
    before = text_perplexity(text_lm, tokenizer, texts)
    after = text_perplexity(model, tokenizer, texts)
    result = {
        "texts": len(texts),
        "before": before["perplexity"],
        "after": after["perplexity"],
        "relative_change": after["perplexity"] / before["perplexity"] - 1,
        "guard": bool(model.config.text_lora and model.config.text_lora_audio_only),
    }
    if result["guard"]:
        model.config.text_lora_audio_only = False
        try:
            forced = text_perplexity(model, tokenizer, texts)["perplexity"]
        finally:
            model.config.text_lora_audio_only = True
        result["after_lora_always_on"] = forced
        result["relative_change_lora_always_on"] = forced / before["perplexity"] - 1
    return result


def plot_speech_aware(results: dict[str, Any], path: Any) -> Any:
    """Bar chart: per-task accuracy (1 - WER for ASR and transcription), with the 0.8 aim."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, values = [], []
    if "asr" in results:
        names.append("ASR (1 - WER)")
        values.append(max(0.0, 1 - results["asr"]["wer"]))
    for task, r in (results.get("instructions", {}).get("tasks") or {}).items():
        names.append(task + (" (1 - WER)" if "wer" in r else ""))
        values.append(max(0.0, 1 - r["wer"]) if "wer" in r else r["accuracy"])
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(names) + 2), 3.6))
    ax.bar(names, values, color="tab:blue")
    ax.axhline(0.8, color="tab:red", linestyle="--", linewidth=1, label="aim 0.8")
    for i, v in enumerate(values):
        ax.text(i, v + 0.01, f"{v:.2f}", ha="center", fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("accuracy")
    ax.set_title(results.get("model", "speech-aware LM"))
    ax.legend(loc="lower right", fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_speech_aware_tasks(args: Any, tasks: list[str]) -> int:
    """``hf-slm eval MODEL --task asr,instructions,retention --data CORPUS [--instructions DIR] [--text-lm DIR]``
    for a speech-aware LM: ASR WER per voice, accuracy per instruction task, text perplexity before / after;
    table, JSON and PNG."""
    from datasets import load_from_disk
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from transformers import AutoModel, AutoModelForCausalLM, AutoProcessor

    from hf_slm.data import load_corpus
    from hf_slm.evaluation.cli import write_results
    from hf_slm.evaluation.instructions import score_instructions
    from hf_slm.evaluation.speech_text import evaluate_asr
    from hf_slm.evaluation.tasks import TaskError
    from hf_slm.models.speech_aware_lm import audio_output_length

    model = AutoModel.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    results: dict[str, Any] = {
        "model": str(args.model),
        "split": args.split,
        "adapter": model.config.adapter_type,
        "parameters": {
            name: sum(p.numel() for p in part.parameters())
            for name, part in (
                ("audio_encoder", model.audio_encoder),
                ("adapter", model.adapter),
                ("text_model", model.text_model),
            )
        },
    }
    corpus = None
    if {"asr", "retention"} & set(tasks):
        corpus = load_corpus(args.data)
        if args.split not in corpus:
            raise TaskError(f"{args.data} has no split {args.split!r} (it has {sorted(corpus)})")
        results["data"] = str(args.data)
    if "asr" in tasks:
        data = corpus[args.split]
        if args.limit:
            data = data.select(range(min(args.limit, len(data))))
        transcribe = chat_transcriber(model, processor)
        results["asr"] = evaluate_asr(
            model, processor, data, batch_size=args.batch_size, transcribe=transcribe
        )
        results["asr"]["instruction"] = DEFAULT_ASR_INSTRUCTION
        ops = model.config.audio_length_ops()
        results["asr"]["audio_embeddings_per_second"] = audio_output_length(16_000 * 10, ops) / 10
    if "instructions" in tasks:
        if not args.instructions:
            raise TaskError(
                "--task instructions needs --instructions DIR (hf-slm data instructions --out DIR)"
            )
        data = load_from_disk(args.instructions)[args.split]
        answers, seconds = answer_instructions(model, processor, data, batch_size=args.batch_size)
        scored = score_instructions(data, answers)
        scored["seconds"] = seconds
        results["instructions"] = scored
        results["instructions_data"] = str(args.instructions)
    if "retention" in tasks:
        if not args.text_lm:
            raise TaskError("--task retention needs --text-lm DIR: the text LM the model was built from")
        texts = [t.lower() for t in corpus[args.split]["text"]]
        text_lm = AutoModelForCausalLM.from_pretrained(args.text_lm).eval()
        results["retention"] = evaluate_retention(model, text_lm, processor.tokenizer, texts)
        results["retention"]["text_lm"] = str(args.text_lm)

    table = Table(title=escape(f"{args.model} [{args.split}]"))
    for col in ("task", "n", "score"):
        table.add_column(col, justify="left" if col == "task" else "right")
    if "asr" in results:
        table.add_row("ASR (WER)", str(results["asr"]["num_utterances"]), f"{results['asr']['wer']:.3f}")
    for task, r in (results.get("instructions", {}).get("tasks") or {}).items():
        score = f"WER {r['wer']:.3f}" if "wer" in r else f"{r['accuracy']:.3f}"
        table.add_row(f"instruction: {task}", str(r["n"]), score)
    if "retention" in results:
        r = results["retention"]
        table.add_row("text perplexity before -> after", str(r["texts"]),
                      f"{r['before']:.3f} -> {r['after']:.3f} ({100 * r['relative_change']:+.2f}%)")  # fmt: skip
        if "after_lora_always_on" in r:
            table.add_row("  with the LLM's LoRA always on", "", f"{r['after_lora_always_on']:.3f} "
                          f"({100 * r['relative_change_lora_always_on']:+.2f}%)")  # fmt: skip
    Console().print(table)
    if args.out:
        write_results(results, args.out, plot_speech_aware)
    return 0
