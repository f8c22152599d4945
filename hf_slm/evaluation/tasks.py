"""Benchmark tasks for spoken language models, on the sets of :mod:`hf_slm.data.benchmarks`.

Likelihood tasks (``lexical``, ``syntactic``, ``storycloze``): every item of a pair is scored by a
*scorer* (its log-likelihood under the model); the pair is won when the correct item scores
higher. Results are reported with two scores per item, the ``sum`` of the token log-likelihoods
(the ZeroSpeech 2021 habit) and their per-token ``mean`` (length-normalised), each scored by the
ZeroSpeech 2021 rules (:mod:`hf_slm.evaluation.zerospeech`). The sum favours shorter items: an
untrained speech LM wins every ``argument_structure`` pair with it (the ungrammatical sentence has an
extra object) and is near chance with the mean, so read the two side by side.

Scorers follow a small duck-typed protocol, ``scorer.score(items, progress=...) -> list[ItemScore]``:

- :class:`SpeechScorer` for a speech LM with ``model.score(**processor(audio=...))`` (audio in);
- :class:`TextScorer` for a plain causal text LM and its tokenizer, reading an item's phonemes
  (from ``phonemes.csv``) or its text: the text topline.

The ``continuation`` task generates speech from short spoken prompts, has the ASR judge
(:class:`~hf_slm.evaluation.judge.AsrJudge`) transcribe it, and reports

- ``word_validity``: the fraction of transcribed words that are words of the corpus lexicon
  (:func:`hf_slm.data.lexicon`), and
- repetition: ``repeated_3gram_rate`` (word 3-grams that repeat an earlier 3-gram of the same
  transcript, over all 3-grams) and ``distinct_2`` (distinct word bigrams over all bigrams, across
  all transcripts),

beside the same figures for the judge on the whole original sentences (the topline). The judge
only ever outputs words of its vocabulary, so word validity is only meaningful when that vocabulary
holds more than the lexicon: :func:`continuation_judge` adds English words that are not in the
lexicon (from the system word list), so that babble can be heard as non-lexicon words. Even so the
judge's in-domain language model pulls what it hears towards lexicon words. Measured on the default
test prompts: word validity 0.99 on the original sentences, 0.987 on the output of an untrained
speech LM, and 0.98 on "babble" made of random 100-ms slices of speech; a judge with a uniform
unigram model over the lexicon and 2,000 other words separates babble more (0.47 against 0.58 on
the originals) but hears spoken nonwords as lexicon words more often than real sentences (0.67), and
its WER on the originals is 0.81. So word validity flags speech that is not heard as words at all;
it is a weak signal, to read beside the topline, with ``empty_rate``, ``mean_words`` and ``distinct_2``.
The judge's own language model gives no perplexity of the generated speech, and none is reported.

Example:
    >>> from hf_slm.evaluation.tasks import evaluate_likelihood_task, load_scorer
    >>> scorer = load_scorer("zoo/speech-lm-tiny")  # doctest: +SKIP
    >>> r = evaluate_likelihood_task("lexical", "bench", scorer, split="dev")  # doctest: +SKIP
    >>> r["sum"]["score"], r["mean"]["score"]  # doctest: +SKIP
    (0.61, 0.58)
"""

from __future__ import annotations

import csv
import hashlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hf_slm.evaluation.zerospeech import pair_items, read_gold, score_pairs

__all__ = [
    "LIKELIHOOD_TASKS",
    "SCORINGS",
    "TASKS",
    "BenchmarkItem",
    "ItemScore",
    "LikelihoodScorer",
    "PipelineContinuer",
    "SpeechScorer",
    "SpeechTextScorer",
    "TaskError",
    "TextScorer",
    "continuation_judge",
    "continuation_metrics",
    "evaluate_continuation",
    "evaluate_likelihood_task",
    "load_continuer",
    "load_scorer",
]

LIKELIHOOD_TASKS = ("lexical", "syntactic", "storycloze")
TASKS = (*LIKELIHOOD_TASKS, "continuation")
SCORINGS = ("sum", "mean")


class TaskError(ValueError):
    """A task that cannot run: missing benchmark files, or a model that cannot do the task."""


