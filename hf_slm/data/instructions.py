"""Instruction data of a speech-aware text LM (audio encoder -> adapter -> text LM -> text).

A speech-aware text LM (Qwen2-Audio, SALMONN style) hears a clip and answers a written instruction
about it in text. This module turns a speech corpus with speaker metadata (the espeak-ng corpus of
``hf-slm data synth``) into such rows, one task per row:

======================  ==============================================================  ======================
task                    instruction (one of several phrasings)                          response
======================  ==============================================================  ======================
``transcribe``          "Transcribe the audio."                                         the transcript
``qa``                  "What is the last word the speaker said?" / first word /        a word, or yes / no
                        'Did the speaker say the word "X"?'
``sex``                 "Is the speaker male or female?"                                male / female
``accent``              "Which accent does the speaker have: american, english, ..."    :data:`ACCENT_GROUPS`
``rate``                "Is the speaker talking slowly, at a normal pace, or fast?"     slow / normal / fast
``count``               "How many words did the speaker say?"                           digits, e.g. ``7``
``speech_presence``     "Is there any speech in this recording?"                        yes (an utterance), no
                                                                                        (a non-speech clip)
======================  ==============================================================  ======================

Held-out phrasings: the last phrasing of each question (:func:`held_out_templates`) never occurs in
the ``train`` split. Evaluation splits (every split not called ``train``) use it for about half of
their rows (the ``held_out_phrasing`` column marks them), so scores tell how well the model follows
an instruction worded in a way it was never trained on, next to the wordings it knows.

Non-speech clips (silence, white and brown noise, mains hum; :func:`nonspeech_clip`) are asked
only whether they hold speech: the answer "no" checks that the model does not hallucinate speech.

:func:`instruction_texts` writes text-only versions of the word tasks (the sentence written out in
place of the audio), in the same chat format (:func:`format_chat`), to pretrain the text LM on the
format and on the answer words before it ever hears audio.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from hf_slm.models.speech_aware_lm.processing_speech_aware_lm import CHAT_TOKENS

__all__ = [
    "ACCENT_ANSWERS",
    "ACCENT_GROUPS",
    "CHAT_PROMPT_TEMPLATE",
    "CHAT_SPECIAL_TOKENS",
    "CHAT_TEMPLATE",
    "NONSPEECH_KINDS",
    "NONSPEECH_SECONDS",
    "QA_QUESTIONS",
    "RATE_THRESHOLDS",
    "TASKS",
    "TEMPLATES",
    "build_instruction_dataset",
    "format_chat",
    "held_out_templates",
    "instruction_features",
    "instruction_texts",
    "nonspeech_clip",
    "rate_label",
]

TASKS = ("transcribe", "qa", "sex", "accent", "rate", "count", "speech_presence")
QA_QUESTIONS = ("last_word", "first_word", "word_presence")  # the three kinds of `qa` question

ACCENT_ANSWERS = ("american", "english", "scottish", "caribbean")


class _AccentGroups(dict):
    """A dict that names the known accents when asked for one it does not know."""

    def __missing__(self, accent: str) -> str:
        raise ValueError(f"unknown accent {accent!r}: the accents with an answer are {sorted(self)}")


ACCENT_GROUPS: dict[str, str] = _AccentGroups(
    {
        "us": "american",
        "new-york": "american",
        "southern-british": "english",
        "received-pronunciation": "english",
        "lancastrian": "english",
        "west-midlands": "english",
        "scottish": "scottish",
        "caribbean": "caribbean",
    }
)

# Speaking rate as espeak's rate factor (words per minute / 175): below the first is "slow", above
# the second "fast". On the synthetic corpus (140-200 wpm) this splits the utterances into thirds.
RATE_THRESHOLDS = (0.92, 1.03)

# The phrasings of each question, keyed by task (by question kind for `qa`). The last phrasing of
# each is held out of the train split. `{word}` is the word asked about.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "transcribe": (
        "Transcribe the audio.",
        "What did the speaker say?",
        "Write down what you hear.",
        "Write out, word for word, what is said in this recording.",
    ),
    "last_word": (
        "What is the last word the speaker said?",
        "Which word does the recording end with?",
        "Tell me the final word that is spoken.",
    ),
    "first_word": (
        "What is the first word the speaker said?",
        "Which word does the recording start with?",
        "Tell me the word that is spoken first.",
    ),
    "word_presence": (
        'Did the speaker say the word "{word}"?',
        'Is the word "{word}" spoken in this recording?',
        'Can you hear the word "{word}" in this clip?',
    ),
    "sex": (
        "Is the speaker male or female?",
        "Is this a male or a female voice?",
        "Tell me whether the person speaking is male or female.",
    ),
    "accent": (
        "Which accent does the speaker have: american, english, scottish or caribbean?",
        "Is the speaker's accent american, english, scottish or caribbean?",
        "Name the accent of the speaker, out of american, english, scottish and caribbean.",
    ),
    "rate": (
        "Is the speaker talking slowly, at a normal pace, or fast?",
        "Is the speech slow, normal or fast?",
        "How quickly does the person speak: slow, normal or fast?",
    ),
    "count": (
        "How many words did the speaker say?",
        "Count the words spoken in this recording.",
        "What is the number of words you hear?",
    ),
    "speech_presence": (
        "Is there any speech in this recording?",
        "Does this audio contain speech?",
        "Is anyone talking in this clip?",
    ),
}

NONSPEECH_KINDS = ("silence", "white", "brown", "hum")
NONSPEECH_SECONDS = (0.5, 5.0)  # the range of a non-speech clip's length
_NOISE_LEVEL = (0.003, 0.1)  # RMS range of the noise and hum clips
_SILENCE_DITHER = 1e-4

# The chat format of both the audio rows (through the model's processor, which puts the audio
# placeholder before the instruction) and the text-only rows.
CHAT_SPECIAL_TOKENS = CHAT_TOKENS  # the speech-aware LM processor's chat tokens, in its order
CHAT_TEMPLATE = "<|user|> {user}<|end|><|assistant|> {response}<|end|>"
CHAT_PROMPT_TEMPLATE = "<|user|> {user}<|end|><|assistant|>"

_TRAIN_SPLIT = "train"
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")  # letters and digits, with apostrophes inside


def rate_label(speed: float) -> str:
    """The speaking-rate answer of an utterance: ``"slow"``, ``"normal"`` or ``"fast"``.

    Args:
        speed (`float`): espeak's rate factor (words per minute / 175; the corpus's ``speed``).

    Returns:
        `str`: ``"slow"`` below ``RATE_THRESHOLDS[0]``, ``"fast"`` above ``RATE_THRESHOLDS[1]``, else
        ``"normal"``.
    """
    low, high = RATE_THRESHOLDS
    if speed < low:
        return "slow"
    if speed > high:
        return "fast"
    return "normal"


def held_out_templates() -> dict[str, str]:
    """The phrasing of each question that the train split never uses (the last of `TEMPLATES`).

    Keys are the tasks, with the `qa` task's three question kinds (`QA_QUESTIONS`) in its place.
    """
    return {key: phrasings[-1] for key, phrasings in TEMPLATES.items()}


def format_chat(user_text: str, response: str | None) -> str:
    """One chat turn: ``"<|user|> {user_text}<|end|><|assistant|> {response}<|end|>"``.

    Args:
        user_text (`str`): what the user writes.
        response (`str`, *optional*): the assistant's answer. `None` gives the prompt only, ending
            right after ``"<|assistant|>"``, where the model is to start answering.
    """
    if response is None:
        return CHAT_PROMPT_TEMPLATE.format(user=user_text)
    return CHAT_TEMPLATE.format(user=user_text, response=response)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


# --- non-speech audio ----------------------------------------------------------------------------
def nonspeech_clip(
    kind: str, seconds: float, rng: np.random.Generator, sampling_rate: int = 16_000
) -> np.ndarray:
    """A clip without speech, at a random level.

    Args:
        kind (`str`): one of `NONSPEECH_KINDS`:

            - ``"silence"``: digital silence with a faint dither (Gaussian, RMS 1e-4);
            - ``"white"``: white Gaussian noise;
            - ``"brown"``: integrated (random-walk) noise, its mean removed, energy mostly below 100 Hz;
            - ``"hum"``: 50 or 60 Hz mains hum with 2-3 harmonics of decreasing strength, over a
              faint white noise (1/30 of its level).

            Noise and hum clips have an RMS level drawn log-uniformly from 0.003 to 0.1.
        seconds (`float`): the clip's length.
        rng (`np.random.Generator`): source of all randomness (the clip is a function of its state).
        sampling_rate (`int`, defaults to 16000): samples per second.

    Returns:
        `np.ndarray` of shape `(round(seconds * sampling_rate),)`, float32, in [-1, 1].
    """
    if kind not in NONSPEECH_KINDS:
        raise ValueError(f"unknown non-speech kind {kind!r}; choose one of {NONSPEECH_KINDS}")
    n = round(seconds * sampling_rate)
    if n < 1:
        raise ValueError(f"a clip needs at least one sample, got {seconds} s at {sampling_rate} Hz")
    if kind == "silence":
        return (rng.standard_normal(n) * _SILENCE_DITHER).astype(np.float32)
    level = math.exp(rng.uniform(math.log(_NOISE_LEVEL[0]), math.log(_NOISE_LEVEL[1])))
    if kind == "white":
        wave = rng.standard_normal(n)
    elif kind == "brown":
        wave = np.cumsum(rng.standard_normal(n))
        wave -= np.linspace(wave[0], wave[-1], n)  # no drift from one end to the other
        wave -= wave.mean()
    else:
        f0 = float(rng.choice([50.0, 60.0]))
        t = np.arange(n) / sampling_rate
        wave = np.zeros(n)
        for k in range(1, 2 + int(rng.integers(2, 4))):  # the fundamental and 2-3 harmonics
            amplitude = 1.0 if k == 1 else rng.uniform(0.15, 0.6) / (k - 1)
            wave += amplitude * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi))
    rms = float(np.sqrt(np.mean(wave**2)))
    wave = wave * (level / max(rms, 1e-12))
    if kind == "hum":
        wave += rng.standard_normal(n) * (level / 30)
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def _flac(wave: np.ndarray, sampling_rate: int) -> bytes:
    import soundfile as sf

    from hf_slm.audio import to_int16

    buf = io.BytesIO()
    sf.write(buf, to_int16(wave), sampling_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


# --- the audio instruction dataset ---------------------------------------------------------------
def instruction_features(sampling_rate: int = 16_000) -> Any:
    """The `datasets.Features` of an instruction split."""
    from datasets import Audio, Features, Value

    return Features(
        {
            "id": Value("string"),
            "source_id": Value("string"),
            "audio": Audio(sampling_rate=sampling_rate),
            "task": Value("string"),
            "subtask": Value("string"),
            "instruction": Value("string"),
            "response": Value("string"),
            "held_out_phrasing": Value("bool"),
            "voice": Value("string"),
            "text": Value("string"),
            "duration": Value("float32"),
        }
    )


_TASK_COLUMNS = {"sex": "speaker_sex", "accent": "accent", "rate": "speed"}


def _available_tasks(columns: Sequence[str]) -> list[str]:
    """The tasks a split's metadata can answer (`sex`, `accent`, `rate` need their columns)."""
    return [t for t in TASKS if t not in _TASK_COLUMNS or _TASK_COLUMNS[t] in columns]


