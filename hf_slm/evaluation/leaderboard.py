"""One benchmark for all three families: every language model of the zoo on every task it can do.

The survey's open question 4 asks for a benchmark that compares pure speech LMs, speech+text LMs and
speech-aware text LMs on the same footing. :func:`build_leaderboard` finds the LMs of a zoo folder,
runs each through the existing harness on held-out voices, and writes one table in which the tasks
a family cannot do are shown as "—" (not applicable): that empty space is part of the answer.

| task | harness function | families | data | metric |
|---|---|---|---|---|
| ``lexical``, ``syntactic``, ``storycloze`` | :func:`~hf_slm.evaluation.tasks.evaluate_likelihood_task` | 1, 2 (``score``) | ``--benchmarks`` test split | ZeroSpeech 2021 accuracy ↑ |
| ``asr`` | :func:`~hf_slm.evaluation.speech_text.evaluate_asr` (family 3 through :func:`~hf_slm.evaluation.speech_aware.chat_transcriber`) | 2, 3 | ``--corpus`` test split | WER ↓ |
| ``tts`` | :func:`~hf_slm.evaluation.speech_text.evaluate_tts`, judged by an :class:`~hf_slm.evaluation.judge.AsrJudge` built from the corpus's train text | 2 | ``--corpus`` test split | judge WER ↓ |
| ``instructions`` (optional) | :func:`~hf_slm.evaluation.speech_aware.answer_instructions` + :func:`~hf_slm.evaluation.instructions.score_instructions` | 3 | ``--instructions`` test split | macro accuracy ↑ |

Everything is deterministic: greedy decoding, the first ``limit`` pair ids / corpus clips, and for
instructions a seeded sample of ``limit`` rows per instruction task. Out come ``leaderboard.md``,
``leaderboard.png`` and ``leaderboard.json`` (every number, plus the settings).

    hf-slm leaderboard --zoo zoo --corpus data/corpus-6h --benchmarks data/benchmarks \\
        --out benchmarks/results/leaderboard --limit 100

Example:
    >>> from hf_slm.evaluation.leaderboard import build_leaderboard
    >>> board = build_leaderboard("zoo", corpus="data/corpus-6h", benchmarks="data/benchmarks",
    ...                           out_dir="runs/leaderboard", limit=40)  # doctest: +SKIP
    >>> board["models"][0]["tasks"]["lexical"]["value"]  # doctest: +SKIP
    0.64
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hf_slm.evaluation.tasks import LIKELIHOOD_TASKS, SCORINGS, TaskError

__all__ = [
    "DEFAULT_LIMIT",
    "FAMILIES",
    "LEADERBOARD_TASKS",
    "NOT_APPLICABLE",
    "add_leaderboard_parser",
    "build_leaderboard",
    "find_zoo_models",
    "leaderboard_markdown",
    "plot_leaderboard",
    "run_leaderboard",
]

logger = logging.getLogger(__name__)

NOT_APPLICABLE = "—"
DEFAULT_LIMIT = 100
FAMILIES: dict[str, tuple[int, str]] = {
    "hf_slm_speech_lm": (1, "pure speech LM"),
    "hf_slm_speech_text_lm": (2, "speech+text LM"),
    "hf_slm_speech_aware_lm": (3, "speech-aware text LM"),
}


@dataclass(frozen=True)
class _Task:
    name: str
    label: str
    higher_is_better: bool
    families: frozenset[int]
    needs: str  # which data argument it reads: benchmarks, corpus or instructions

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"


_TASKS = (
    _Task("lexical", "lexical acc.", True, frozenset({1, 2}), "benchmarks"),
    _Task("syntactic", "syntactic acc.", True, frozenset({1, 2}), "benchmarks"),
    _Task("storycloze", "StoryCloze acc.", True, frozenset({1, 2}), "benchmarks"),
    _Task("asr", "ASR WER", False, frozenset({2, 3}), "corpus"),
    _Task("tts", "TTS judge WER", False, frozenset({2}), "corpus"),
    _Task("instructions", "instruction acc.", True, frozenset({3}), "instructions"),
)
LEADERBOARD_TASKS = tuple(t.name for t in _TASKS)
_BY_NAME = {t.name: t for t in _TASKS}


# --- the zoo -------------------------------------------------------------------------------------
def find_zoo_models(zoo_dir: str | os.PathLike = "zoo") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The language models of a zoo folder, and the other folders (unit tokenizers, vocoders, encoders).

    A folder is an LM when its ``config.json`` has a ``model_type`` of :data:`FAMILIES`. LMs come
    sorted by family, then name.

    Returns:
        ``(lms, others)``: ``lms`` as ``{"name", "path", "model_type", "family", "family_name"}``,
        ``others`` as ``{"name", "path", "model_type"}`` (``model_type`` None without a readable config).
    """
    zoo = Path(zoo_dir)
    if not zoo.is_dir():
        raise TaskError(f"{zoo} is not a folder: give the zoo folder (--zoo)")
    lms, others = [], []
    for folder in sorted(p for p in zoo.iterdir() if p.is_dir()):
        try:
            model_type = json.loads((folder / "config.json").read_text()).get("model_type")
        except (OSError, ValueError):
            model_type = None
        entry = {"name": folder.name, "path": str(folder), "model_type": model_type}
        if model_type in FAMILIES:
            family, family_name = FAMILIES[model_type]
            lms.append({**entry, "family": family, "family_name": family_name})
        else:
            others.append(entry)
    lms.sort(key=lambda m: (m["family"], m["name"]))
    return lms, others


