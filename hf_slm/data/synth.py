"""The synthetic speech corpus: deterministic text, spoken by espeak-ng voices, with real word timings.

``synthesize_corpus(out_dir, hours=..., seed=...)`` (the ``hf-slm data synth`` command) writes a
``datasets.DatasetDict`` with ``train`` / ``validation`` / ``test`` splits to ``out_dir``
(``save_to_disk``). Validation and test are spoken only by voices that train never hears, and
their sentences never occur in train.

How it works: the whole corpus is planned up front from the seed (text, voice, rate and pitch of
every utterance), cut into shards, and each shard is synthesised in a fresh worker process
(espeak's output depends on what the process synthesised before, so a fresh process per shard is
what makes the output byte-identical run after run). Finished shards are kept in
``out_dir/.shards`` until the corpus is assembled, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import multiprocessing as mp
import os
import random
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hf_slm.data.text import TextGenerator

__all__ = [
    "TEST_VOICES",
    "TRAIN_VOICES",
    "VALIDATION_VOICES",
    "CorpusItem",
    "SynthConfig",
    "Voice",
    "corpus_features",
    "plan_corpus",
    "synthesize_corpus",
]

# 2: espeak-ng's noise is seeded per utterance (hf_slm.data.espeak), so the audio differs from version 1's
CORPUS_FORMAT_VERSION = 2
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice: a language/accent and a variant (``en-gb-scotland+f4``)."""

    name: str
    accent: str
    speaker_sex: str

    @classmethod
    def parse(cls, name: str) -> Voice:
        base, _, variant = name.partition("+")
        if base not in _ACCENTS:
            raise ValueError(f"unknown espeak-ng English voice {base!r}; choose one of {sorted(_ACCENTS)}")
        if not variant or variant[0] not in "fm" or not variant[1:].isdigit():
            raise ValueError(
                f"voice {name!r} needs a variant +f1..+f5 or +m1..+m8 (it sets the speaker's sex)"
            )
        return cls(name, _ACCENTS[base], "female" if variant[0] == "f" else "male")


_ACCENTS = {
    "en-us": "us",
    "en": "southern-british",
    "en-gb-scotland": "scottish",
    "en-gb-x-rp": "received-pronunciation",
    "en-gb-x-gbclan": "lancastrian",
    "en-gb-x-gbcwmd": "west-midlands",
    "en-029": "caribbean",
    "en-us-nyc": "new-york",
}

# Train hears 12 voices over 7 accents; validation and test each hear voices train never hears
# (new accent-variant pairs, two variants train never hears, and one accent train never hears).
TRAIN_VOICES = (
    "en-us+m1", "en-us+f2", "en+m3", "en+f1", "en-gb-scotland+m2", "en-gb-scotland+f4",
    "en-gb-x-gbclan+m6", "en-gb-x-gbclan+f5", "en-029+f3", "en-029+m7", "en-gb-x-gbcwmd+m4", "en-gb-x-rp+f2",
)  # fmt: skip
VALIDATION_VOICES = ("en-us+f5", "en+m8", "en-gb-x-gbcwmd+f1")
TEST_VOICES = ("en-us+f3", "en-gb-x-rp+m1", "en-us-nyc+f4", "en-gb-scotland+m5")


@dataclass
class SynthConfig:
    """What a corpus is made of. The same config and seed always give the same bytes."""

    hours: float = field(default=1.0, metadata={"help": "total audio to make, in hours (approximate)"})
    seed: int = field(default=0, metadata={"help": "seed of the text, voice, rate and pitch choices"})
    split_fractions: tuple[float, float, float] = field(
        default=(0.8, 0.1, 0.1), metadata={"help": "share of the hours for train, validation, test"}
    )
    voices: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {"train": TRAIN_VOICES, "validation": VALIDATION_VOICES, "test": TEST_VOICES},
        metadata={"help": "espeak-ng voices of each split; validation/test voices must not be in train"},
    )
    story_fraction: float = field(
        default=0.2, metadata={"help": "share of utterances that are two-sentence stories"}
    )
    rate_range: tuple[int, int] = field(
        default=(140, 200), metadata={"help": "speaking rate, words per minute"}
    )
    pitch_range: tuple[int, int] = field(default=(35, 65), metadata={"help": "espeak pitch, 0-100"})
    sampling_rate: int = field(default=16_000, metadata={"help": "output sampling rate in Hz"})
    shard_size: int = field(default=100, metadata={"help": "utterances synthesised per worker task"})

    def __post_init__(self) -> None:
        if self.hours <= 0:
            raise ValueError(f"hours must be positive, got {self.hours}")
        if len(self.split_fractions) != 3 or abs(sum(self.split_fractions) - 1) > 1e-6:
            raise ValueError(f"split_fractions must be three shares summing to 1, got {self.split_fractions}")
        self.voices = {k: tuple(v) for k, v in self.voices.items()}
        for split in SPLITS:
            if not self.voices.get(split):
                raise ValueError(f"no voices given for split {split!r}")
            for v in self.voices[split]:
                Voice.parse(v)
        leaked = set(self.voices["train"]) & (set(self.voices["validation"]) | set(self.voices["test"]))
        if leaked:
            raise ValueError(
                f"voices {sorted(leaked)} are in train and in a held-out split; held-out voices must be new"
            )

    def to_json(self) -> str:
        d = asdict(self)
        d["format_version"] = CORPUS_FORMAT_VERSION
        return json.dumps(d, indent=2, sort_keys=True)


