"""Benchmark sets for spoken language models, spoken by espeak-ng voices that training never hears.

``build_benchmarks(out_dir, BenchmarkConfig(...))`` (the ``hf-slm data benchmarks`` command) writes
four tasks, each with a ``dev`` split (spoken by :data:`~hf_slm.data.synth.VALIDATION_VOICES`) and
a ``test`` split (spoken by :data:`~hf_slm.data.synth.TEST_VOICES`), as 16 kHz mono 16-bit wavs:

```
DIR/
  benchmarks.json                      the settings and counts of the build (written last)
  lexical/{dev,test}/*.wav             a word or a nonword, spoken in isolation (sWUGGY-style)
  lexical/{dev,test}/gold.csv          filename,correct,id,voice,frequency,word,phones,length
  syntactic/{dev,test}/*.wav           a sentence of a grammatical / ungrammatical minimal pair (sBLIMP-style)
  syntactic/{dev,test}/gold.csv        filename,correct,id,voice,type,subtype,transcription
  storycloze/{dev,test}/*.wav          a two-sentence story, coherent or with a random ending (spoken StoryCloze-style)
  storycloze/{dev,test}/gold.csv       filename,correct,id,voice,transcription
  continuation/{dev,test}/*.wav        the first 2-3 words (about 1 s) of a held-out sentence
  continuation/{dev,test}/full/*.wav   the whole sentence (a topline for the continuation task)
  continuation/{dev,test}/prompts.csv  filename,voice,prompt_text,full_text
  */{dev,test}/phonemes.csv            filename,phonemes: every wav's phonemes, for text-based toplines
```

The gold files follow the ZeroSpeech 2021 sLM21 formats exactly (see
:mod:`hf_slm.evaluation.zerospeech`): ``filename`` is a wav's stem (random letters, as in the
official sets, so that a name says nothing about the answer); every ``id`` is spoken by every voice
of its split, both items of a pair at the same rate and pitch; each pair's rows come in matching
order (for each id and voice, the correct row, then the incorrect one).

What the columns hold:

- ``phones`` (lexical): the phonemes espeak-ng speaks for that item in that voice (accents differ),
  space-separated, without stress marks; ``length`` is their number.
- ``frequency`` (lexical): how often the word occurs in the training text of the default corpus,
  ``hf-slm data synth --hours 1 --seed 0`` (the train split's text as :func:`~hf_slm.data.synth.plan_corpus`
  plans it; about 1,300 utterances). A nonword row carries the frequency of the word it is paired
  with, so both rows of a pair fall in the same band.
- ``phonemes.csv``: the same phonemes for every wav of every task, with no word boundaries
  (``ð ə d ɑː ɡ ...``); for a continuation prompt, the phonemes of the prompt's words.

Held out from training, by construction: the voices (a split's voices must not be in
:data:`~hf_slm.data.synth.TRAIN_VOICES`), and the text. Benchmark text comes from generator seed
streams of its own (``hash_seed(seed, "benchmark-<task>-<split>")``, never the corpus's
``train`` / ``validation`` / ``test`` streams), and any sentence or story that the corpus's training
stream of seed 0 produces in its first ``exclude_utterances`` utterances (30,000 by default: a
corpus of about 18 hours), or that ``TextGenerator(seed=0)`` produces in as many, is dropped
(for syntactic pairs the grammatical sentence is checked; for stories, the whole coherent story).
The grammar's space of short stories is small: about a fifth of random stories occur in the first
50,000 training utterances, so this check matters there. Lexical pairs use each word once in the
whole build (dev and test share no word), and a nonword that espeak pronounces like its word in
any voice of the split is dropped.

As in :mod:`hf_slm.data.synth`, everything is planned from the seed first, then synthesised in
shards, each in a fresh worker process (espeak-ng's output depends on what the process
synthesised before), so the same settings give byte-identical files.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing as mp
import os
import random
import shutil
import string
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from hf_slm.data.synth import TEST_VOICES, TRAIN_VOICES, VALIDATION_VOICES, SynthConfig, Voice, hash_seed
from hf_slm.data.text import TextGenerator
from hf_slm.evaluation.zerospeech import LEXICAL_COLUMNS, STORYCLOZE_COLUMNS, SYNTACTIC_COLUMNS

__all__ = [
    "BENCHMARK_SPLITS",
    "BENCHMARK_TASKS",
    "PROMPT_COLUMNS",
    "BenchmarkConfig",
    "build_benchmarks",
    "plan_benchmarks",
]

# 2: espeak-ng's noise is seeded per utterance (hf_slm.data.espeak), so the audio differs from version 1's
BENCHMARK_FORMAT_VERSION = 2
BENCHMARK_TASKS = ("lexical", "syntactic", "storycloze", "continuation")
BENCHMARK_SPLITS = ("dev", "test")
PROMPT_COLUMNS = ("filename", "voice", "prompt_text", "full_text")
_GOLD_COLUMNS = {"lexical": LEXICAL_COLUMNS, "syntactic": SYNTACTIC_COLUMNS, "storycloze": STORYCLOZE_COLUMNS}
_STRESS = str.maketrans("", "", "ˈˌ'")


@dataclass
class BenchmarkConfig:
    """What a benchmark build holds. The same config always gives the same bytes."""

    seed: int = field(default=0, metadata={"help": "seed of the text, names, rates and pitches"})
    lexical_pairs: int = field(default=100, metadata={"help": "word/nonword pairs (ids) per split"})
    syntactic_pairs: int = field(
        default=100, metadata={"help": "minimal pairs per split, balanced over types"}
    )
    storycloze_pairs: int = field(
        default=100, metadata={"help": "stories (coherent + random ending) per split"}
    )
    continuation_prompts: int = field(default=50, metadata={"help": "prompts per split (one voice each)"})
    voices: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {"dev": VALIDATION_VOICES, "test": TEST_VOICES},
        metadata={"help": "espeak-ng voices of each split; none may be a training voice"},
    )
    rate_range: tuple[int, int] = field(default=(140, 200), metadata={"help": "words per minute"})
    pitch_range: tuple[int, int] = field(default=(35, 65), metadata={"help": "espeak pitch, 0-100"})
    sampling_rate: int = field(default=16_000, metadata={"help": "output sampling rate in Hz"})
    prompt_seconds: float = field(default=1.5, metadata={"help": "continuation prompts end near this time"})
    exclude_utterances: int = field(
        default=30_000, metadata={"help": "corpus utterances (seed 0) whose text is kept out"}
    )
    frequency_hours: float = field(
        default=1.0,
        metadata={"help": "hours of the seed-0 corpus whose training text gives word frequencies"},
    )
    shard_size: int = field(default=200, metadata={"help": "wavs synthesised per worker task"})

    def __post_init__(self) -> None:
        for name in ("lexical_pairs", "syntactic_pairs", "storycloze_pairs", "continuation_prompts"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if not any(
            (self.lexical_pairs, self.syntactic_pairs, self.storycloze_pairs, self.continuation_prompts)
        ):
            raise ValueError("every task has size 0: nothing to build")
        self.voices = {k: tuple(v) for k, v in self.voices.items()}
        for split in BENCHMARK_SPLITS:
            if not self.voices.get(split):
                raise ValueError(f"no voices given for split {split!r}")
            for v in self.voices[split]:
                Voice.parse(v)
            leaked = sorted(set(self.voices[split]) & set(TRAIN_VOICES))
            if leaked:
                raise ValueError(
                    f"voices {leaked} of the {split} split are training voices; benchmark voices must be held out"
                )
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, got {self.shard_size}")

    def size(self, task: str) -> int:
        return {
            "lexical": self.lexical_pairs,
            "syntactic": self.syntactic_pairs,
            "storycloze": self.storycloze_pairs,
            "continuation": self.continuation_prompts,
        }[task]

    def to_json(self) -> str:
        d = asdict(self)
        d["format_version"] = BENCHMARK_FORMAT_VERSION
        return json.dumps(d, indent=2, sort_keys=True)


@dataclass(frozen=True)
class _Job:
    """One wav to make: what to say, in which voice, and where to write it."""

    task: str
    split: str
    filename: str
    sentences: tuple[str, ...]  # handed to espeak one by one, the audio concatenated
    voice: str
    rate: int
    pitch: int
    prompt_seconds: float | None = None  # continuation: also cut a prompt near this time


@dataclass
class _Plan:
    """The rows of one task and split (gold or prompt rows, phones still to fill) and their jobs."""

    rows: list[dict[str, Any]]
    jobs: list[_Job]


# --- the text held out from training ------------------------------------------------------------
@cache
def _corpus_texts(seed: int, utterances: int) -> frozenset[str]:
    """The text of the corpus's training stream for ``seed``, and of ``TextGenerator(seed)``'s own stream."""
    fraction = SynthConfig().story_fraction
    texts: set[str] = set()
    for gen_seed in (hash_seed(seed, "train"), seed):
        gen = TextGenerator(seed=gen_seed)
        texts.update(gen.utterance_text(fraction)[0] for _ in range(utterances))
    return frozenset(texts)


@cache
def _word_counts(hours: float, seed: int = 0) -> Counter:
    """Word counts of the training text of the corpus ``hf-slm data synth --hours H --seed S`` would build."""
    from hf_slm.data.synth import plan_corpus

    plan = plan_corpus(SynthConfig(hours=hours, seed=seed))
    return Counter(w for item in plan["train"] for w in item.text.split())


# --- planning ------------------------------------------------------------------------------------
class _Names:
    """Unique random filenames like the official sets' (11 letters), from a seed."""

    def __init__(self, seed: int, task: str, split: str) -> None:
        self.rng = random.Random(hash_seed(seed, f"benchmark-names-{task}-{split}"))
        self.used: set[str] = set()

    def __call__(self) -> str:
        while True:
            name = "".join(self.rng.choices(string.ascii_letters, k=11))
            if name not in self.used:
                self.used.add(name)
                return name