def _apportion(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Split `total` into integer counts proportional to `weights` (largest remainders)."""
    norm = sum(weights.values())
    exact = {k: total * w / norm for k, w in weights.items()}
    counts = {k: math.floor(v) for k, v in exact.items()}
    by_remainder = sorted(weights, key=lambda k: (counts[k] - exact[k], list(weights).index(k)))
    for k in by_remainder[: total - sum(counts.values())]:
        counts[k] += 1
    return counts


class _Cycle:
    """Deals the items of a sequence in random order, reshuffled on every pass (balanced draws)."""

    def __init__(self, items: Sequence[Any], rng: random.Random) -> None:
        self.items, self.rng, self.queue = list(items), rng, []

    def __call__(self) -> Any:
        if not self.queue:
            self.queue = self.rng.sample(self.items, len(self.items))
        return self.queue.pop()


class _Asker:
    """Writes the instruction and response of a task for an utterance of one split."""

    def __init__(self, meta: dict[str, list], evaluation: bool, rng: random.Random) -> None:
        self.meta, self.evaluation, self.rng = meta, evaluation, rng
        self.words = [_words(t) for t in meta["text"]]
        self.questions = _Cycle(QA_QUESTIONS, rng)
        self.absent = _Cycle([True, False], rng)  # word_presence: half the words are not spoken
        self.held_out: dict[str, _Cycle] = {}  # evaluation splits: half the phrasings are held out

    def phrasing(self, key: str, task: str) -> tuple[str, bool]:
        phrasings = TEMPLATES[key]
        if self.evaluation:
            held = self.held_out.setdefault(task, _Cycle([True, False], self.rng))()
            if held:
                return phrasings[-1], True
        return self.rng.choice(phrasings[:-1]), False

    def _absent_word(self, i: int) -> str | None:
        present = set(self.words[i])
        for _ in range(100):
            j = self.rng.randrange(len(self.words))
            if j != i and self.words[j]:
                word = self.rng.choice(self.words[j])
                if word not in present:
                    return word
        return None

    def ask(self, task: str, i: int) -> dict[str, Any]:
        meta, words = self.meta, self.words[i]
        subtask, fill = task, {}
        if task == "transcribe":
            response = meta["text"][i].strip()
        elif task == "qa":
            subtask = self.questions()
            if subtask == "last_word":
                response = words[-1]
            elif subtask == "first_word":
                response = words[0]
            else:
                word = self._absent_word(i) if self.absent() else None
                if word is None:
                    word, response = self.rng.choice(words), "yes"
                else:
                    response = "no"
                fill = {"word": word}
        elif task == "sex":
            response = str(meta["speaker_sex"][i]).lower()
            if response not in ("male", "female"):
                raise ValueError(f"speaker_sex must be 'male' or 'female', got {meta['speaker_sex'][i]!r}")
        elif task == "accent":
            response = ACCENT_GROUPS[meta["accent"][i]]
        elif task == "rate":
            response = rate_label(float(meta["speed"][i]))
        elif task == "count":
            response = str(len(words))
        elif task == "speech_presence":
            response = "yes"
        else:
            raise ValueError(f"unknown task {task!r}; the tasks are {TASKS}")
        template, held = self.phrasing(subtask, task)
        return {
            "task": task,
            "subtask": subtask,
            "instruction": template.format(**fill),
            "response": response,
            "held_out_phrasing": held,
        }


def _plan_rows(
    n_utterances: int,
    tasks: list[str],
    rows_per_utterance: int,
    nonspeech_fraction: float,
    per_task: int | None,
    rng: random.Random,
) -> tuple[list[tuple[str, int]], int]:
    """(task, utterance index) of every speech row, and the number of non-speech rows."""
    if per_task is not None:
        n_no = per_task - per_task // 2 if "speech_presence" in tasks else 0
        rows = []
        for task in tasks:
            utterances = _Cycle(range(n_utterances), rng)
            n = per_task // 2 if task == "speech_presence" else per_task
            rows += [(task, utterances()) for _ in range(n)]
        return rows, n_no
    n_speech = n_utterances * rows_per_utterance
    n_no = round(nonspeech_fraction * n_speech / (1 - nonspeech_fraction))
    n_yes = min(n_no, n_speech)
    weights = {t: 2.0 if t == "transcribe" else 1.0 for t in tasks if t != "speech_presence"}
    quota = {**_apportion(n_speech - n_yes, weights), "speech_presence": n_yes}
    # Each utterance takes `rows_per_utterance` different tasks, drawn in proportion to what is
    # left of each task's quota, so the quotas are met exactly. Near the end only one task may be
    # left: an utterance that then gets a task twice swaps one for a task of another utterance.
    chosen: dict[int, list[str]] = {}
    for i in rng.sample(range(n_utterances), n_utterances):
        chosen[i] = []
        for _ in range(rows_per_utterance):
            open_tasks = [t for t in quota if quota[t] > 0]
            candidates = [t for t in open_tasks if t not in chosen[i]] or open_tasks
            task = rng.choices(candidates, weights=[quota[t] for t in candidates])[0]
            quota[task] -= 1
            chosen[i].append(task)
    for i, mine in chosen.items():
        for a, task in enumerate(mine):
            if mine.index(task) == a:
                continue
            for j in rng.sample(list(chosen), len(chosen)):
                theirs = chosen[j]
                b = next((b for b, t in enumerate(theirs) if t not in mine and task not in theirs), None)
                if j != i and b is not None:
                    mine[a], theirs[b] = theirs[b], task
                    break
    rows = [(task, i) for i, mine in chosen.items() for task in mine]
    return rows, n_no


def _build_split(
    name: str,
    ds: Any,
    *,
    rows_per_utterance: int,
    nonspeech_fraction: float,
    per_task: int | None,
    seed: int,
    sampling_rate: int,
    progress: bool,
    only: Sequence[str] | None = None,
) -> Any:
    import pyarrow as pa
    from datasets import Dataset, DatasetInfo
    from datasets.table import InMemoryTable
    from tqdm.auto import tqdm

    from hf_slm.audio import load_audio
    from hf_slm.data.synth import hash_seed

    evaluation = name != _TRAIN_SPLIT
    rng = random.Random(hash_seed(seed, f"instructions-{name}"))
    np_rng = np.random.default_rng(hash_seed(seed, f"instructions-nonspeech-{name}"))
    if len(ds) == 0:
        raise ValueError(f"split {name!r} has no utterances to make instructions from")
    tasks = [t for t in _available_tasks(ds.column_names) if only is None or t in only]
    if not tasks:
        raise ValueError(
            f"split {name!r} supports none of the tasks {list(only or [])} (columns: {ds.column_names})"
        )
    columns = [
        c for c in ("id", "text", "voice", "duration", *_TASK_COLUMNS.values()) if c in ds.column_names
    ]
    meta = ds.select_columns(columns)[:]
    if "duration" not in meta:
        meta["duration"] = [
            len(load_audio(a, target_sampling_rate=sampling_rate)) / sampling_rate for a in ds["audio"]
        ]
    empty = [meta["id"][i] if "id" in meta else i for i, t in enumerate(meta["text"]) if not _words(t)]
    if empty:
        raise ValueError(f"split {name!r} has utterances without words: {empty[:5]}")

    plan, n_nonspeech = _plan_rows(
        len(ds), tasks, rows_per_utterance, nonspeech_fraction, None if not evaluation else per_task, rng
    )
    asker = _Asker(meta, evaluation, rng)
    rows = [{**asker.ask(task, i), "index": i} for task, i in plan]
    kinds = _Cycle(NONSPEECH_KINDS, rng)
    clips = []
    for k in tqdm(range(n_nonspeech), desc=f"non-speech clips ({name})", disable=not progress):
        kind, seconds = kinds(), float(np_rng.uniform(*NONSPEECH_SECONDS))
        source_id = f"nonspeech-{name}-{k:05d}-{kind}"
        wave = nonspeech_clip(kind, seconds, np_rng, sampling_rate)
        clips.append({"bytes": _flac(wave, sampling_rate), "path": f"{source_id}.flac"})
        template, held = asker.phrasing("speech_presence", "speech_presence")
        rows.append({"task": "speech_presence", "subtask": "speech_presence", "instruction": template,
                     "response": "no", "held_out_phrasing": held, "index": -1 - k, "source_id": source_id,
                     "voice": "", "text": "", "duration": len(wave) / sampling_rate})  # fmt: skip
    rng.shuffle(rows)

    for row in rows:
        i = row["index"]
        if i >= 0:
            row["source_id"] = str(meta["id"][i]) if "id" in meta else f"{name}-{i}"
            row["voice"] = str(meta["voice"][i]) if "voice" in meta else ""
            row["text"] = meta["text"][i]
            row["duration"] = float(meta["duration"][i])
    # The audio of corpus rows is the corpus's own (encoded bytes or paths, never decoded),
    # gathered from its Arrow table; a non-speech clip goes in between as a chunk of its own.
    speech = [r["index"] for r in rows if r["index"] >= 0]
    gathered = ds.select_columns(["audio"]).with_format("arrow")[speech].column("audio")
    clip_array = pa.array(clips, type=gathered.type)
    chunks, run, done = [], 0, 0
    for r in [*rows, None]:
        if r is not None and r["index"] >= 0:
            run += 1
            continue
        if run:
            chunks += gathered.slice(done, run).chunks
            done, run = done + run, 0
        if r is not None:
            chunks.append(clip_array.slice(-1 - r["index"], 1))
    for n, row in enumerate(rows):
        row["id"] = f"{name}-{n:06d}"
    features = instruction_features(sampling_rate)
    schema = features.arrow_schema
    arrays = [
        pa.chunked_array([c.cast(schema.field(k).type) for c in chunks], type=schema.field(k).type)
        if k == "audio"
        else pa.array([r[k] for r in rows], type=schema.field(k).type)
        for k in features
    ]
    # The fingerprint is given, not computed: computing it would hash (serialise) all the audio.
    settings = ["instructions", getattr(ds, "_fingerprint", None), name, len(ds), rows_per_utterance,
                nonspeech_fraction, per_task, seed, sampling_rate, sorted(tasks)]  # fmt: skip
    fingerprint = hashlib.sha256(json.dumps(settings, default=str).encode()).hexdigest()[:16]
    table = InMemoryTable(pa.Table.from_arrays(arrays, schema=schema))
    return Dataset(table, info=DatasetInfo(features=features), split=name, fingerprint=fingerprint)


def build_instruction_dataset(
    corpus: Any,
    *,
    rows_per_utterance: int = 2,
    nonspeech_fraction: float = 0.08,
    per_task: int | None = None,
    seed: int = 0,
    splits: Sequence[str] | None = None,
    sampling_rate: int = 16_000,
    progress: bool = True,
    tasks: Sequence[str] | None = None,
) -> Any:
    """Audio instruction rows of every split of a corpus, as a `datasets.DatasetDict`.

    Args:
        corpus: a corpus with speaker metadata (``hf-slm data synth`` output, or anything
            :func:`~hf_slm.data.load_corpus` reads). `sex`, `accent` and `rate` rows need the
            ``speaker_sex``, ``accent`` and ``speed`` columns; a split without one skips that task.
        rows_per_utterance (`int`, defaults to 2): rows drawn per utterance, each with a different
            task. Over a split, every task but `speech_presence` gets the same share of the speech
            rows, except `transcribe`, which gets twice that.
        nonspeech_fraction (`float`, defaults to 0.08): the share of all rows that are non-speech
            clips (asked whether they hold speech; answer "no"). As many `speech_presence` rows
            ask it of utterances (answer "yes").
        per_task (`int`, *optional*): for evaluation splits (every split but ``train``), this many
            rows per task instead (utterances drawn at random, each at most once per task while the
            split has enough); `speech_presence` has half on utterances, half on non-speech clips.
            Without it, evaluation splits follow the train scheme.
        seed (`int`, defaults to 0): the same corpus, settings and seed give the same rows. Each
            split draws from a stream of its own.
        splits (`Sequence[str]`, *optional*): the splits to build (default: all of the corpus's).
        sampling_rate (`int`, defaults to 16000): the rate of the ``audio`` column.
        progress (`bool`, defaults to `True`): show a progress bar while making non-speech clips.
        tasks (`Sequence[str]`, *optional*): only these tasks (default: all of `TASKS` the corpus
            supports); e.g. ``["transcribe"]`` with ``rows_per_utterance=1, nonspeech_fraction=0``
            gives one ASR row per utterance (the adapter-alignment stage).

    Returns:
        `datasets.DatasetDict`: per split, rows in random order with columns ``id`` (``"{split}-000123"``),
        ``source_id`` (the corpus row's ``id``, or ``"nonspeech-{split}-{k}-{kind}"``), ``audio``
        (16 kHz; a corpus row's audio is its encoded file, copied without decoding), ``task``,
        ``subtask`` (the `qa` question kind, else the task), ``instruction``, ``response``,
        ``held_out_phrasing`` (the instruction is worded as in :func:`held_out_templates`; never
        in ``train``), ``voice`` and ``text`` (``""`` for non-speech clips) and ``duration`` (s).

    Example:
        >>> from datasets import load_from_disk
        >>> data = build_instruction_dataset(load_from_disk("data/corpus-6h"), per_task=60)  # doctest: +SKIP
        >>> data["test"][0]["instruction"], data["test"][0]["response"]  # doctest: +SKIP
        ('Is the speaker male or female?', 'female')
    """
    from datasets import DatasetDict

    from hf_slm.data.corpus import load_corpus

    if rows_per_utterance < 1:
        raise ValueError(f"rows_per_utterance must be >= 1, got {rows_per_utterance}")
    if not 0.0 <= nonspeech_fraction < 1.0:
        raise ValueError(f"nonspeech_fraction must be in [0, 1), got {nonspeech_fraction}")
    unknown_tasks = sorted(set(tasks or ()) - set(TASKS))
    if unknown_tasks:
        raise ValueError(f"unknown tasks {unknown_tasks}; the tasks are {TASKS}")
    if per_task is not None and per_task < 1:
        raise ValueError(f"per_task must be >= 1 (or None for the train scheme), got {per_task}")
    corpus = load_corpus(corpus, sampling_rate=sampling_rate)
    names = list(corpus) if splits is None else list(splits)
    unknown = [s for s in names if s not in corpus]
    if unknown:
        raise ValueError(f"the corpus has no split {unknown[0]!r}; its splits are {list(corpus)}")
    return DatasetDict(
        {
            name: _build_split(
                name,
                corpus[name],
                rows_per_utterance=rows_per_utterance,
                nonspeech_fraction=nonspeech_fraction,
                per_task=per_task,
                seed=seed,
                sampling_rate=sampling_rate,
                progress=progress,
                only=tasks,
            )
            for name in names
        }
    )


# --- text-only instructions ----------------------------------------------------------------------
_TEXT_KINDS = ("transcribe", "count", "last_word", "first_word", "word_presence", "category", "next_number")
_TEXT_TEMPLATES = {
    "transcribe": ("Transcribe this: {s}", "Write this down: {s}", 'Repeat the sentence "{s}".'),
    "count": ('How many words are in: "{s}"?', 'Count the words in: "{s}".'),
    "last_word": ('What is the last word of: "{s}"?', 'Which word does "{s}" end with?'),
    "first_word": ('What is the first word of: "{s}"?', 'Which word does "{s}" start with?'),
    "word_presence": ('Did the sentence "{s}" contain the word "{w}"?', 'Is the word "{w}" in "{s}"?'),
}
# The answer words of the voice tasks, asked as: which of these words is a ... ?
_CATEGORIES = {
    "sex": ("describes whether a speaker is a man or a woman", ("male", "female")),
    "accent": ("names an accent", ACCENT_ANSWERS),
    "rate": ("describes a speaking rate", ("slow", "normal", "fast")),
}


def instruction_texts(corpus_split: Any, *, seed: int = 0, n: int | None = None) -> list[str]:
    """Text-only instruction examples, in the chat format (:func:`format_chat`), for a text LM.

    The word tasks of the audio data with the sentence written out instead of spoken (transcribe
    it, count its words, its first or last word, does it contain a word), plus two kinds whose
    answers are those of the other audio tasks: which of three words names an accent / a speaking
    rate / a speaker's sex (``male``, ``female``, ``american``, ... ``fast``), and which number
    comes after another (``1`` to ``20``). Kinds, and the answers of those two, are dealt in turn,
    so any 140 consecutive examples hold every answer word and every number from 1 to 20.

    Args:
        corpus_split: a split with a ``text`` column (or a list of sentences).
        seed (`int`, defaults to 0): the same sentences and seed give the same examples.
        n (`int`, *optional*): how many examples (default: one per sentence).

    Returns:
        `list[str]`: e.g. ``'<|user|> How many words are in: "the dog runs"?<|end|><|assistant|> 3<|end|>'``.
    """
    from hf_slm.data.synth import hash_seed

    texts = list(corpus_split["text"]) if hasattr(corpus_split, "column_names") else list(corpus_split)
    sentences = [ws for ws in (_words(t) for t in texts) if ws]
    if not sentences:
        raise ValueError("instruction_texts needs sentences with words; the split has none")
    n = len(texts) if n is None else n
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(hash_seed(seed, "instruction-texts"))
    kinds, pick = _Cycle(_TEXT_KINDS, rng), _Cycle(range(len(sentences)), rng)
    absent, numbers = _Cycle([True, False], rng), _Cycle(range(20), rng)
    answers = _Cycle([(c, w) for c, (_, words) in _CATEGORIES.items() for w in words], rng)
    out = []
    for _ in range(n):
        kind = kinds()
        if kind == "category":
            category, answer = answers()
            others = [w for c, (_, words) in _CATEGORIES.items() if c != category for w in words]
            options = [answer, *rng.sample(others, 2)]
            rng.shuffle(options)
            user = f'Which of these words {_CATEGORIES[category][0]}: "{options[0]}", "{options[1]}" or "{options[2]}"?'
            out.append(format_chat(user, answer))
            continue
        if kind == "next_number":
            k = numbers()
            out.append(format_chat(f"What number comes after {k}?", str(k + 1)))
            continue
        words = sentences[pick()]
        fill = {"s": " ".join(words)}
        if kind == "transcribe":
            answer = fill["s"]
        elif kind == "count":
            answer = str(len(words))
        elif kind == "last_word":
            answer = words[-1]
        elif kind == "first_word":
            answer = words[0]
        else:
            fill["w"], answer = rng.choice(words), "yes"
            if absent():
                other = [w for w in sentences[pick()] if w not in words]
                if other:
                    fill["w"], answer = rng.choice(other), "no"
        out.append(format_chat(rng.choice(_TEXT_TEMPLATES[kind]).format(**fill), answer))
    return out