@dataclass(frozen=True)
class BenchmarkItem:
    """One wav of a benchmark set, with what a scorer may read of it.

    Attributes:
        filename: the wav's stem (as in ``gold.csv``).
        path: the wav file.
        text: what is said (lexical: the word or nonword; otherwise the transcription).
        phonemes: espeak-ng's phonemes of it, space-separated (None without ``phonemes.csv``).
    """

    filename: str
    path: Path
    text: str
    phonemes: str | None = None


@dataclass(frozen=True)
class ItemScore:
    """A model's log-likelihood of one item: ``sum`` over its tokens, their ``mean``, and how many."""

    sum: float
    mean: float
    num_tokens: int


class LikelihoodScorer(Protocol):
    """What the likelihood tasks need of a model: a score for each item, higher for more likely."""

    def score(self, items: Sequence[BenchmarkItem], *, progress: bool = True) -> list[ItemScore]: ...


# --- scorers -------------------------------------------------------------------------------------
class SpeechScorer:
    """Scores audio with a speech LM: ``model.score(**processor(audio=[...], sampling_rate=16000))``.

    The model's ``score`` returns per utterance the log-likelihood of its unit tokens summed
    (``sum``), their mean (``mean``) and their number (``num_tokens``). Items are batched in order
    of length, so that a batch pads little.

    Args:
        model: e.g. a :class:`~hf_slm.models.speech_lm.SpeechLMForCausalLM`.
        processor: its processor (``input_values`` + ``attention_mask`` out).
        batch_size (`int`, defaults to 16): clips per call of ``model.score``.

    Example:
        >>> scorer = SpeechScorer(model, processor)  # doctest: +SKIP
        >>> scorer.score([BenchmarkItem("a", Path("a.wav"), "the dog")])[0].num_tokens  # doctest: +SKIP
        57
    """

    kind = "speech"

    def __init__(self, model: Any, processor: Any, *, batch_size: int = 16) -> None:
        self.model = model
        self.processor = processor
        self.batch_size = batch_size
        self.sampling_rate = int(getattr(processor, "sampling_rate", 16_000))

    score_kwargs: dict[str, Any] = {}

    def _lengths(self, items: Sequence[BenchmarkItem]) -> list[int]:
        import soundfile as sf

        return [sf.info(str(item.path)).frames for item in items]

    def _waves(self, batch: Sequence[BenchmarkItem]) -> list[Any]:
        from hf_slm.audio import load_audio

        return [load_audio(item.path, target_sampling_rate=self.sampling_rate) for item in batch]

    def _inputs(self, batch: Sequence[BenchmarkItem]) -> Any:
        return self.processor(audio=self._waves(batch), sampling_rate=self.sampling_rate, return_tensors="pt")

    def score(self, items: Sequence[BenchmarkItem], *, progress: bool = True) -> list[ItemScore]:
        import torch
        from tqdm.auto import tqdm

        lengths = self._lengths(items)
        order = sorted(range(len(items)), key=lambda i: lengths[i])
        out: list[ItemScore | None] = [None] * len(items)
        bar = tqdm(total=len(items), desc=f"scoring {self.kind}", unit="item", disable=not progress)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            inputs = self._inputs([items[i] for i in idx])
            with torch.no_grad():
                res = self.model.score(**inputs, **self.score_kwargs)
            sums, means, counts = (res.sum.tolist(), res.mean.tolist(), res.num_tokens.tolist())
            for j, i in enumerate(idx):
                out[i] = ItemScore(float(sums[j]), float(means[j]), int(counts[j]))
            bar.update(len(idx))
        bar.close()
        return out  # type: ignore[return-value]