def _prosody(config: BenchmarkConfig, task: str, split: str) -> random.Random:
    return random.Random(hash_seed(config.seed, f"benchmark-prosody-{task}-{split}"))


def _generator(config: BenchmarkConfig, task: str, split: str) -> TextGenerator:
    return TextGenerator(seed=hash_seed(config.seed, f"benchmark-{task}-{split}"))


def _too_few(task: str, made: int, wanted: int, split: str, hint: str) -> ValueError:
    return ValueError(f"could make only {made} of {wanted} {task} items for the {split} split; {hint}")


def _plan_pairs(
    config: BenchmarkConfig, task: str, split: str, items: list[dict[str, Any]], spoken: list[tuple]
) -> _Plan:
    """Gold rows and jobs of paired items: every id in every voice, correct row then incorrect row."""
    names, prosody = _Names(config.seed, task, split), _prosody(config, task, split)
    rows, jobs = [], []
    for i, (item, (good, bad)) in enumerate(zip(items, spoken), start=1):
        for voice in config.voices[split]:
            rate, pitch = prosody.randint(*config.rate_range), prosody.randint(*config.pitch_range)
            for correct, sentences, extra in ((1, good, item["correct"]), (0, bad, item["incorrect"])):
                name = names()
                rows.append({"filename": name, "correct": correct, "id": i, "voice": voice, **extra})
                jobs.append(_Job(task, split, name, sentences, voice, rate, pitch))
    return _Plan(rows, jobs)


