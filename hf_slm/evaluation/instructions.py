"""Scores of a speech-aware text LM on instruction rows (:mod:`hf_slm.data.instructions`).

Given a split of the instruction data and the model's answer to each row:

- ``transcribe``: corpus-level word error rate (jiwer) and exact-match rate;
- every other task: accuracy, an answer counting when it equals the expected one after
  :func:`normalize_answer` (lower case, no punctuation, number words as digits);
- ``speech_presence`` also separately on utterances (answer "yes") and on non-speech clips
  (answer "no": a model that says "yes" there hallucinates speech);
- per task and voice, per question kind of ``qa``, and, where the split marks them, on the rows
  worded as in training vs. worded in a way training never used (``held_out_phrasing``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hf_slm.data.instructions import CHAT_SPECIAL_TOKENS, TASKS
from hf_slm.evaluation.metrics import word_error_rate

__all__ = ["NUMBER_WORDS", "normalize_answer", "plot_instruction_results", "score_instructions"]

NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
}
_SPECIAL = re.compile("|".join(re.escape(t) for t in CHAT_SPECIAL_TOKENS))
_PUNCTUATION = re.compile(r"[^\w\s']|_|(?<!\w)'|'(?!\w)")
NONSPEECH_VOICE = "nonspeech"  # the per-voice key of non-speech clips (their voice is "")
EXAMPLES_PER_TASK = 3


def normalize_answer(text: str) -> str:
    """An answer in the form it is compared in: lower case, chat tokens and punctuation removed
    (apostrophes inside words kept), single spaces, and the number words zero to twenty as digits.

    Example:
        >>> normalize_answer("  Seven words. ")
        '7 words'
        >>> normalize_answer("Don't know!<|end|>")
        "don't know"
    """
    text = _PUNCTUATION.sub(" ", _SPECIAL.sub(" ", str(text)).lower())
    return " ".join(NUMBER_WORDS.get(w, w) for w in text.split())


def _columns(dataset: Any, names: Sequence[str]) -> dict[str, list]:
    """The columns of a `datasets.Dataset` (read without decoding its audio), a dict of lists, or
    a list of row dicts; columns it does not have are left out."""
    if hasattr(dataset, "column_names"):
        present = [n for n in names if n in dataset.column_names]
        return dataset.select_columns(present).with_format(None)[:] if present else {}
    if isinstance(dataset, dict):
        return {n: list(dataset[n]) for n in names if n in dataset}
    rows = list(dataset)
    return {n: [r[n] for r in rows] for n in names if rows and n in rows[0]}


def _score(task: str, refs: list[str], hyps: list[str]) -> dict[str, Any]:
    correct = sum(r == h for r, h in zip(refs, hyps))
    if task == "transcribe":
        return {"n": len(refs), "wer": word_error_rate(refs, hyps), "exact_match": correct / len(refs)}
    return {"n": len(refs), "accuracy": correct / len(refs)}


def score_instructions(dataset: Any, predictions: Sequence[str]) -> dict[str, Any]:
    """Score a model's answers to the rows of an instruction split.

    Args:
        dataset: the split (a `datasets.Dataset` from :func:`~hf_slm.data.instructions.build_instruction_dataset`;
            or a dict of columns, or a list of row dicts) with ``task``, ``instruction`` and
            ``response`` columns, and optionally ``voice``, ``subtask`` and ``held_out_phrasing``.
            The audio is not read.
        predictions (`Sequence[str]`): the model's answer to each row, in order (decoded text; chat
            tokens in it are ignored).

    Returns:
        `dict` (JSON-serialisable):

        - ``"num_rows"``;
        - ``"tasks"``: per task ``{"n", "wer", "exact_match"}`` for ``transcribe``, else
          ``{"n", "accuracy"}``; ``speech_presence`` adds ``"speech"`` and ``"nonspeech"``
          (``{"n", "accuracy"}`` on utterances and on non-speech clips), ``qa`` adds ``"by_question"``
          (per ``subtask``), and every task adds ``"held_out_phrasing"`` / ``"seen_phrasing"``
          when the split has rows of both;
        - ``"macro_accuracy"``: the mean accuracy of the tasks other than ``transcribe``;
        - ``"per_voice"``: per task, per voice (``"nonspeech"`` for the clips), the task's scores;
        - ``"examples"``: per task, the first three rows as ``{"instruction", "response", "prediction"}``.

    Raises:
        ValueError: the number of predictions differs from the number of rows, a prediction is
            not a string, or a column is missing.

    Example:
        >>> rows = {"task": ["count", "sex"], "instruction": ["How many words did the speaker say?",
        ...         "Is the speaker male or female?"], "response": ["7", "male"]}
        >>> score_instructions(rows, ["Seven.", "female"])["tasks"]["count"]
        {'n': 1, 'accuracy': 1.0}
    """
    cols = _columns(dataset, ("task", "subtask", "instruction", "response", "voice", "held_out_phrasing"))
    missing = [c for c in ("task", "instruction", "response") if c not in cols]
    if missing:
        raise ValueError(f"the dataset has no {missing} column(s): score the rows of an instruction split")
    n = len(cols["task"])
    predictions = list(predictions)
    if len(predictions) != n:
        raise ValueError(
            f"{len(predictions)} predictions for {n} rows: give exactly one answer per row, in order"
        )
    bad = next((i for i, p in enumerate(predictions) if not isinstance(p, str)), None)
    if bad is not None:
        raise ValueError(f"prediction {bad} is a {type(predictions[bad]).__name__}, not a string")
    refs = [normalize_answer(r) for r in cols["response"]]
    hyps = [normalize_answer(p) for p in predictions]
    voices = [v or NONSPEECH_VOICE for v in cols.get("voice", [""] * n)]
    held = cols.get("held_out_phrasing")

    by_task: dict[str, list[int]] = defaultdict(list)
    for i, task in enumerate(cols["task"]):
        by_task[task].append(i)
    order = [t for t in TASKS if t in by_task] + sorted(t for t in by_task if t not in TASKS)

    def score(task: str, idx: list[int]) -> dict[str, Any]:
        return _score(task, [refs[i] for i in idx], [hyps[i] for i in idx])

    def groups(idx: list[int], keys: list[Any]) -> dict[Any, list[int]]:
        out: dict[Any, list[int]] = defaultdict(list)
        for i in idx:
            out[keys[i]].append(i)
        return dict(sorted(out.items()))

    tasks, per_voice, examples = {}, {}, {}
    for task in order:
        idx = by_task[task]
        result = score(task, idx)
        if task == "speech_presence":
            for name, answer in (("speech", "yes"), ("nonspeech", "no")):
                part = [i for i in idx if refs[i] == answer]
                if part:
                    result[name] = score(task, part)
        if task == "qa" and "subtask" in cols:
            result["by_question"] = {q: score(task, part) for q, part in groups(idx, cols["subtask"]).items()}
        if held is not None:
            parts = groups(idx, held)
            if len(parts) == 2:
                result["held_out_phrasing"], result["seen_phrasing"] = (
                    score(task, parts[True]),
                    score(task, parts[False]),
                )
        tasks[task] = result
        per_voice[task] = {v: score(task, part) for v, part in groups(idx, voices).items()}
        examples[task] = [
            {
                "instruction": cols["instruction"][i],
                "response": cols["response"][i],
                "prediction": predictions[i],
            }
            for i in idx[:EXAMPLES_PER_TASK]
        ]
    accuracies = [r["accuracy"] for r in tasks.values() if "accuracy" in r]
    return {
        "num_rows": n,
        "tasks": tasks,
        "macro_accuracy": sum(accuracies) / len(accuracies) if accuracies else None,
        "per_voice": per_voice,
        "examples": examples,
    }


def plot_instruction_results(results: dict[str, Any], path: str | Path) -> Path:
    """A bar chart of :func:`score_instructions` results, saved as a PNG at `path`.

    One bar per task: its accuracy, or ``1 - WER`` for ``transcribe`` (so that higher is better
    everywhere); ``speech_presence`` also gets a bar for utterances and one for non-speech clips.
    When the results hold them, a second bar per task gives the score on held-out phrasings.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def height(r: dict[str, Any]) -> float:
        return max(0.0, 1.0 - r["wer"]) if "wer" in r else r["accuracy"]

    labels, values, held = [], [], []
    for task, r in results["tasks"].items():
        labels.append(f"{task}\n(1 - WER)" if "wer" in r else task)
        values.append(height(r))
        held.append(height(r["held_out_phrasing"]) if "held_out_phrasing" in r else None)
        for part, name in (("speech", "on speech"), ("nonspeech", "on non-speech")):
            if part in r:
                labels.append(f"{task}\n{name}")
                values.append(height(r[part]))
                held.append(None)
    has_held = any(h is not None for h in held)
    width = 0.4 if has_held else 0.7
    x = list(range(len(labels)))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 * len(labels)), 3.8))
    shift = width / 2 if has_held else 0.0
    bars = ax.bar([i - shift for i in x], values, width, color="#4c72b0", label="all rows")
    ax.bar_label(bars, fmt="%.2f", fontsize=7)
    if has_held:
        hx = [i + shift for i, h in zip(x, held) if h is not None]
        hv = [h for h in held if h is not None]
        hbars = ax.bar(hx, hv, width, color="#dd8452", label="held-out phrasing")
        ax.bar_label(hbars, fmt="%.2f", fontsize=7)
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("accuracy (transcribe: 1 - WER)")
    ax.set_title(f"Instruction following ({results['num_rows']} rows)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