class TextScorer:
    """Scores text with a causal LM and its tokenizer: the log-likelihood of every token after BOS.

    Each item's phonemes (``field="phonemes"``, from ``phonemes.csv``) or its text
    (``field="text"``) is tokenised; a BOS token is put first when the tokenizer has one and did not
    add it (without one, the first token is the context and is not scored). ``sum`` adds the
    log-probabilities of the scored tokens, ``mean`` divides by their number.

    Args:
        model: any `AutoModelForCausalLM`.
        tokenizer: its tokenizer (e.g. a word-level tokenizer over phonemes).
        field (`str`, defaults to `"phonemes"`): ``"phonemes"`` or ``"text"``.
        batch_size (`int`, defaults to 32): sequences per forward pass.

    Example:
        >>> scorer = TextScorer(AutoModelForCausalLM.from_pretrained(d), AutoTokenizer.from_pretrained(d))  # doctest: +SKIP
    """

    kind = "text"

    def __init__(self, model: Any, tokenizer: Any, *, field: str = "phonemes", batch_size: int = 32) -> None:
        if field not in ("phonemes", "text"):
            raise ValueError(f"field must be 'phonemes' or 'text', got {field!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.field = field
        self.batch_size = batch_size

    def _ids(self, text: str) -> list[int]:
        ids = list(self.tokenizer(text, add_special_tokens=True)["input_ids"])
        bos = self.tokenizer.bos_token_id
        if bos is not None and (not ids or ids[0] != bos):
            ids = [bos, *ids]
        return ids

    def score(self, items: Sequence[BenchmarkItem], *, progress: bool = True) -> list[ItemScore]:
        import torch
        from tqdm.auto import tqdm

        texts = []
        for item in items:
            value = item.phonemes if self.field == "phonemes" else item.text
            if value is None:
                raise TaskError(
                    f"{item.filename} has no phonemes: its folder lacks phonemes.csv "
                    "(rebuild with `hf-slm data benchmarks`, or score --text-field text)"
                )
            if not value.strip():
                raise TaskError(f"{item.filename} has an empty {self.field}; nothing to score")
            texts.append(value)
        ids = [self._ids(t) for t in texts]
        limit = getattr(self.model.config, "max_position_embeddings", None)
        too_long = [items[i].filename for i, x in enumerate(ids) if limit and len(x) > limit]
        if too_long:
            raise TaskError(
                f"{len(too_long)} item(s) (e.g. {too_long[0]}) are longer than the model's context of "
                f"{limit} tokens"
            )
        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else 0
        device = self.model.device
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: list[ItemScore | None] = [None] * len(ids)
        bar = tqdm(total=len(ids), desc=f"scoring {self.field}", unit="item", disable=not progress)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = max(len(ids[i]) for i in idx)
            batch = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for j, i in enumerate(idx):
                batch[j, : len(ids[i])] = torch.tensor(ids[i])
                mask[j, : len(ids[i])] = 1
            batch, mask = batch.to(device), mask.to(device)
            with torch.no_grad():
                logits = self.model(input_ids=batch, attention_mask=mask).logits[:, :-1].float()
            logp = torch.log_softmax(logits, -1).gather(-1, batch[:, 1:, None]).squeeze(-1)
            valid = mask[:, 1:].to(logp.dtype)
            sums, counts = (logp * valid).sum(1).tolist(), valid.sum(1).long().tolist()
            for j, i in enumerate(idx):
                n = int(counts[j])
                out[i] = ItemScore(float(sums[j]), float(sums[j]) / max(n, 1), n)
            bar.update(len(idx))
        bar.close()
        return out  # type: ignore[return-value]


class SpeechTextScorer(SpeechScorer):
    """Scores items with a speech+text LM, given as speech or as text (the Spirit LM comparison).

    ``modality="speech"``: each clip is ``[SPEECH]`` + its units; ``"text"``: ``[TEXT]`` + the item's
    text (the word or nonword, or the transcription). Both are followed by the end token, scored too.
    Batching is :class:`SpeechScorer`'s.

    Args:
        model: a :class:`~hf_slm.models.speech_text_lm.SpeechTextLMForCausalLM`.
        processor: its processor.
        modality (`str`, defaults to `"speech"`): what the model reads of each item.
        batch_size (`int`, defaults to 16): items per call of ``model.score``.
    """

    score_kwargs = {"add_eos": True}

    def __init__(self, model: Any, processor: Any, *, modality: str = "speech", batch_size: int = 16) -> None:
        if modality not in ("speech", "text"):
            raise ValueError(f"modality must be 'speech' or 'text', got {modality!r}")
        super().__init__(model, processor, batch_size=batch_size)
        self.kind = modality

    def _lengths(self, items: Sequence[BenchmarkItem]) -> list[int]:
        return super()._lengths(items) if self.kind == "speech" else [len(item.text) for item in items]

    def _inputs(self, batch: Sequence[BenchmarkItem]) -> Any:
        if self.kind == "speech":
            waves = self._waves(batch)
            return self.processor(
                audio=waves,
                sampling_rate=self.sampling_rate,
                task="speech_continuation",
                padding_side="right",
            )
        return self.processor(
            text=[item.text for item in batch], task="text_continuation", padding_side="right"
        )


def _can_score(model: Any) -> bool:
    import torch

    score = getattr(model, "score", None)
    return callable(score) and not isinstance(score, torch.nn.Module)  # a classifier's head is not a scorer


def load_scorer(
    model: str | os.PathLike,
    *,
    text_field: str = "phonemes",
    batch_size: int = 16,
    prompt_modality: str = "speech",
) -> SpeechScorer | TextScorer | SpeechTextScorer:
    """The scorer for a model folder (or Hub id): speech LM -> :class:`SpeechScorer`, text LM -> :class:`TextScorer`.

    A speech+text LM gets a :class:`SpeechTextScorer` reading items as ``prompt_modality`` (speech or
    text); another model whose class has a ``score`` method gets its processor and a :class:`SpeechScorer`;
    a plain causal LM with a tokenizer gets a :class:`TextScorer` over ``text_field``.

    Raises:
        TaskError: the model does not load as a causal LM, or is a causal LM with neither
            ``score`` nor a tokenizer.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoProcessor, AutoTokenizer

    import hf_slm  # noqa: F401  (registers our model types with the Auto classes)

    name = os.fspath(model)
    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise TaskError(f"cannot load a model from {name}: {err}") from None
    try:
        lm = AutoModelForCausalLM.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise TaskError(
            f"{name} is a {config.model_type!r} model, which does not load as a causal LM ({err}). The "
            "likelihood tasks need a speech LM (with .score) or a causal text LM with a tokenizer"
        ) from None
    lm.eval()
    from hf_slm.models.speech_text_lm import SpeechTextLMForCausalLM

    if isinstance(lm, SpeechTextLMForCausalLM):
        return SpeechTextScorer(
            lm, AutoProcessor.from_pretrained(name), modality=prompt_modality, batch_size=batch_size
        )
    if _can_score(lm):
        return SpeechScorer(lm, AutoProcessor.from_pretrained(name), batch_size=batch_size)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError, TypeError) as err:
        raise TaskError(
            f"{name} is a causal LM without a score() method (not a speech LM) and without a tokenizer "
            f"({err}); a text LM needs its tokenizer files in the same folder"
        ) from None
    return TextScorer(lm, tokenizer, field=text_field, batch_size=batch_size)


# --- likelihood tasks ----------------------------------------------------------------------------
def _task_folder(data_dir: str | os.PathLike, task: str, split: str, needs: str) -> Path:
    folder = Path(data_dir) / task / split
    if not (folder / needs).is_file():
        if not Path(data_dir).is_dir():
            problem = f"{data_dir} does not exist"
        else:
            problem = f"{data_dir} has no {task}/{split}/{needs}"
        raise TaskError(f"{problem}: build the benchmark sets with `hf-slm data benchmarks --out {data_dir}`")
    return folder


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _read_phonemes(folder: Path) -> dict[str, str]:
    path = folder / "phonemes.csv"
    if not path.is_file():
        return {}
    return {r["filename"]: r["phonemes"] for r in _read_csv(path)}


def evaluate_likelihood_task(
    task: str,
    data_dir: str | os.PathLike,
    scorer: LikelihoodScorer,
    *,
    split: str = "test",
    scorings: Sequence[str] = SCORINGS,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score every item of a task's pairs and compute its ZeroSpeech accuracy with each scoring.

    Args:
        task: ``"lexical"``, ``"syntactic"`` or ``"storycloze"``.
        data_dir: the benchmark folder (``hf-slm data benchmarks --out``).
        scorer: anything with ``score(items, progress=...) -> list[ItemScore]``.
        split: ``"test"`` or ``"dev"``.
        scorings: which item scores to use: ``"sum"`` and/or ``"mean"``.
        limit: use only the first ``limit`` ids (all their voices).
        progress: show progress bars.

    Returns:
        A dict with ``task``, ``split``, ``num_ids``, ``num_pairs``, ``num_items``, ``seconds``
        (scoring time), ``scorer`` (``"speech"`` or ``"text:phonemes"``...), one entry per scoring
        (``"sum"`` / ``"mean"``: the result of :func:`~hf_slm.evaluation.zerospeech.score_pairs`
        without ``by_id``), and ``item_scores`` (scoring -> filename -> score, for submissions).

    Example:
        >>> r = evaluate_likelihood_task("syntactic", "bench", scorer, scorings=["mean"])  # doctest: +SKIP
        >>> r["mean"]["by_type"]["agreement"]["score"]  # doctest: +SKIP
        0.66
    """
    if task not in LIKELIHOOD_TASKS:
        raise TaskError(f"{task!r} is not a likelihood task; choose one of {LIKELIHOOD_TASKS}")
    bad = [s for s in scorings if s not in SCORINGS]
    if bad or not scorings:
        raise TaskError(f"scorings must be among {SCORINGS}, got {list(scorings)}")
    folder = _task_folder(data_dir, task, split, "gold.csv")
    _, rows = read_gold(folder / "gold.csv", task)
    pairs = pair_items(rows)
    if limit is not None:
        keep = list(dict.fromkeys(p.id for p in pairs))[:limit]
        pairs = [p for p in pairs if p.id in set(keep)]
    names = list(dict.fromkeys(n for p in pairs for n in (p.correct, p.incorrect)))
    by_name = {r["filename"]: r for r in rows}
    phonemes = _read_phonemes(folder)
    text_col = "word" if task == "lexical" else "transcription"
    items = [BenchmarkItem(n, folder / f"{n}.wav", by_name[n][text_col], phonemes.get(n)) for n in names]
    start = time.perf_counter()
    scores = scorer.score(items, progress=progress)
    seconds = time.perf_counter() - start
    if len(scores) != len(items):
        raise TaskError(f"the scorer returned {len(scores)} scores for {len(items)} items")
    kind = getattr(scorer, "kind", type(scorer).__name__)
    if kind == "text":
        kind = f"text:{getattr(scorer, 'field', 'phonemes')}"
    result: dict[str, Any] = {
        "task": task,
        "split": split,
        "scorer": kind,
        "num_ids": len({p.id for p in pairs}),
        "num_pairs": len(pairs),
        "num_items": len(items),
        "seconds": seconds,
        "item_scores": {},
    }
    for scoring in scorings:
        values = {item.filename: float(getattr(s, scoring)) for item, s in zip(items, scores)}
        r = score_pairs(pairs, values)
        r.pop("by_id")
        result[scoring] = r
        result["item_scores"][scoring] = values
    return result


# --- continuation --------------------------------------------------------------------------------
def _ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def continuation_metrics(
    transcripts: Iterable[str], vocabulary: Iterable[str] | None = None
) -> dict[str, Any]:
    """Word validity and repetition of transcripts of generated speech.

    Args:
        transcripts: one transcript per generation (lowercase words separated by spaces).
        vocabulary (*optional*): the valid words (default: every form of :func:`hf_slm.data.lexicon`).

    Returns:
        ``num_transcripts``, ``num_words``, ``mean_words`` (per transcript), ``empty_rate``
        (share of empty transcripts), ``word_validity`` (valid words / all words),
        ``repeated_3gram_rate`` (3-grams repeating an earlier 3-gram of the same transcript / all
        3-grams) and ``distinct_2`` (distinct bigrams / all bigrams, over all transcripts). A rate
        with nothing to count (no words, no 3-grams) is None.

    Example:
        >>> m = continuation_metrics(["the dog ran the dog ran", "a blick"], vocabulary=["the", "dog", "ran", "a"])
        >>> m["word_validity"], m["repeated_3gram_rate"], m["distinct_2"]
        (0.875, 0.5, 0.6666666666666666)
    """
    if vocabulary is None:
        from hf_slm.data import lexicon

        vocabulary = lexicon().words
    valid = set(vocabulary)
    words = [t.split() for t in transcripts]
    n_words = sum(len(w) for w in words)
    trigrams = [_ngrams(w, 3) for w in words]
    n3 = sum(len(t) for t in trigrams)
    repeated = sum(len(t) - len(set(t)) for t in trigrams)
    bigrams = [b for w in words for b in _ngrams(w, 2)]
    return {
        "num_transcripts": len(words),
        "num_words": n_words,
        "mean_words": n_words / len(words) if words else None,
        "empty_rate": sum(not w for w in words) / len(words) if words else None,
        "word_validity": sum(x in valid for w in words for x in w) / n_words if n_words else None,
        "repeated_3gram_rate": repeated / n3 if n3 else None,
        "distinct_2": len(set(bigrams)) / len(bigrams) if bigrams else None,
    }


@cache
def _distractor_words(n: int) -> tuple[str, ...]:
    """``n`` English words outside the lexicon that the judge's dictionary can pronounce (fixed choice)."""
    from hf_slm.data import lexicon
    from hf_slm.evaluation.judge import cmudict_words

    lex = set(lexicon().words)
    pronounceable = cmudict_words()
    words: set[str] = set()
    for path in ("/usr/share/dict/words", "/usr/share/dict/american-english"):
        if Path(path).exists():
            for w in Path(path).read_text(errors="ignore").split():
                if w.isascii() and w.isalpha() and w.islower() and len(w) >= 2:
                    words.add(w)
            break
    if not words:  # no word list: the dictionary itself
        words = {w for w in pronounceable if w.isalpha()}
    pool = sorted((w for w in words if w in pronounceable and w not in lex), key=_hash_key)
    return tuple(sorted(pool[:n]))


def _hash_key(word: str) -> bytes:
    return hashlib.sha256(word.encode()).digest()


def continuation_judge(
    texts: Iterable[str] | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    distractors: int = 2000,
) -> Any:
    """The ASR judge of the continuation task.

    Its language model is built from ``texts`` (the training text of a corpus; by default the
    training text that ``hf-slm data synth --hours 5 --seed 0`` would have, planned without audio),
    and its vocabulary is the lexicon plus ``distractors`` English words outside the lexicon, so
    that speech which is not made of lexicon words can be heard as such.

    Example:
        >>> judge = continuation_judge(load_corpus("data/corpus")["train"]["text"])  # doctest: +SKIP
    """
    from hf_slm.data import lexicon
    from hf_slm.evaluation.judge import AsrJudge

    if texts is None:
        from hf_slm.data.synth import SynthConfig, plan_corpus

        texts = [item.text for item in plan_corpus(SynthConfig(hours=5.0, seed=0))["train"]]
    vocabulary = [*lexicon().words, *_distractor_words(distractors)]
    return AsrJudge.from_texts(texts, vocabulary=vocabulary, cache_dir=cache_dir)


class PipelineContinuer:
    """Continues a 16 kHz prompt with ``pipeline("speech-continuation", model=...)``.

    Calling it with a waveform returns ``(audio of the continuation, its sampling rate)``.

    Args:
        model: a model folder or Hub id, or a ready pipeline.
        max_new_tokens (`int`, defaults to 150): units to generate.
        temperature (`float`, defaults to 1.0): sampling temperature; 0 decodes greedily.
    """

    def __init__(self, model: Any, *, max_new_tokens: int = 150, temperature: float = 1.0) -> None:
        if isinstance(model, (str, os.PathLike)):
            from transformers import pipeline

            import hf_slm  # noqa: F401  (registers the pipeline)

            try:
                model = pipeline("speech-continuation", model=os.fspath(model))
            except (OSError, ValueError, KeyError) as err:
                raise TaskError(
                    f"{os.fspath(model)} cannot continue speech ({err}); the continuation task needs a "
                    "speech LM that pipeline('speech-continuation') loads"
                ) from None
        self.pipe = model
        self.generate_kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens}
        if temperature > 0:
            self.generate_kwargs.update(do_sample=True, temperature=temperature)
        else:
            self.generate_kwargs.update(do_sample=False)

    def __call__(self, wave: np.ndarray, seed: int | None = None) -> tuple[np.ndarray, int]:
        out = self.pipe({"raw": wave, "sampling_rate": 16_000}, seed=seed, **self.generate_kwargs)
        return np.asarray(out["audio"], dtype=np.float32), int(out["sampling_rate"])