def _plan_lexical(config: BenchmarkConfig) -> dict[str, _Plan]:
    from hf_slm.data.espeak import Espeak

    lex = TextGenerator(seed=0).lex
    # the words word_nonword_pair() draws from: content words of 4+ letters
    capacity = len({w.word for w in (*lex.nouns, *lex.verbs, *lex.adjectives) if len(w.word) >= 4})
    if config.lexical_pairs * len(BENCHMARK_SPLITS) > capacity:
        raise ValueError(
            f"{config.lexical_pairs} lexical pairs per split need {config.lexical_pairs * len(BENCHMARK_SPLITS)} "
            f"different words, and the lexicon has {capacity} content words of 4+ letters (each is used once "
            f"per build): lower --lexical-pairs to at most {capacity // len(BENCHMARK_SPLITS)}"
        )
    counts = _word_counts(config.frequency_hours)
    tts = None
    used: set[str] = set()
    plans = {}
    for split in reversed(BENCHMARK_SPLITS):  # test first: its items do not depend on the dev size
        n = config.lexical_pairs
        gen = _generator(config, "lexical", split)
        items, spoken = [], []
        attempts = 0
        while len(items) < n:
            attempts += 1
            if attempts > 30 * n + 2000:
                raise _too_few(
                    "lexical", len(items), n, split,
                    "each word is used once per build, and few words are left: lower --lexical-pairs",
                )  # fmt: skip
            pair = gen.word_nonword_pair()
            word, non = pair["word"], pair["nonword"]
            if word in used or non in used:
                continue
            tts = tts or Espeak()
            if any(
                tts.phonemes(word, v).translate(_STRESS) == tts.phonemes(non, v).translate(_STRESS)
                for v in config.voices[split]
            ):
                continue  # sounds like the word itself in some voice
            used.update((word, non))
            freq = counts.get(word, 0)
            items.append(
                {
                    "correct": {"frequency": freq, "word": word},
                    "incorrect": {"frequency": freq, "word": non},
                }
            )
            spoken.append(((word,), (non,)))
        plans[split] = _plan_pairs(config, "lexical", split, items, spoken)
    return plans