def _parameters(model: Any) -> tuple[int, dict[str, int]]:
    parts = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    return sum(p.numel() for p in model.parameters()), {k: v for k, v in parts.items() if v}


def _load(entry: dict[str, Any], batch_size: int) -> tuple[Any, Any, Any]:
    """``(model, processor, scorer)``: a scorer for families 1 and 2 (its model is the model)."""
    from transformers import AutoModel, AutoProcessor

    import hf_slm  # noqa: F401  (registers the model types)
    from hf_slm.evaluation.tasks import load_scorer

    if entry["family"] in (1, 2):
        scorer = load_scorer(entry["path"], batch_size=batch_size, prompt_modality="speech")
        return scorer.model, scorer.processor, scorer
    model = AutoModel.from_pretrained(entry["path"]).eval()
    return model, AutoProcessor.from_pretrained(entry["path"]), None


# --- limits and subsets --------------------------------------------------------------------------
def _limits(limit: int | Mapping[str, int | None] | None) -> dict[str, int | None]:
    if limit is None or isinstance(limit, int):
        if isinstance(limit, int) and limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        return dict.fromkeys(LEADERBOARD_TASKS, limit)
    unknown = sorted(set(limit) - set(LEADERBOARD_TASKS))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown} in limit; the tasks are {LEADERBOARD_TASKS}")
    return {t: limit.get(t, DEFAULT_LIMIT) for t in LEADERBOARD_TASKS}


def _first(dataset: Any, n: int | None) -> Any:
    return dataset if n is None else dataset.select(range(min(n, len(dataset))))


def _instruction_sample(dataset: Any, per_task: int | None, seed: int) -> Any:
    """A seeded sample of ``per_task`` rows of every instruction task, in the split's order."""
    if per_task is None:
        return dataset
    tasks = np.asarray(dataset.select_columns(["task"]).with_format(None)["task"])
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for task in dict.fromkeys(tasks.tolist()):
        idx = np.flatnonzero(tasks == task)
        keep.extend(rng.choice(idx, size=min(per_task, idx.size), replace=False).tolist())
    return dataset.select(sorted(keep))


# --- running one task ----------------------------------------------------------------------------
def _strip(result: dict[str, Any]) -> dict[str, Any]:
    """A harness result without what is too big or not JSON (item scores, audio)."""
    return {k: v for k, v in result.items() if k not in ("item_scores", "_example_audio")}