@dataclass(frozen=True)
class CorpusItem:
    id: str
    split: str
    text: str  # the transcript: lowercase words
    spoken: tuple[str, ...]  # the sentences handed to the synthesiser, one by one
    kind: str  # "sentence" or "story"
    voice: str
    rate: int
    pitch: int


def _estimate_seconds(text: str, rate: int) -> float:
    # Fitted on espeak-ng 1.51 output of this generator: our words are short, so espeak says
    # about 1.25x `rate` of them a minute, plus ~0.2 s of silence per utterance.
    return 0.8 * len(text.split()) * 60.0 / rate + 0.2


def plan_corpus(config: SynthConfig) -> dict[str, list[CorpusItem]]:
    """Every utterance of the corpus, decided from the seed alone (no audio is made here)."""
    total = config.hours * 3600.0
    plan: dict[str, list[CorpusItem]] = {}
    train_texts: set[str] = set()
    for split, frac in zip(SPLITS, config.split_fractions):
        voices = config.voices[split]
        rng = random.Random(f"{config.seed}-{split}-voices")
        gen = TextGenerator(seed=hash_seed(config.seed, split))
        target = max(frac * total, 0.0)
        items: list[CorpusItem] = []
        seconds = 0.0
        while seconds < target or len(items) < len(voices):
            text, spoken, kind = gen.utterance_text(config.story_fraction)
            if split != "train" and text in train_texts:
                continue  # held-out splits never repeat a train sentence
            rate = rng.randint(*config.rate_range)
            pitch = rng.randint(*config.pitch_range)
            voice = voices[len(items) % len(voices)]
            sentences = tuple(s.strip() + "." for s in spoken.split(".") if s.strip())
            items.append(
                CorpusItem(f"{split}-{len(items):06d}", split, text, sentences, kind, voice, rate, pitch)
            )
            seconds += _estimate_seconds(text, rate)
            if split == "train":
                train_texts.add(text)
        plan[split] = items
    return plan


def hash_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")


def corpus_features(sampling_rate: int = 16_000):
    """The `datasets.Features` of a corpus split."""
    from datasets import Audio, Features, List, Value

    return Features(
        {
            "id": Value("string"),
            "audio": Audio(sampling_rate=sampling_rate),
            "text": Value("string"),
            "phonemes": Value("string"),
            "words": List(
                {
                    "word": Value("string"),
                    "start": Value("float32"),
                    "end": Value("float32"),
                    "phonemes": Value("string"),
                }
            ),
            "voice": Value("string"),
            "speaker_sex": Value("string"),
            "accent": Value("string"),
            "speed": Value("float32"),
            "pitch": Value("int32"),
            "duration": Value("float32"),
            "kind": Value("string"),
        }
    )