def _plan_syntactic(config: BenchmarkConfig, excluded: frozenset[str]) -> dict[str, _Plan]:
    kinds = TextGenerator.SYNTAX_TYPES
    seen: set[str] = set()
    plans = {}
    for split in reversed(BENCHMARK_SPLITS):
        n = config.syntactic_pairs
        gen = _generator(config, "syntactic", split)
        items, spoken = [], []
        attempts = 0
        while len(items) < n:
            attempts += 1
            if attempts > 20 * n + 1000:
                raise _too_few("syntactic", len(items), n, split, "lower --syntactic-pairs")
            p = gen.minimal_pair(kinds[len(items) % len(kinds)])
            if p["good"] in excluded or p["good"] in seen or p["bad"] in seen:
                continue
            seen.update((p["good"], p["bad"]))
            common = {"type": p["type"], "subtype": p["subtype"]}
            items.append(
                {
                    "correct": {**common, "transcription": p["good"]},
                    "incorrect": {**common, "transcription": p["bad"]},
                }
            )
            spoken.append(((p["good"] + ".",), (p["bad"] + ".",)))
        plans[split] = _plan_pairs(config, "syntactic", split, items, spoken)
    return plans


def _plan_storycloze(config: BenchmarkConfig, excluded: frozenset[str]) -> dict[str, _Plan]:
    seen: set[str] = set()
    plans = {}
    for split in reversed(BENCHMARK_SPLITS):
        n = config.storycloze_pairs
        gen = _generator(config, "storycloze", split)
        items, spoken = [], []
        attempts = 0
        while len(items) < n:
            attempts += 1
            if attempts > 50 * n + 1000:
                raise _too_few("storycloze", len(items), n, split, "lower --storycloze-pairs")
            s = gen.story_pair()
            good, bad = f"{s['context']} {s['good_ending']}", f"{s['context']} {s['bad_ending']}"
            if good in excluded or good in seen or bad in seen:
                continue
            seen.update((good, bad))
            items.append({"correct": {"transcription": good}, "incorrect": {"transcription": bad}})
            context = s["context"] + "."
            spoken.append(((context, s["good_ending"] + "."), (context, s["bad_ending"] + ".")))
        plans[split] = _plan_pairs(config, "storycloze", split, items, spoken)
    return plans