def _run_task(
    task: str,
    entry: dict[str, Any],
    model: Any,
    processor: Any,
    scorer: Any,
    data: dict[str, Any],
    settings: dict[str, Any],
    progress: bool,
) -> dict[str, Any]:
    import torch

    torch.manual_seed(settings["seed"])
    limit = settings["limit"][task]
    if task in LIKELIHOOD_TASKS:
        from hf_slm.evaluation.tasks import evaluate_likelihood_task

        r = _strip(
            evaluate_likelihood_task(
                task, data["benchmarks"], scorer, split=settings["split"], limit=limit, progress=progress
            )
        )
        scoring = settings["scoring"]
        return {
            "value": r[scoring]["score"],
            "n": r["num_pairs"],
            "n_ids": r["num_ids"],
            "n_items": r["num_items"],
            "unit": "pairs",
            "scoring": scoring,
            **{f"accuracy_{s}": r[s]["score"] for s in SCORINGS if s in r},
            "detail": r,
        }
    if task == "asr":
        from hf_slm.evaluation.speech_text import evaluate_asr

        clips = _first(data["corpus_split"], limit)
        transcribe, instruction = None, None
        if entry["family"] == 3:
            from hf_slm.evaluation.speech_aware import DEFAULT_ASR_INSTRUCTION, chat_transcriber

            instruction = DEFAULT_ASR_INSTRUCTION
            transcribe = chat_transcriber(
                model, processor, instruction, max_new_tokens=settings["max_new_tokens_text"]
            )
        r = evaluate_asr(
            model,
            processor,
            clips,
            batch_size=settings["batch_size"],
            max_new_tokens=settings["max_new_tokens_text"],
            progress=progress,
            transcribe=transcribe,
        )
        if instruction:
            r["instruction"] = instruction
        return {"value": r["wer"], "n": r["num_utterances"], "unit": "clips", "detail": r}
    if task == "tts":
        from hf_slm.evaluation.speech_text import evaluate_tts

        clips = _first(data["corpus_split"], limit)
        r = _strip(
            evaluate_tts(
                model,
                processor,
                clips,
                data["judge"](),
                batch_size=max(1, settings["batch_size"] // 2),
                max_new_tokens=settings["max_new_tokens_speech"],
                progress=progress,
            )
        )
        return {
            "value": r["wer"],
            "n": r["num_utterances"],
            "unit": "sentences",
            "topline_wer": r["topline_wer"],
            "wer_ratio": r["wer_ratio"],
            "detail": r,
        }
    if task == "instructions":
        from hf_slm.evaluation.instructions import score_instructions
        from hf_slm.evaluation.speech_aware import answer_instructions

        rows = _instruction_sample(data["instructions_split"], limit, settings["seed"])
        answers, seconds = answer_instructions(
            model,
            processor,
            rows,
            batch_size=settings["batch_size"],
            max_new_tokens=settings["max_new_tokens_text"],
            progress=progress,
        )
        r = score_instructions(rows, answers)
        r["seconds"] = seconds
        return {
            "value": r["macro_accuracy"],
            "n": r["num_rows"],
            "unit": "rows",
            "per_task": {t: v.get("accuracy", v.get("wer")) for t, v in r["tasks"].items()},
            "detail": r,
        }
    raise TaskError(f"unknown leaderboard task {task!r}")


# --- the leaderboard -----------------------------------------------------------------------------
def build_leaderboard(
    zoo_dir: str | os.PathLike = "zoo",
    *,
    corpus: str | os.PathLike | None,
    benchmarks: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    limit: int | Mapping[str, int | None] | None = DEFAULT_LIMIT,
    instructions: str | os.PathLike | None = None,
    split: str = "test",
    scoring: str = "sum",
    seed: int = 0,
    batch_size: int = 16,
    max_new_tokens_text: int = 48,
    max_new_tokens_speech: int = 150,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate every LM of a zoo on every task it supports and write the leaderboard.

    Args:
        zoo_dir: the zoo folder; every sub-folder whose ``config.json`` has a ``model_type`` of
            :data:`FAMILIES` is an LM. Unit tokenizers, vocoders and encoders are listed apart.
        corpus: a corpus (``hf-slm data synth``) whose ``split`` holds held-out voices: ASR and TTS
            clips; its ``train`` text builds the TTS judge's language model. None: no ASR / TTS.
        benchmarks: a benchmark folder (``hf-slm data benchmarks``): the likelihood tasks on its
            ``split``. None: no likelihood tasks.
        out_dir: where ``leaderboard.md``, ``leaderboard.png`` and ``leaderboard.json`` go.
        limit: how much of each task to run (None: everything). An int is, for the likelihood
            tasks, the first ``limit`` pair ids (each spoken by the split's 4 voices, so
            ``4 * limit`` pairs), for ASR and TTS the first ``limit`` clips of the corpus split
            (the synthetic corpus interleaves its voices, so they stay balanced), and for
            instructions a seeded sample of ``limit`` rows per instruction task. A mapping gives a
            limit per task (tasks it leaves out get :data:`DEFAULT_LIMIT`). The default, 100, balances
            noise and time: 400 pairs per likelihood task (100 ids; the voices of an id are not
            independent, so a standard error of up to 5 points on an accuracy near 0.6), 100 clips for ASR and TTS, and about 3 minutes for the three zoo LMs on
            this 2-core CPU at one thread (``limit=40``: about 1.5 minutes; ``limit=300``: every id of
            the default benchmark sets and 300 clips, the sizes of the model cards, about 6 minutes).
        instructions: an instruction set (``hf-slm data instructions``): adds the speech-aware
            instruction accuracy (family 3; the macro accuracy of the non-transcription tasks).
        split: the split of every data set (held-out voices: ``test``).
        scoring: the likelihood score that ranks (``"sum"``, the ZeroSpeech 2021 habit, or
            ``"mean"``); both accuracies are in the JSON.
        seed: torch's seed before every task, and the instruction sample's seed.
        batch_size: clips per batch (TTS uses half).
        max_new_tokens_text / max_new_tokens_speech: greedy decoding budgets (text answers and
            transcripts, 48 as in `hf-slm eval`; TTS units, 150 as in `hf-slm eval --task tts`: a
            sentence takes about 27 units, and a longer cap only lets looping outputs add words).
        progress: show progress bars (tqdm).

    Returns:
        What ``leaderboard.json`` holds: ``settings``, ``tasks`` (name, label, direction, which
        families), ``models`` (per LM: name, path, family, parameters, and per task either the
        result with its ``value`` and ``n``, or ``None`` when the family cannot do it), ``skipped``
        (zoo folders that are not LMs), ``errors`` and ``seconds``.
    """
    from tqdm.auto import tqdm

    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
    start = time.perf_counter()
    lms, others = find_zoo_models(zoo_dir)
    if not lms:
        raise TaskError(
            f"{zoo_dir} holds no language model (a folder whose config.json model_type is one of "
            f"{sorted(FAMILIES)})"
        )
    limits = _limits(limit)
    settings: dict[str, Any] = {
        "zoo": str(zoo_dir),
        "corpus": None if corpus is None else str(corpus),
        "benchmarks": None if benchmarks is None else str(benchmarks),
        "instructions": None if instructions is None else str(instructions),
        "split": split,
        "limit": limits,
        "limit_units": {
            "lexical": "pair ids (x the split's voices)",
            "syntactic": "pair ids (x the split's voices)",
            "storycloze": "pair ids (x the split's voices)",
            "asr": "first clips of the corpus split",
            "tts": "first clips of the corpus split",
            "instructions": "seeded sample of rows per instruction task",
        },
        "scoring": scoring,
        "seed": seed,
        "decoding": "greedy",
        "batch_size": batch_size,
        "max_new_tokens_text": max_new_tokens_text,
        "max_new_tokens_speech": max_new_tokens_speech,
        "tts_judge": None,
        "torch_threads": None,
    }
    import torch

    settings["torch_threads"] = torch.get_num_threads()

    settings["data_configs"] = _data_configs(corpus, benchmarks)
    data: dict[str, Any] = {"benchmarks": benchmarks}
    built: dict[str, Any] = {}
    available = {"benchmarks": benchmarks is not None, "corpus": corpus is not None}
    available["instructions"] = instructions is not None
    if benchmarks is not None and not Path(benchmarks).is_dir():
        raise TaskError(
            f"{benchmarks} does not exist: build the benchmark sets with "
            f"`hf-slm data benchmarks --out {benchmarks}`"
        )
    if corpus is not None:
        from hf_slm.data import load_corpus

        dsd = load_corpus(corpus)
        if split not in dsd or "train" not in dsd:
            raise TaskError(f"{corpus} needs a train and a {split!r} split (it has {sorted(dsd)})")
        data["corpus_split"] = dsd[split]

        def get_judge() -> Any:  # built once, only when a model does TTS
            if "judge" not in built:
                from hf_slm.evaluation.judge import AsrJudge

                texts = dsd["train"].select_columns(["text"]).with_format(None)["text"]
                built["judge"] = AsrJudge.from_texts(texts)
                settings["tts_judge"] = f"pocketsphinx, trigram LM of the train text of {corpus}"
            return built["judge"]

        data["judge"] = get_judge
    if instructions is not None:
        from datasets import load_from_disk

        data["instructions_split"] = load_from_disk(str(instructions))[split]

    columns = [t for t in _TASKS if available[t.needs]]
    jobs = [(m, t.name) for m in lms for t in columns if m["family"] in t.families]
    bar = tqdm(total=len(jobs), desc="leaderboard", unit="task", disable=not progress, position=0)
    errors: list[dict[str, str]] = []
    models: list[dict[str, Any]] = []
    for entry in lms:
        row = {**entry, "tasks": {t.name: None for t in columns}}
        models.append(row)
        mine = [t.name for t in columns if entry["family"] in t.families]
        if not mine:
            continue
        bar.set_description(f"{entry['name']}: loading")
        model, processor, scorer = _load(entry, batch_size)
        row["parameters"], row["parameters_by_part"] = _parameters(model)
        for task in mine:
            bar.set_description(f"{entry['name']}: {task}")
            t0 = time.perf_counter()
            try:
                r = _run_task(task, entry, model, processor, scorer, data, settings, progress)
            except Exception as err:  # one broken model or task must not sink the whole board
                logger.exception("%s failed on %s", entry["name"], task)
                r = {"value": None, "n": 0, "error": f"{type(err).__name__}: {err}"}
                errors.append({"model": entry["name"], "task": task, "error": r["error"]})
            r["seconds"] = time.perf_counter() - t0
            row["tasks"][task] = r
            bar.update(1)
        del model, processor, scorer
    bar.close()

    board = {
        "settings": settings,
        "tasks": [
            {
                "name": t.name,
                "label": t.label,
                "direction": "higher is better" if t.higher_is_better else "lower is better",
                "families": sorted(t.families),
            }
            for t in columns
        ],
        "models": models,
        "skipped": [{**o, "reason": "not a language model"} for o in others],
        "errors": errors,
        "seconds": time.perf_counter() - start,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "leaderboard.md").write_text(leaderboard_markdown(board), encoding="utf-8")
    plot_leaderboard(board, out / "leaderboard.png")
    (out / "leaderboard.json").write_text(json.dumps(board, indent=2, default=_json_default) + "\n")
    return json.loads(json.dumps(board, default=_json_default))


def _data_configs(corpus: Any, benchmarks: Any) -> dict[str, Any]:
    """How the data sets were built (their seeds and sizes), when their folders say."""
    out: dict[str, Any] = {}
    for key, path, name in (
        ("corpus", corpus, "synth_config.json"),
        ("benchmarks", benchmarks, "benchmarks.json"),
    ):
        file = Path(path) / name if isinstance(path, (str, os.PathLike)) else None
        if file is not None and file.is_file():
            try:
                info = json.loads(file.read_text())
            except ValueError:
                continue
            out[key] = info.get("config", info)
    return out


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


# --- output --------------------------------------------------------------------------------------
def _cell(result: dict[str, Any] | None) -> str:
    if result is None:
        return NOT_APPLICABLE
    value = result.get("value")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "error" if result.get("error") else "n/a"
    return f"{value:.3f}"


_LM_PART = {1: "lm", 2: "lm", 3: "text_model"}


def _params(model: dict[str, Any]) -> str:
    n = model.get("parameters")
    if n is None:
        return ""
    lm = (model.get("parameters_by_part") or {}).get(_LM_PART.get(model["family"], ""))
    return f"{n / 1e6:.1f}M" + (f" (LM {lm / 1e6:.1f}M)" if lm else "")


def _footnote(task: _Task, models: Sequence[dict[str, Any]], settings: dict[str, Any]) -> str:
    results = [m["tasks"][task.name] for m in models if m["tasks"].get(task.name)]
    counts = sorted({r.get("n", 0) for r in results})
    n = "/".join(str(c) for c in counts) if counts else "0"
    split = settings["split"]
    if task.name in LIKELIHOOD_TASKS:
        ids = sorted({r.get("n_ids", 0) for r in results})
        what = {
            "lexical": "sWUGGY-style word / nonword pairs",
            "syntactic": "sBLIMP-style grammatical / ungrammatical minimal pairs",
            "storycloze": "spoken StoryCloze-style pairs (a two-sentence story, coherent / random ending)",
        }[task.name]
        return (
            f"{n} {what} ({'/'.join(map(str, ids))} ids x the held-out voices) of the `{split}` split of "
            f"`{settings['benchmarks']}`; ZeroSpeech 2021 accuracy with the {settings['scoring']} "
            "log-likelihood (chance 0.5; the other scoring is in leaderboard.json)."
        )
    if task.name == "asr":
        return (
            f"the first {n} clips of the `{split}` split of `{settings['corpus']}` (voices never heard in "
            "training), greedy decoding; the speech-aware LM is asked "
            '"Transcribe the audio.". Word error rate.'
        )
    if task.name == "tts":
        tops = [r["topline_wer"] for r in results if r.get("topline_wer") is not None]
        top = (
            f"; the judge's WER on the original recordings of the same sentences: {tops[0]:.3f}"
            if tops
            else ""
        )
        return (
            f"{n} sentences of the `{split}` split of `{settings['corpus']}` spoken by the model (greedy), "
            f"transcribed by the ASR judge (pocketsphinx with a language model of the train text){top}."
        )
    lim = settings["limit"]["instructions"]
    sample = "every row" if lim is None else f"a seeded sample of up to {lim} per instruction task"
    return (
        f"{n} rows ({sample}) of the `{split}` split of `{settings['instructions']}`; mean accuracy of "
        "the tasks other than transcription (per-task accuracies in leaderboard.json)."
    )


def leaderboard_markdown(board: dict[str, Any]) -> str:
    """The leaderboard as Markdown: one row per LM, one column per task (with its direction),
    "—" where the family cannot do the task, and a footnote per task saying what was evaluated."""
    tasks = [_BY_NAME[t["name"]] for t in board["tasks"]]
    models = board["models"]
    settings = board["settings"]
    lines = [
        "# hf-slm leaderboard: one benchmark for all three families",
        "",
        "Every language model of the zoo on every task it can do, on voices never heard in training. "
        f"{NOT_APPLICABLE} = the family cannot do the task (not applicable); ↑ higher is better, "
        "↓ lower is better.",
        "",
        "| model | family | parameters | "
        + " | ".join(f"{t.label} {t.arrow} [^{t.name}]" for t in tasks)
        + " |",
        "|---|---|---:|" + "---:|" * len(tasks),
    ]
    for m in models:
        cells = [_cell(m["tasks"].get(t.name)) for t in tasks]
        fam = f"{m['family']}: {m['family_name']}"
        lines.append(f"| `{m['name']}` | {fam} | {_params(m)} | " + " | ".join(cells) + " |")
    lines.append("")
    for t in tasks:
        lines.append(f"[^{t.name}]: {_footnote(t, models, settings)}")
    lines.append("")
    lines.append(
        "Parameters: everything in the checkpoint (families 1 and 2: the frozen unit tokenizer, the LM "
        "and the vocoder; family 3: the audio encoder, the adapter and the LLM), and in brackets the "
        "language model alone."
    )
    if board.get("skipped"):
        names = ", ".join(f"`{s['name']}` ({s['model_type']})" for s in board["skipped"])
        lines += ["", f"Not language models, so not on the board: {names}."]
    if board.get("errors"):
        lines += ["", "Errors:"]
        lines += [f"- `{e['model']}` on {e['task']}: {e['error']}" for e in board["errors"]]
    limit = settings["limit"]
    lines += [
        "",
        f"Settings: split `{settings['split']}`, limits {json.dumps(limit)}, seed {settings['seed']}, "
        f"{settings['decoding']} decoding, {board['seconds'] / 60:.1f} minutes "
        f"({settings['torch_threads']} torch thread(s)).",
        "",
    ]
    return "\n".join(lines)


def plot_leaderboard(board: dict[str, Any], path: str | os.PathLike) -> Path:
    """One panel per task, one bar per model that can do it, "n/a" for the others; chance (0.5) on
    the likelihood tasks and the judge's WER on the original recordings on TTS, as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [_BY_NAME[t["name"]] for t in board["tasks"]]
    models = board["models"]
    names = [m["name"] for m in models]
    colors = {1: "#4c72b0", 2: "#dd8452", 3: "#55a868"}
    cols = min(3, max(1, len(tasks)))
    rows = max(1, math.ceil(len(tasks) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(tasks) :]:
        ax.axis("off")
    for ax, task in zip(axes.flat, tasks):
        values = []
        for i, m in enumerate(models):
            r = m["tasks"].get(task.name)
            v = None if r is None else r.get("value")
            values.append(v)
            if v is None:
                ax.text(
                    i,
                    0.04,
                    "n/a" if r is None else "error",
                    ha="center",
                    va="bottom",
                    color="gray",
                    fontsize=10,
                )
            else:
                ax.bar(i, v, color=colors.get(m["family"], "gray"))
                ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
        top = max([1.0, *[v * 1.12 for v in values if v is not None]])
        if task.name in LIKELIHOOD_TASKS:
            ax.axhline(0.5, color="gray", linestyle="--", linewidth=1, label="chance")
            ax.legend(fontsize=7, loc="upper right")
        if task.name == "tts":
            tops = [m["tasks"][task.name].get("topline_wer") for m in models if m["tasks"].get(task.name)]
            tops = [t for t in tops if t is not None]
            if tops:
                ax.axhline(tops[0], color="gray", linestyle="--", linewidth=1, label="original recordings")
                ax.legend(fontsize=7, loc="upper right")
                top = max(top, tops[0] * 1.12)
        ns = sorted({m["tasks"][task.name].get("n", 0) for m in models if m["tasks"].get(task.name)})
        unit = next((m["tasks"][task.name].get("unit", "") for m in models if m["tasks"].get(task.name)), "")
        ax.set_title(f"{task.label} {task.arrow}  (n = {'/'.join(map(str, ns))} {unit})", fontsize=9)
        ax.set_ylim(0, top)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[f]) for f in sorted({m["family"] for m in models})]
    labels = [
        f"family {f}: {next(m['family_name'] for m in models if m['family'] == f)}"
        for f in sorted({m["family"] for m in models})
    ]
    fig.legend(handles, labels, loc="upper center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- command line --------------------------------------------------------------------------------
def add_leaderboard_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``hf-slm leaderboard`` to the top-level subcommands (its ``func`` is :func:`run_leaderboard`)."""
    p = subparsers.add_parser(
        "leaderboard",
        help="evaluate every LM of the zoo on every task it can do: one table for all three families",
        description="Finds the language models of a zoo folder (pure speech LMs, speech+text LMs, "
        "speech-aware text LMs), evaluates each on held-out voices (lexical / syntactic / StoryCloze "
        "accuracy, ASR WER, TTS judge WER, instruction accuracy) and writes leaderboard.md, "
        "leaderboard.png and leaderboard.json; a task a family cannot do is shown as '—'.",
    )
    p.add_argument("--zoo", default="zoo", help="the zoo folder (default: zoo)")
    p.add_argument("--corpus", default=None, help="a corpus (hf-slm data synth) for ASR and TTS")
    p.add_argument(
        "--benchmarks",
        default=None,
        help="the benchmark sets (hf-slm data benchmarks) for the likelihood tasks",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"pair ids per likelihood task, clips for ASR / TTS, rows per instruction task "
        f"(default {DEFAULT_LIMIT}; 0 = everything)",
    )
    p.add_argument("--tts-limit", type=int, default=None, help="a smaller limit for TTS, the slowest task")
    p.add_argument(
        "--instructions",
        default=None,
        help="an instruction set (hf-slm data instructions): family 3's accuracy",
    )
    p.add_argument("--split", default="test", help="the split of every data set (default: test)")
    p.add_argument("--scoring", choices=SCORINGS, default="sum", help="the likelihood score that ranks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(func=run_leaderboard)
    return p


def run_leaderboard(args: argparse.Namespace) -> int:
    """``hf-slm leaderboard``: build the board, print its Markdown, return 0."""
    if args.corpus is None and args.benchmarks is None:
        raise ValueError("give --corpus and/or --benchmarks: the leaderboard needs data to evaluate on")
    limit: int | dict[str, int | None] | None = args.limit or None
    if args.tts_limit is not None:
        limit = {**dict.fromkeys(LEADERBOARD_TASKS, limit), "tts": args.tts_limit or None}
    board = build_leaderboard(
        args.zoo,
        corpus=args.corpus,
        benchmarks=args.benchmarks,
        out_dir=args.out,
        limit=limit,
        instructions=args.instructions,
        split=args.split,
        scoring=args.scoring,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    print((Path(args.out) / "leaderboard.md").read_text(encoding="utf-8"))
    print(f"wrote {args.out}/leaderboard.md, .png and .json in {board['seconds'] / 60:.1f} min")
    return 0
