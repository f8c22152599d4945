"""Fine-tune a spoken language model on your own data with a PEFT LoRA adapter.

::

    hf-slm finetune --model zoo/speech-aware-lm-tiny --data my_corpus/ --task asr --lora-r 8 --out my-asr
    accelerate launch --config_file modeling/accelerate/cpu_ddp.yaml -m hf_slm.finetune \\
        --model zoo/speech-aware-lm-tiny --data my_corpus/ --task asr --out my-asr

``--model`` is a model folder or Hub id of any of the three families; ``--data`` is anything
[`~hf_slm.data.load_corpus`] reads: a corpus folder (``hf-slm data synth``, ``save_to_disk``), an
audiofolder with ``metadata.csv``, a JSONL manifest, or a Hub dataset id. The tasks:

=============== ============================================== =============================================
task            models                                         trained on
=============== ============================================== =============================================
``asr``         speech+text LM, speech-aware LM                the transcript of each clip
``tts``         speech+text LM                                 the clip's units, given its transcript
``continuation`` speech LM, speech+text LM                     the clip's units
``instruction`` speech-aware LM                                ``instruction`` -> ``response`` rows
=============== ============================================== =============================================

What it does, in order:

1. loads the corpus; every clip is decoded once, and clips that cannot be read are dropped, counted
   and listed (``skipped_audio.json``, the log, the summary) while every other row is kept;
2. takes the held-out split (``validation``, else ``test``, else ``--eval-fraction`` of the rows);
3. tokenises the data for the task (``datasets.map``, cached, ``--num-proc`` workers) into
   ``OUT/data`` (a ``save_to_disk`` folder: train once, fine-tune many times);
4. evaluates the base model on the held-out rows (the task's metric and the loss per token);
5. trains a LoRA adapter with the training loop of ``hf-slm train`` (accelerate: one process, DDP,
   FSDP; checkpoints, ``--resume``, NaN stop);
6. loads the result as a user does (``from_pretrained(base)`` + ``load_adapter(OUT)``) and evaluates
   it again; writes ``finetune_results.json``, ``finetune_results.png`` and a model card (``README.md``).

``OUT`` then holds the adapter only (``adapter_config.json``, ``adapter_model.safetensors``: load it
with ``model.load_adapter(OUT)`` or ``peft.PeftModel.from_pretrained(model, OUT)``) and ``OUT/merged``
the full model with the adapter merged in (``from_pretrained(OUT / "merged")``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FAMILY_TASKS", "FinetuneArguments", "add_finetune_arguments", "finetune", "main"]

TASKS = ("asr", "instruction", "continuation", "tts")
FAMILY_TASKS = {
    "hf_slm_speech_lm": ("continuation",),
    "hf_slm_speech_text_lm": ("asr", "tts", "continuation"),
    "hf_slm_speech_aware_lm": ("asr", "instruction"),
}
# where a new LoRA adapter goes by default: the LLM of a unit LM (not the frozen unit tokenizer nor the
# vocoder); the encoder, the adapter and the LLM of a speech-aware LM (adapting to a new accent is
# mostly acoustic). Linear layers that are LoRA layers already keep training as they are.
LORA_SCOPES = {
    "hf_slm_speech_lm": ("lm.model.",),
    "hf_slm_speech_text_lm": ("lm.model.",),
    "hf_slm_speech_aware_lm": ("audio_encoder.encoder.layers.", "adapter.", "text_model.model."),
}
FAMILY_NAMES = {
    "hf_slm_speech_lm": "speech LM",
    "hf_slm_speech_text_lm": "speech+text LM",
    "hf_slm_speech_aware_lm": "speech-aware LM",
}


class FinetuneError(ValueError):
    """Fine-tuning settings or data that cannot work, with what to do about it."""


@dataclass
class FinetuneArguments:
    """Everything `hf-slm finetune` takes (the CLI flags are these names with dashes)."""

    model: str = field(metadata={"help": "a model folder or Hub id (any of the three families)"})
    data: str = field(
        metadata={"help": "a corpus folder, audiofolder (metadata.csv), JSONL manifest, or Hub dataset id"}
    )
    task: str = field(metadata={"help": "asr | instruction | continuation | tts"})
    out: str = field(metadata={"help": "output folder: adapter, merged model, card, results, checkpoints"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: float | None = field(default=None, metadata={"help": "LoRA alpha (default: 2 x rank)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    target_modules: str | None = field(
        default=None,
        metadata={
            "help": "comma-separated module names (suffixes) to adapt, or 'all-linear'; default: the "
            "family's layers (the LLM; for a speech-aware LM also its audio encoder and adapter)"
        },
    )
    max_steps: int = field(default=200, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=8, metadata={"help": "rows per micro-batch on each process"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per step"})
    learning_rate: float = field(default=5e-4, metadata={"help": "peak learning rate (AdamW)"})
    warmup_steps: int = field(default=20, metadata={"help": "linear warm-up steps, then cosine decay"})
    seed: int = field(default=0, metadata={"help": "seed of the adapter's initial weights and data order"})
    save_steps: int | None = field(
        default=50, metadata={"help": "write a resumable checkpoint every N steps"}
    )
    resume: bool = field(default=False, metadata={"help": "resume from the newest checkpoint in OUT"})
    eval_split: str | None = field(
        default=None,
        metadata={"help": "held-out split (default: validation, else test, else --eval-fraction of train)"},
    )
    eval_fraction: float = field(
        default=0.1, metadata={"help": "share of the rows held out when the corpus has one split only"}
    )
    max_eval_samples: int | None = field(
        default=100, metadata={"help": "held-out rows to evaluate on (a seeded sample when there are more)"}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "train on N rows only (a seeded sample)"}
    )
    task_eval: bool = field(
        default=True, metadata={"help": "run the task's metric before and after (off: held-out loss only)"}
    )
    instruction: str = field(
        default="Transcribe the audio.", metadata={"help": "the instruction of asr rows (speech-aware LMs)"}
    )
    text_column: str | None = field(default=None, metadata={"help": "the corpus's transcript column"})
    audio_column: str | None = field(default=None, metadata={"help": "the corpus's audio column"})
    max_seconds: float = field(default=30.0, metadata={"help": "drop clips longer than this"})
    num_proc: int | None = field(default=None, metadata={"help": "processes for datasets.map"})
    max_new_tokens: int = field(default=48, metadata={"help": "tokens generated per held-out row (asr)"})
    mixed_precision: str = field(default="no", metadata={"help": "no | bf16"})

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise FinetuneError(f"--task must be one of {TASKS}, got {self.task!r}")
        for name in ("lora_r", "max_steps", "batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) <= 0:
                raise FinetuneError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not 0 < self.eval_fraction < 1:
            raise FinetuneError(f"--eval-fraction must be in (0, 1), got {self.eval_fraction}")


def add_finetune_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the flags of [`FinetuneArguments`] to ``parser`` (``--lora-r``, ``--max-steps``, ...)."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(FinetuneArguments)
    for f in dataclasses.fields(FinetuneArguments):
        flag = "--" + f.name.replace("_", "-")
        required = f.default is dataclasses.MISSING
        hint = hints[f.name]
        if hint is bool:
            if f.default:
                parser.add_argument(
                    f"--no-{f.name.replace('_', '-')}",
                    dest=f.name,
                    action="store_false",
                    help=f.metadata["help"],
                )
            else:
                parser.add_argument(flag, dest=f.name, action="store_true", help=f.metadata["help"])
            continue
        base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
        kwargs: dict[str, Any] = {"dest": f.name, "type": base, "help": f.metadata["help"]}
        if f.name == "task":
            kwargs["choices"] = TASKS
        if required:
            kwargs["required"] = True
        else:
            kwargs["default"] = f.default
            kwargs["help"] += f" (default: {f.default})"
        parser.add_argument(flag, **kwargs)
    parser.set_defaults(func=_run_cli)
    return parser


def _run_cli(args: argparse.Namespace) -> int:
    import dataclasses

    names = {f.name for f in dataclasses.fields(FinetuneArguments)}
    finetune(FinetuneArguments(**{k: v for k, v in vars(args).items() if k in names}))
    return 0


# -- data -----------------------------------------------------------------------------------------------
def _local_or_hub(name: str) -> str:
    """A local folder as an absolute path (so the adapter's base path works from anywhere); a Hub id as is."""
    path = Path(name)
    return str(path.resolve()) if path.exists() else name


def _model_type(model: str) -> str:
    from transformers import AutoConfig

    import hf_slm  # noqa: F401  (registers the model types)

    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise FinetuneError(f"--model {model!r}: cannot read its config ({err})") from None
    if config.model_type not in FAMILY_TASKS:
        raise FinetuneError(
            f"--model {model!r} is a {config.model_type!r} model; hf-slm finetune takes a speech LM, a "
            f"speech+text LM or a speech-aware LM ({sorted(FAMILY_TASKS)})"
        )
    return config.model_type


def _load_rows(args: FinetuneArguments, log) -> tuple[Any, Any, list[dict[str, Any]], str]:
    """The train and held-out rows (readable audio only), the skipped clips, and where the held-out rows came from."""
    from hf_slm.data.corpus import CorpusError, drop_unreadable_audio, load_corpus

    text_column = args.text_column
    if args.task == "instruction" and text_column is None:
        text_column = "response"
    try:
        corpus = load_corpus(args.data, text_column=text_column, audio_column=args.audio_column)
    except CorpusError as err:
        if args.task == "instruction" and "no column 'response'" in str(err):
            raise FinetuneError(
                f"--task instruction needs `instruction` and `response` columns in {args.data} ({err}); make "
                "such data with `hf-slm data instructions`, or pass --text-column for the answers"
            ) from None
        raise
    if args.task == "instruction":
        corpus = corpus.rename_column("text", "response")
        missing = [c for c in ("instruction", "response") if c not in corpus[next(iter(corpus))].column_names]
        if missing:
            raise FinetuneError(
                f"--task instruction needs `instruction` and `response` columns in {args.data}; it lacks "
                f"{missing} (make such data with `hf-slm data instructions`)"
            )
    train_name = "train" if "train" in corpus else next(iter(corpus))
    held_name = args.eval_split
    if held_name is None:
        held_name = next((s for s in ("validation", "test") if s in corpus and s != train_name), None)
    elif held_name not in corpus:
        raise FinetuneError(f"--eval-split {held_name!r}: {args.data} has the splits {sorted(corpus)}")
    skipped: list[dict[str, Any]] = []

    def readable(split: str):
        rows, bad = drop_unreadable_audio(
            corpus[split], num_proc=args.num_proc, max_seconds=args.max_seconds, split=split
        )
        skipped.extend(bad)
        return rows

    train = readable(train_name)
    if held_name is not None:
        held = readable(held_name)
        source = f"the {held_name!r} split"
    else:
        if len(train) < 4:
            raise FinetuneError(f"{args.data} has {len(train)} readable rows: too few to hold some out")
        parts = train.train_test_split(test_size=args.eval_fraction, seed=args.seed)
        train, held = parts["train"], parts["test"]
        source = f"{args.eval_fraction:.0%} of {train_name!r} (seed {args.seed})"
    # a seeded sample, not the first rows: a split may be ordered (by task, by voice)
    if args.max_train_samples is not None and len(train) > args.max_train_samples:
        train = train.shuffle(seed=args.seed).select(range(args.max_train_samples))
    if args.max_eval_samples is not None and len(held) > args.max_eval_samples:
        held = held.shuffle(seed=args.seed).select(range(args.max_eval_samples))
    if skipped:
        log(f"skipped {len(skipped)} clip(s) whose audio cannot be read (listed in skipped_audio.json):")
        for s in skipped[:20]:
            log(f"  {s['split']}[{s['index']}] {s['path']}: {s['error']}")
        if len(skipped) > 20:
            log(f"  ... and {len(skipped) - 20} more")
    if len(train) == 0 or len(held) == 0:
        raise FinetuneError(f"{args.data}: no readable rows left to train on or to evaluate on")
    return train, held, skipped, source


def _mask_prompt(ids: list[int], marker: int) -> list[int]:
    """Labels that score only what follows the first ``marker`` (the answer of an asr / tts row)."""
    cut = ids.index(marker) + 1 if marker in ids else 0
    return [-100] * cut + ids[cut:]


def _task_rows(model, processor, model_type: str, task: str, ds, args: FinetuneArguments):
    """Rows the training loop takes for ``task``: token ids (+ labels) for unit LMs, instruction rows for
    a speech-aware LM."""
    if model_type == "hf_slm_speech_aware_lm":
        if task == "asr":
            ds = ds.map(
                lambda b: {"instruction": [args.instruction] * len(b["text"]), "response": b["text"]},
                batched=True,
                desc="asr rows",
            )
        return ds.select_columns(["audio", "instruction", "response"])
    if model_type == "hf_slm_speech_lm":
        return model.prepare_training_dataset(ds, num_proc=args.num_proc).select_columns(["input_ids"])
    from hf_slm.data.interleave import KINDS, MixtureConfig, build_mixture

    kind = {"asr": "asr", "tts": "tts", "continuation": "speech_only"}[task]
    mixture = MixtureConfig(
        **{k: (1.0 if k == kind else 0.0) for k in KINDS}, paired_span_prob=0.0, views=1, seed=args.seed
    )
    units = model.encode_dataset(ds, num_proc=args.num_proc)
    rows = build_mixture(units, processor, mixture, model.config.unit_tokenizer_config.frame_rate)
    if task in ("asr", "tts"):  # the loss falls on the answer: the transcript, or the units
        marker = processor.marker_id("[TEXT]" if task == "asr" else "[SPEECH]")
        rows = rows.map(lambda r: {"labels": _mask_prompt(r["input_ids"], marker)}, desc="labels")
    return rows.select_columns([c for c in ("input_ids", "labels") if c in rows.column_names])


# -- evaluation ------------------------------------------------------------------------------------------
def _load(model_path: str, adapter: str | None = None):
    import torch

    from hf_slm.training.arguments import ModelArguments
    from hf_slm.training.loop import _load_model

    model = _load_model(ModelArguments(model_name_or_path=model_path))
    if adapter is not None:
        model.load_adapter(adapter)
    return model.eval().to(torch.float32)


def heldout_loss(model, rows, processor=None, batch_size: int = 8) -> float:
    """Mean loss per predicted token of ``model`` on task rows (as `_task_rows` makes them)."""
    import torch

    from hf_slm.training.data import PadCollator

    if "input_ids" in rows.column_names:
        pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
        collate = PadCollator(pad)
    else:
        collate = processor.training_batch
    total = n_total = 0.0
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = dict(collate([rows[i] for i in range(start, min(len(rows), start + batch_size))]))
            loss = model(**batch).loss
            n = float((batch["labels"][:, 1:] != -100).sum())
            total += float(loss) * n
            n_total += n
    return total / max(n_total, 1.0)


def _task_metric(model, processor, model_type: str, task: str, held, judge, args) -> dict[str, Any]:
    from hf_slm.evaluation.speech_text import evaluate_asr, evaluate_tts

    if task == "asr":
        transcribe = None
        if model_type == "hf_slm_speech_aware_lm":
            from hf_slm.evaluation.speech_aware import chat_transcriber

            transcribe = chat_transcriber(model, processor, args.instruction, args.max_new_tokens)
        r = evaluate_asr(
            model, processor, held, max_new_tokens=args.max_new_tokens, transcribe=transcribe, progress=True
        )
        return {
            "metric": "wer",
            "value": r["wer"],
            "per_voice": r["per_voice"],
            "examples": r["examples"][:3],
        }
    if task == "tts":
        r = evaluate_tts(model, processor, held, judge, progress=True)
        return {
            "metric": "judge_wer",
            "value": r["wer"],
            "topline_wer": r["topline_wer"],
            "examples": r["examples"][:3],
        }
    if task == "instruction":
        from hf_slm.evaluation.instructions import score_instructions
        from hf_slm.evaluation.speech_aware import answer_instructions

        answers, _ = answer_instructions(
            model, processor, held, max_new_tokens=args.max_new_tokens, progress=True
        )
        if "task" in held.column_names:
            r = score_instructions(held, answers)
            value = r["macro_accuracy"] if not math.isnan(r.get("macro_accuracy", math.nan)) else None
            return {"metric": "macro_accuracy", "value": value, "tasks": r["tasks"]}
        from hf_slm.evaluation.instructions import normalize_answer

        hits = [normalize_answer(a) == normalize_answer(r) for a, r in zip(answers, held["response"])]
        return {"metric": "exact_match", "value": sum(hits) / len(hits)}
    return {}  # continuation: the held-out loss per unit is the measure


def _evaluate(
    model_path, adapter, model_type, task, held, held_rows, judge, args, label, log
) -> dict[str, Any]:
    from transformers import AutoProcessor

    start = time.perf_counter()
    model = _load(model_path, adapter)
    processor = AutoProcessor.from_pretrained(model_path)
    result = {"heldout_loss": heldout_loss(model, held_rows, processor)}
    if args.task_eval:
        result.update(_task_metric(model, processor, model_type, task, held, judge, args))
    result["seconds"] = time.perf_counter() - start
    shown = f"held-out loss {result['heldout_loss']:.4f}"
    if result.get("value") is not None:
        shown += f", {result['metric']} {result['value']:.4f}"
    log(f"{label}: {shown} ({len(held)} held-out rows, {result['seconds']:.0f} s)")
    return result


# -- the run ---------------------------------------------------------------------------------------------
def finetune(args: FinetuneArguments) -> dict[str, Any]:
    """Fine-tune ``args.model`` on ``args.data`` with a LoRA adapter (see the module docstring).

    Every process of an ``accelerate launch`` runs this; the main process prepares the data, evaluates
    and writes the card, the others train with it.

    Returns:
        `dict`: the run summary (also in ``OUT/finetune_results.json``): ``before`` / ``after``
        (held-out loss and the task's metric), ``skipped_audio``, the training summary, the sizes.
    """
    import torch
    from accelerate import PartialState
    from datasets import DatasetDict
    from tqdm.auto import tqdm

    from hf_slm.training import train

    state = PartialState(cpu=not torch.accelerator.is_available())
    main = state.is_main_process

    def log(message: str) -> None:
        if main:
            tqdm.write(message)

    model_type = _model_type(args.model)
    if args.task not in FAMILY_TASKS[model_type]:
        raise FinetuneError(
            f"a {FAMILY_NAMES[model_type]} cannot be fine-tuned for {args.task!r}: its tasks are "
            f"{FAMILY_TASKS[model_type]}"
        )
    base = _local_or_hub(args.model)
    out = Path(args.out)
    data_dir = out / "data"
    started = time.perf_counter()
    summary: dict[str, Any] = {}
    held = held_rows = judge = None
    if main:
        from transformers import AutoProcessor

        out.mkdir(parents=True, exist_ok=True)
        train_rows_raw, held, skipped, held_source = _load_rows(args, log)
        (out / "skipped_audio.json").write_text(json.dumps(skipped, indent=1))
        model = _load(base)
        processor = AutoProcessor.from_pretrained(base)
        train_rows = _task_rows(model, processor, model_type, args.task, train_rows_raw, args)
        held_rows = _task_rows(model, processor, model_type, args.task, held, args)
        DatasetDict(train=train_rows, validation=held_rows).save_to_disk(str(data_dir))
        # the LoRA targets, from the model already loaded; the other processes read them after the barrier
        targets = _targets(model, model_type, args.target_modules)
        (data_dir / "lora_targets.json").write_text(json.dumps(targets))
        del model
        if args.task == "tts" and args.task_eval:
            from hf_slm.evaluation.judge import AsrJudge

            judge = AsrJudge.from_texts(list(train_rows_raw["text"]) + list(held["text"]))
        before = _evaluate(base, None, model_type, args.task, held, held_rows, judge, args, "before", log)
        summary.update(
            skipped_audio={"count": len(skipped), "files": skipped},
            heldout={"source": held_source, "rows": len(held)},
            train_rows=len(train_rows),
            before=before,
        )
    state.wait_for_everyone()

    lora: dict[str, Any] = {
        "enabled": True,
        "r": args.lora_r,
        "alpha": args.lora_alpha if args.lora_alpha is not None else 2 * args.lora_r,
        "dropout": args.lora_dropout,
        "target_modules": json.loads((data_dir / "lora_targets.json").read_text()),
    }
    recipe = {
        "name": f"finetune-{args.task}",
        "description": f"LoRA fine-tuning of {args.model} for {args.task} on {args.data}",
        "model": {"model_name_or_path": base},
        "data": {"dataset": str(data_dir), "eval_split": "validation", "num_proc": args.num_proc,
                 "bucket_by_length": True},
        "training": {
            "output_dir": str(out),
            "seed": args.seed,
            "max_steps": args.max_steps,
            "per_device_batch_size": args.batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "learning_rate": args.learning_rate,
            "warmup_steps": min(args.warmup_steps, args.max_steps),
            "eval_steps": None,
            "save_steps": args.save_steps,
            "logging_steps": max(1, min(10, args.max_steps // 10)),
            "mixed_precision": args.mixed_precision,
            "resume_from_checkpoint": "latest" if args.resume else None,
            "report_to": "none",
        },
        "lora": lora,
    }  # fmt: skip
    training = train(recipe)
    if main:
        after = _evaluate(base, str(out), model_type, args.task, held, held_rows, judge, args, "after", log)
        summary.update(
            task=args.task,
            model=args.model,
            base_model=base,
            data=args.data,
            family=FAMILY_NAMES[model_type],
            after=after,
            lora={k: v for k, v in lora.items() if k != "enabled"},
            training=training,
            arguments=asdict(args),
            minutes=(time.perf_counter() - started) / 60,
        )
        (out / "finetune_results.json").write_text(json.dumps(summary, indent=1, default=str))
        _plot(summary, out / "finetune_results.png")
        _write_card(summary, out)
        log(f"wrote the adapter, {out / 'merged'}, the card and finetune_results.json to {out}")
    # no barrier here: the training loop has ended the process group; the other processes are done
    return summary


def _targets(model, model_type: str, requested: str | None) -> list[str] | str:
    if requested == "all-linear":
        return "all-linear"
    if requested:
        return [t.strip() for t in requested.split(",") if t.strip()]
    from hf_slm.training.adapters import lora_target_modules

    targets = lora_target_modules(model, LORA_SCOPES[model_type])
    if not targets:
        raise FinetuneError(
            f"{model.name_or_path} has no linear layers to adapt under {LORA_SCOPES[model_type]}"
        )
    return targets


def _plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before, after = summary["before"], summary["after"]
    panels = [("held-out loss per token", before["heldout_loss"], after["heldout_loss"])]
    if before.get("value") is not None and after.get("value") is not None:
        panels.append((before["metric"], before["value"], after["value"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, (name, b, a) in zip(axes[0], panels):
        bars = ax.bar(["before", "after"], [b, a], color=["#999999", "#3b7dd8"])
        ax.bar_label(bars, fmt="%.3f")
        ax.set_title(name)
    fig.suptitle(f"fine-tuning for {summary['task']}: {Path(summary['model']).name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _write_card(summary: dict[str, Any], out: Path) -> None:
    from huggingface_hub import ModelCard, ModelCardData

    before, after = summary["before"], summary["after"]
    lines = [f"| held-out loss per token | {before['heldout_loss']:.4f} | {after['heldout_loss']:.4f} |"]
    if before.get("value") is not None:
        lines.append(f"| {before['metric']} | {before['value']:.4f} | {after['value']:.4f} |")
    skipped = summary["skipped_audio"]
    skipped_text = (
        f"{skipped['count']} clip(s) could not be read and were left out (listed in `skipped_audio.json`)."
        if skipped["count"]
        else "Every clip was readable."
    )
    lora = summary["lora"]
    n_targets = (
        len(lora["target_modules"]) if isinstance(lora["target_modules"], list) else lora["target_modules"]
    )
    training = summary["training"]
    data = ModelCardData(
        library_name="peft",
        base_model=summary["model"] if not Path(summary["model"]).exists() else None,
        tags=["hf-slm", "lora", "speech", summary["task"]],
        pipeline_tag="automatic-speech-recognition" if summary["task"] == "asr" else None,
    )
    content = f"""---
{data.to_yaml()}
---

# {out.name}: a LoRA adapter on `{summary["model"]}` ({summary["family"]}, task `{summary["task"]}`)

Fine-tuned with `hf-slm finetune` on `{summary["data"]}`: {summary["train_rows"]} training rows; held out:
{summary["heldout"]["rows"]} rows from {summary["heldout"]["source"]}. {skipped_text}

| held-out ({summary["heldout"]["rows"]} rows) | before | after |
|---|---|---|
{chr(10).join(lines)}

LoRA rank {lora["r"]}, alpha {lora["alpha"]}, dropout {lora["dropout"]}, on {n_targets} layer(s);
{training["trainable_parameters"]:,} of {training["parameters"]:,} parameters trained, {training["steps"]} steps,
{training["minutes"]:.1f} min on {training["num_processes"]} process(es).

## Use it

```python
import hf_slm  # registers the hf-slm model types
from transformers import AutoModel, AutoProcessor

model = AutoModel.from_pretrained("{summary["base_model"]}")
model.load_adapter("{out.name}")  # or: peft.PeftModel.from_pretrained(model, "{out.name}")
processor = AutoProcessor.from_pretrained("{out.name}")
```

`merged/` holds the same model with the adapter merged into its weights
(`AutoModel.from_pretrained("{out.name}/merged")`). Results: `finetune_results.json`,
`finetune_results.png`; training log: `training_log.json`, `loss_curve.png`.
"""
    ModelCard(content).save(out / "README.md")


def main(argv: list[str] | None = None) -> int:
    """``python -m hf_slm.finetune ...`` (and ``accelerate launch -m hf_slm.finetune ...``)."""
    from hf_slm.training import TrainingError

    parser = add_finetune_arguments(
        argparse.ArgumentParser(prog="python -m hf_slm.finetune", description=__doc__.split("\n")[0])
    )
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TrainingError) as err:
        print(f"hf_slm.finetune: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