def _plan_continuation(config: BenchmarkConfig, excluded: frozenset[str]) -> dict[str, _Plan]:
    seen: set[str] = set()
    plans = {}
    for split in reversed(BENCHMARK_SPLITS):
        n = config.continuation_prompts
        gen = _generator(config, "continuation", split)
        names, prosody = _Names(config.seed, "continuation", split), _prosody(config, "continuation", split)
        voices = config.voices[split]
        rows, jobs = [], []
        attempts = 0
        while len(rows) < n:
            attempts += 1
            if attempts > 20 * n + 1000:
                raise _too_few("continuation", len(rows), n, split, "lower --continuation-prompts")
            text = gen.sentence().text
            if len(text.split()) < 5 or text in excluded or text in seen:
                continue  # a prompt of 2+ words must leave 2+ words to continue
            seen.add(text)
            voice = voices[len(rows) % len(voices)]
            rate, pitch = prosody.randint(*config.rate_range), prosody.randint(*config.pitch_range)
            name = names()
            rows.append({"filename": name, "voice": voice, "prompt_text": "", "full_text": text})
            jobs.append(
                _Job("continuation", split, name, (text + ".",), voice, rate, pitch, config.prompt_seconds)
            )
        plans[split] = _Plan(rows, jobs)
    return plans


def plan_benchmarks(config: BenchmarkConfig) -> dict[tuple[str, str], _Plan]:
    """Every item of a build, decided from the config alone (no audio is made here).

    Returns:
        ``(task, split) -> plan`` with the gold (or prompt) rows in file order and the wavs to make.
    """
    needs_text = config.syntactic_pairs or config.storycloze_pairs or config.continuation_prompts
    excluded = _corpus_texts(0, config.exclude_utterances) if needs_text else frozenset()
    planners = {
        "lexical": lambda: _plan_lexical(config),
        "syntactic": lambda: _plan_syntactic(config, excluded),
        "storycloze": lambda: _plan_storycloze(config, excluded),
        "continuation": lambda: _plan_continuation(config, excluded),
    }
    plan: dict[tuple[str, str], _Plan] = {}
    for task in BENCHMARK_TASKS:
        if config.size(task) == 0:
            continue
        for split, p in planners[task]().items():
            plan[(task, split)] = p
    return plan


# --- the worker ----------------------------------------------------------------------------------
def _clean_phonemes(names: list[str]) -> list[str]:
    out = []
    for name in names:
        p = name.translate(_STRESS).strip()
        if p and p.strip("_"):
            out.append(p)
    return out


def _write_wav(path: Path, samples: np.ndarray, espeak_rate: int, sampling_rate: int) -> float:
    import soundfile as sf

    from hf_slm.audio import load_audio, to_int16

    # espeak peaks near full scale: leave 1 dB of headroom for the resampler's ringing (as the corpus does)
    raw = samples.astype(np.float32) * (0.89 / 32768.0)
    wave = load_audio(raw, sampling_rate=espeak_rate, target_sampling_rate=sampling_rate)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    sf.write(tmp, to_int16(wave), sampling_rate, format="WAV", subtype="PCM_16")
    os.replace(tmp, path)
    return len(wave) / sampling_rate


def _prompt_cut(sentence: str, utt, tts, voice: str, target: float) -> tuple[int, float, list[str]]:
    """``(words in the prompt, cut time in s, the prompt's phonemes)``.

    The prompt ends at the espeak word boundary nearest ``target`` seconds after the second or the
    third word, leaving at least two words unsaid.
    """
    from hf_slm.data.espeak import AlignmentError, align_words

    words = sentence.rstrip(".").split()
    try:
        spans = align_words(sentence, words, utt, tts, voice)
        ends = [s.end for s in spans]
        phones = [s.phonemes.split() for s in spans]
    except AlignmentError:  # fall back on espeak's word events (starts of words)
        starts = [ms / 1000 for ms, _ in utt.word_starts]
        if len(starts) != len(words):
            raise
        ends = [*starts[1:], utt.end_ms / 1000]
        phones = [
            [p.name for p in utt.phonemes if not p.is_pause and a * 1000 <= p.start_ms < b * 1000]
            for a, b in zip(starts, ends)
        ]
    # 2 or 3 words in the prompt, and 2+ words left to continue
    candidates = range(2, max(2, min(3, len(words) - 2)) + 1)
    k = min(candidates, key=lambda j: (abs(ends[j - 1] - target), j))
    return k, ends[k - 1], _clean_phonemes([p for w in phones[:k] for p in w])