def load_continuer(model: str | os.PathLike, **kwargs: Any) -> PipelineContinuer:
    """A :class:`PipelineContinuer` for a model folder or Hub id, refusing models that cannot speak.

    Raises:
        TaskError: the model is not one of ours (e.g. a text LM), or its class has no ``decode_speech``.
    """
    from transformers import AutoConfig

    import hf_slm  # noqa: F401

    name = os.fspath(model)
    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise TaskError(f"cannot load a model from {name}: {err}") from None
    if not config.model_type.startswith("hf_slm_"):
        raise TaskError(
            f"{name} is a {config.model_type!r} model: the continuation task needs a speech LM "
            "(pipeline('speech-continuation')), not a text LM"
        )
    continuer = PipelineContinuer(name, **kwargs)
    if not hasattr(continuer.pipe.model, "decode_speech"):
        raise TaskError(
            f"{name} ({config.model_type}) does not output speech: it cannot do the continuation task"
        )
    return continuer


def evaluate_continuation(
    data_dir: str | os.PathLike,
    continuer: Callable[..., tuple[np.ndarray, int]],
    judge: Any,
    *,
    split: str = "test",
    limit: int | None = None,
    seed: int = 0,
    topline: bool = True,
    progress: bool = True,
    vocabulary: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Continue each prompt, transcribe the continuations with the judge, and measure them.

    Args:
        data_dir: the benchmark folder.
        continuer: ``continuer(wave_16k, seed=...) -> (audio, sampling_rate)``, the continuation only
            (e.g. :class:`PipelineContinuer`).
        judge: an :class:`~hf_slm.evaluation.judge.AsrJudge` (see :func:`continuation_judge`).
        split: ``"test"`` or ``"dev"``.
        limit: continue only the first ``limit`` prompts.
        seed: prompt ``i`` is continued with seed ``seed + i`` (the same results in any order).
        topline: also measure the judge on the whole original sentences (``full/`` wavs).
        vocabulary: the valid words (default: the lexicon's).

    Returns:
        :func:`continuation_metrics` of the continuations, plus ``task``, ``split``,
        ``generated_seconds`` (audio generated), ``seconds`` (generation time), ``examples``
        (prompt, transcript) and ``topline`` (the metrics of the original sentences, with the
        judge's ``wer`` on them).
    """
    from tqdm.auto import tqdm

    from hf_slm.audio import load_audio

    folder = _task_folder(data_dir, "continuation", split, "prompts.csv")
    rows = _read_csv(folder / "prompts.csv")
    if rows and list(rows[0]) != ["filename", "voice", "prompt_text", "full_text"]:
        raise TaskError(
            f"{folder / 'prompts.csv'} must have the columns filename,voice,prompt_text,full_text"
        )
    rows = rows[:limit] if limit is not None else rows
    if not rows:
        raise TaskError(f"{folder / 'prompts.csv'} has no prompts")
    vocabulary = list(vocabulary) if vocabulary is not None else None
    generated, audio_seconds = [], 0.0
    start = time.perf_counter()
    for i, row in enumerate(tqdm(rows, desc="continuing prompts", unit="prompt", disable=not progress)):
        prompt = load_audio(folder / f"{row['filename']}.wav")
        audio, sr = continuer(prompt, seed=seed + i)
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size == 0 or not np.any(audio):
            generated.append(None)  # silence: heard as nothing
            continue
        wave = load_audio(audio, sr)
        audio_seconds += wave.size / 16_000
        generated.append(wave)
    seconds = time.perf_counter() - start
    heard = [x for x in generated if x is not None]
    hyps_heard = iter(judge.transcribe_batch(heard, sampling_rate=16_000, progress=progress) if heard else [])
    hyps = [next(hyps_heard) if x is not None else "" for x in generated]
    result: dict[str, Any] = {
        "task": "continuation",
        "split": split,
        **continuation_metrics(hyps, vocabulary),
    }
    result.update(
        generated_seconds=audio_seconds,
        seconds=seconds,
        examples=[{"prompt": r["prompt_text"], "transcript": h} for r, h in zip(rows[:5], hyps)],
    )
    if topline:
        full = [load_audio(folder / "full" / f"{r['filename']}.wav") for r in rows]
        judged = judge.evaluate(full, [r["full_text"] for r in rows], sampling_rate=16_000, progress=progress)
        result["topline"] = {**continuation_metrics(judged["hypotheses"], vocabulary), "wer": judged["wer"]}
    return result