# --- the worker ----------------------------------------------------------------------------------
def _synthesize_shard(items: list[CorpusItem], sampling_rate: int, path: str) -> tuple[str, int, float]:
    """Speak a shard's items and write them as one parquet file (atomically). Runs in a fresh process."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import soundfile as sf

    from hf_slm.audio import load_audio, to_int16
    from hf_slm.data.espeak import Espeak, align_words

    tts = Espeak()
    rows: dict[str, list] = {k: [] for k in corpus_features(sampling_rate)}
    total = 0.0
    for item in items:
        voice = Voice.parse(item.voice)
        waves, words, phonemes, offset_ms = [], [], [], 0
        for sentence in item.spoken:
            utt = tts.synthesize(sentence, item.voice, rate=item.rate, pitch=item.pitch)
            sent_words = [w for w in sentence.rstrip(".").split()]
            for span in align_words(sentence, sent_words, utt, tts, item.voice):
                words.append(
                    {
                        "word": span.word,
                        "start": span.start + offset_ms / 1000,
                        "end": span.end + offset_ms / 1000,
                        "phonemes": span.phonemes,
                    }
                )
            phonemes.append(tts.phonemes(sentence, item.voice))
            waves.append(utt.waveform)
            offset_ms += utt.duration_ms
        # espeak peaks near full scale: leave 1 dB of headroom for the resampler's ringing
        raw = np.concatenate(waves).astype(np.float32) * (0.89 / 32768.0)
        wave = load_audio(raw, sampling_rate=tts.sampling_rate, target_sampling_rate=sampling_rate)
        buf = io.BytesIO()
        sf.write(buf, to_int16(wave), sampling_rate, format="FLAC", subtype="PCM_16")
        duration = len(wave) / sampling_rate
        total += duration
        rows["id"].append(item.id)
        rows["audio"].append({"bytes": buf.getvalue(), "path": f"{item.id}.flac"})
        rows["text"].append(item.text)
        rows["phonemes"].append(" ".join(phonemes))
        rows["words"].append(words)
        rows["voice"].append(item.voice)
        rows["speaker_sex"].append(voice.speaker_sex)
        rows["accent"].append(voice.accent)
        rows["speed"].append(item.rate / 175.0)
        rows["pitch"].append(item.pitch)
        rows["duration"].append(duration)
        rows["kind"].append(item.kind)
    table = pa.Table.from_pydict(rows, schema=corpus_features(sampling_rate).arrow_schema)
    tmp = path + ".tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path, len(items), total


# --- the build -----------------------------------------------------------------------------------
def synthesize_corpus(
    out_dir: str | os.PathLike,
    hours: float = 1.0,
    seed: int = 0,
    *,
    num_workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    config: SynthConfig | None = None,
):
    """Build the synthetic corpus in ``out_dir`` and return it as a `datasets.DatasetDict`.

    Args:
        out_dir: where the DatasetDict is saved (``load_from_disk(out_dir)`` reads it back).
        hours: how much audio to make in all (approximate: the plan estimates durations).
        seed: the same seed gives byte-identical files.
        num_workers: processes to synthesise with (default: all cores).
        overwrite: rebuild even if ``out_dir`` already holds this corpus.
        config: every other setting (voices, split shares, rates); ``hours`` and ``seed`` override it.

    Example:
        >>> from hf_slm.data import synthesize_corpus
        >>> ds = synthesize_corpus("corpus", hours=0.02, seed=0, progress=False)  # doctest: +SKIP
        >>> sorted(ds)  # doctest: +SKIP
        ['test', 'train', 'validation']
    """
    from datasets import load_from_disk
    from tqdm.auto import tqdm

    config = config or SynthConfig()
    config = SynthConfig(**{**asdict(config), "hours": hours, "seed": seed})
    out = Path(out_dir)
    done_marker = out / "synth_config.json"
    if out.exists() and not overwrite:
        if done_marker.exists() and (out / "dataset_dict.json").exists():
            if done_marker.read_text() == config.to_json():
                return load_from_disk(str(out))
            raise FileExistsError(
                f"{out} already holds a corpus built with other settings (see {done_marker}). "
                "Choose another --out, or pass --overwrite to replace it."
            )
        if any(p.name != ".shards" for p in out.iterdir()):
            raise FileExistsError(
                f"{out} exists and is not a corpus folder. Choose another --out, or pass --overwrite."
            )
    if overwrite and out.exists():
        shutil.rmtree(out)
    shard_dir = out / ".shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    plan_file = shard_dir / "config.json"
    if plan_file.exists() and plan_file.read_text() != config.to_json():
        shutil.rmtree(shard_dir)  # shards of another config are of no use
        shard_dir.mkdir(parents=True)
    plan_file.write_text(config.to_json())

    plan = plan_corpus(config)
    tasks = []
    for split in SPLITS:
        items = plan[split]
        for k in range(math.ceil(len(items) / config.shard_size)):
            path = shard_dir / f"{split}-{k:05d}.parquet"
            tasks.append((split, items[k * config.shard_size : (k + 1) * config.shard_size], path))
    todo = [t for t in tasks if not t[2].exists()]
    n_total = sum(len(t[1]) for t in tasks)
    n_done = n_total - sum(len(t[1]) for t in todo)

    if todo:
        workers = num_workers or os.cpu_count() or 1
        # A fresh process per shard (see the module docstring); forkserver forks them cheaply.
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["hf_slm.data.synth"])
        bar = tqdm(total=n_total, initial=n_done, unit="utt", desc="synthesising", disable=not progress)
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, max_tasks_per_child=1) as pool:
            futures = [
                pool.submit(_synthesize_shard, items, config.sampling_rate, str(path))
                for _, items, path in todo
            ]
            for fut in as_completed(futures):
                _, n, seconds = fut.result()
                bar.update(n)
                bar.set_postfix(hours=f"{seconds / 3600:.3f}/shard")
        bar.close()

    dsd = _assemble(tasks, config)
    dsd.save_to_disk(str(out))
    done_marker.write_text(config.to_json())
    shutil.rmtree(shard_dir)
    return load_from_disk(str(out))


def _assemble(tasks, config: SynthConfig):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset, DatasetDict, DatasetInfo

    features = corpus_features(config.sampling_rate)
    out = {}
    for split in SPLITS:
        tables = [pq.read_table(path, schema=features.arrow_schema) for s, _, path in tasks if s == split]
        table = pa.concat_tables(tables).combine_chunks()
        # A fingerprint from the config, not a random one, so that state.json is identical too.
        fingerprint = hashlib.sha256(f"{config.to_json()}:{split}".encode()).hexdigest()[:16]
        info = DatasetInfo(description="hf-slm synthetic speech corpus", features=features)
        out[split] = Dataset(table, info=info, fingerprint=fingerprint)
    return DatasetDict(out)