def _synthesize_jobs(jobs: list[_Job], out_dir: str, sampling_rate: int) -> list[dict[str, Any]]:
    """Speak a shard's jobs and write their wavs. Runs in a fresh process."""
    from hf_slm.data.espeak import Espeak

    tts = Espeak()
    out = []
    for job in jobs:
        folder = Path(out_dir) / job.task / job.split
        utts = [tts.synthesize(s, job.voice, rate=job.rate, pitch=job.pitch) for s in job.sentences]
        phones = _clean_phonemes([p.name for u in utts for p in u.phonemes if not p.is_pause])
        samples = np.concatenate([u.waveform for u in utts])
        result: dict[str, Any] = {"task": job.task, "split": job.split, "filename": job.filename}
        if job.prompt_seconds is None:
            result["seconds"] = _write_wav(
                folder / f"{job.filename}.wav", samples, tts.sampling_rate, sampling_rate
            )
            result["phonemes"] = phones
        else:
            utt = utts[0]
            k, cut, prompt_phones = _prompt_cut(job.sentences[0], utt, tts, job.voice, job.prompt_seconds)
            prompt = utt.waveform[: int(round(cut * utt.sampling_rate))]
            result["seconds"] = _write_wav(
                folder / f"{job.filename}.wav", prompt, tts.sampling_rate, sampling_rate
            )
            _write_wav(folder / "full" / f"{job.filename}.wav", samples, tts.sampling_rate, sampling_rate)
            result["phonemes"] = prompt_phones
            result["prompt_words"] = k
        out.append(result)
    return out


# --- the build -----------------------------------------------------------------------------------
def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row[c] for c in columns])
    os.replace(tmp, path)


def build_benchmarks(
    out_dir: str | os.PathLike,
    config: BenchmarkConfig | None = None,
    *,
    num_workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the benchmark sets to ``out_dir`` and return a summary of them.

    Args:
        out_dir: the benchmark folder (see the module docstring for its layout).
        config: sizes, seed and voices (default: :class:`BenchmarkConfig`'s defaults).
        num_workers: processes to synthesise with (default: all cores).
        overwrite: rebuild even if ``out_dir`` already holds a build (only the task folders and
            ``benchmarks.json`` are replaced).
        progress: show a progress bar.

    Returns:
        The content of ``out_dir/benchmarks.json``: ``config``, and per task and split the number of
        wavs, pairs (or prompts), voices and seconds of audio (``splits``), plus ``reused`` (True when
        the folder already held this exact build).

    Raises:
        FileExistsError: ``out_dir`` holds something else (another build, or other files) and
            ``overwrite`` is not set.
        ValueError: a size the generator cannot reach (e.g. more lexical pairs than words).

    Example:
        >>> from hf_slm.data.benchmarks import BenchmarkConfig, build_benchmarks
        >>> info = build_benchmarks("bench", BenchmarkConfig(lexical_pairs=10), progress=False)  # doctest: +SKIP
        >>> info["splits"]["lexical"]["test"]["wavs"]  # doctest: +SKIP
        80
    """
    from tqdm.auto import tqdm

    config = config or BenchmarkConfig()
    out = Path(out_dir)
    marker = out / "benchmarks.json"
    if marker.exists() and not overwrite:
        info = json.loads(marker.read_text())
        if json.dumps(info.get("config"), sort_keys=True) == json.dumps(
            json.loads(config.to_json()), sort_keys=True
        ):
            return {**info, "reused": True}
        raise FileExistsError(
            f"{out} already holds benchmarks built with other settings (see {marker}). "
            "Choose another --out, or pass --overwrite to replace them."
        )
    ours = {*BENCHMARK_TASKS, "benchmarks.json", "README.md"}
    if out.exists() and not overwrite and any(p.name not in ours for p in out.iterdir()):
        raise FileExistsError(f"{out} exists and is not a benchmark folder. Choose another --out.")
    if out.exists():
        for name in ours:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)

    plan = plan_benchmarks(config)
    shards = []
    for (task, split), p in plan.items():
        (out / task / split).mkdir(parents=True, exist_ok=True)
        for k in range(math.ceil(len(p.jobs) / config.shard_size)):
            shards.append(p.jobs[k * config.shard_size : (k + 1) * config.shard_size])
    results: dict[str, dict[str, Any]] = {}
    workers = min(num_workers or os.cpu_count() or 1, len(shards))
    # A fresh process per shard (see the module docstring); forkserver forks them cheaply.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["hf_slm.data.benchmarks"])
    total = sum(len(s) for s in shards)
    with (
        tqdm(total=total, unit="wav", desc="synthesising benchmarks", disable=not progress) as bar,
        ProcessPoolExecutor(max_workers=workers, mp_context=ctx, max_tasks_per_child=1) as pool,
    ):
        futures = [pool.submit(_synthesize_jobs, s, str(out), config.sampling_rate) for s in shards]
        for fut in as_completed(futures):
            done = fut.result()
            results.update({(r["task"], r["split"], r["filename"]): r for r in done})
            bar.update(len(done))

    splits: dict[str, dict[str, Any]] = {}
    for task, split in sorted(
        plan, key=lambda k: (BENCHMARK_TASKS.index(k[0]), BENCHMARK_SPLITS.index(k[1]))
    ):
        p = plan[(task, split)]
        folder = out / task / split
        got = [results[(task, split, r["filename"])] for r in p.rows]
        if task == "lexical":
            for row, r in zip(p.rows, got):
                row["phones"], row["length"] = " ".join(r["phonemes"]), len(r["phonemes"])
        if task == "continuation":
            for row, r in zip(p.rows, got):
                row["prompt_text"] = " ".join(row["full_text"].split()[: r["prompt_words"]])
            _write_csv(folder / "prompts.csv", PROMPT_COLUMNS, p.rows)
        else:
            _write_csv(folder / "gold.csv", _GOLD_COLUMNS[task], p.rows)
        _write_csv(
            folder / "phonemes.csv",
            ("filename", "phonemes"),
            [{"filename": r["filename"], "phonemes": " ".join(r["phonemes"])} for r in got],
        )
        n = len(p.rows) if task == "continuation" else len({r["id"] for r in p.rows})
        splits.setdefault(task, {})[split] = {
            "wavs": len(p.rows),
            "prompts" if task == "continuation" else "pairs": n,
            "voices": list(config.voices[split]),
            "seconds": round(sum(r["seconds"] for r in got), 3),
        }
    info = {
        "format_version": BENCHMARK_FORMAT_VERSION,
        "config": json.loads(config.to_json()),
        "splits": splits,
    }
    (out / "README.md").write_text(_readme(info), encoding="utf-8")
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, marker)
    return {**info, "reused": False}


def _readme(info: dict[str, Any]) -> str:
    lines = [
        "# hf-slm benchmark sets",
        "",
        "Spoken by espeak-ng voices that the training corpus never uses; text kept out of the training",
        "stream. Built by `hf-slm data benchmarks` (settings in `benchmarks.json`); evaluate a model with",
        "`hf-slm eval MODEL --task all --data THIS_FOLDER`.",
        "",
        "| task | split | pairs / prompts | wavs | voices | minutes |",
        "|---|---|---|---|---|---|",
    ]
    for task, splits in info["splits"].items():
        for split, s in splits.items():
            n = s.get("pairs", s.get("prompts"))
            lines.append(
                f"| {task} | {split} | {n} | {s['wavs']} | {', '.join(s['voices'])} | {s['seconds'] / 60:.1f} |"
            )
    lines += [
        "",
        "Formats: `gold.csv` as ZeroSpeech 2021 sLM21 (lexical: `filename,correct,id,voice,frequency,word,phones,length`;",
        "syntactic: `filename,correct,id,voice,type,subtype,transcription`; storycloze:",
        "`filename,correct,id,voice,transcription`), `filename` being the wav's stem. `phonemes.csv` gives",
        "every wav's espeak-ng phonemes. `continuation/*/prompts.csv`: `filename,voice,prompt_text,full_text`,",
        "with the whole sentence in `continuation/*/full/`.",
        "",
    ]
    return "\n".join(lines)
