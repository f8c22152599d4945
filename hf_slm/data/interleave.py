"""Training sequences of a speech+text LM from a corpus with word alignments.

Spirit LM (Nguyen et al. 2024) trains one LM on text-only, speech-only and *interleaved*
sequences: an utterance that switches between its words as text and its words as speech units at
random word boundaries, each span opened by a `[TEXT]` or `[SPEECH]` marker. SpeechGPT / VoxtLM add
paired task sequences (ASR: speech then its transcript; TTS: text then its speech). This module
builds all five kinds from a corpus whose rows carry their words with start / end times (the
espeak-ng corpus of `hf-slm data synth` does, as would a forced-aligned real corpus) and the
de-duplicated units of each clip with their run lengths, mixed by recipe weights.

The layouts are those of the processor's task templates (`SpeechTextLMProcessor`), so every prompt
the processor builds ends where the model learned to answer.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

__all__ = ["KINDS", "MixtureConfig", "build_mixture", "interleave", "word_unit_spans"]

KINDS = ("interleaved", "asr", "tts", "text_only", "speech_only")


@dataclass
class MixtureConfig:
    """Weights of the five kinds of sequences and the interleaving settings.

    Args:
        interleaved, asr, tts, text_only, speech_only (`float`): relative weights of each kind; each
            sequence drawn picks its kind with these probabilities (they need not sum to 1).
        speech_ratio (`float`, defaults to 0.5): the share of an interleaved sequence's words that
            are spoken (span lengths are drawn so that this holds on average).
        mean_span_words (`float`, defaults to 3.0): mean length of a span, in words (geometric).
        paired_span_prob (`float`, defaults to 0.5): the chance that an ASR / TTS sequence pairs a
            random span of 1 to `max_span_words` words (its units and its text) instead of the whole
            utterance: many short, easy pairs from which the model learns which units spell which
            words before it has to align whole sentences.
        max_span_words (`int`, defaults to 4): the longest such span.
        views (`int`, defaults to 4): sequences drawn per utterance (each with its own kind and
            switch points), so a corpus gives several different mixes.
        seed (`int`, defaults to 0): the draws are deterministic given the seed.
    """

    interleaved: float = 0.3
    asr: float = 0.25
    tts: float = 0.25
    text_only: float = 0.1
    speech_only: float = 0.1
    speech_ratio: float = 0.5
    mean_span_words: float = 3.0
    paired_span_prob: float = 0.5
    max_span_words: int = 4
    views: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        weights = [getattr(self, k) for k in KINDS]
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"mixture weights must be >= 0 and not all 0, got {dict(zip(KINDS, weights))}")
        if not 0.0 <= self.speech_ratio <= 1.0:
            raise ValueError(f"speech_ratio must be in [0, 1], got {self.speech_ratio}")
        if self.mean_span_words < 1:
            raise ValueError(f"mean_span_words must be >= 1, got {self.mean_span_words}")
        if not 0.0 <= self.paired_span_prob <= 1.0:
            raise ValueError(f"paired_span_prob must be in [0, 1], got {self.paired_span_prob}")
        if self.max_span_words < 1:
            raise ValueError(f"max_span_words must be >= 1, got {self.max_span_words}")
        if self.views < 1:
            raise ValueError(f"views must be >= 1, got {self.views}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MixtureConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown mixture settings {unknown}: the settings are {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def word_unit_spans(
    words: list[dict[str, Any]], durations: list[int], frame_rate: float
) -> list[tuple[int, int]]:
    """For each aligned word, the `[start, end)` range of the de-duplicated units that voice it.

    A unit belongs to the word in which its run starts; units before the first word's start (a
    leading silence) go to the first word and those after the last word to the last one, so the
    spans tile the whole unit sequence.
    """
    if not words:
        return []
    starts = np.concatenate([[0], np.cumsum(durations)[:-1]]) if len(durations) else np.zeros(0)
    bounds = [
        int(np.searchsorted(starts, round(float(w["start"]) * frame_rate), side="left")) for w in words[1:]
    ]
    edges = [0, *bounds, len(durations)]
    edges = list(np.maximum.accumulate(edges))  # alignments never run backwards
    return [(int(edges[i]), int(edges[i + 1])) for i in range(len(words))]


def _span_lengths(n_words: int, rng: random.Random, config: MixtureConfig, first_speech: bool) -> list[int]:
    """Alternating span lengths (words) covering `n_words`, speech spans longer when speech_ratio > 0.5."""
    r = config.speech_ratio
    mean = {
        True: max(1.0, 2 * config.mean_span_words * r),
        False: max(1.0, 2 * config.mean_span_words * (1 - r)),
    }
    spans, speech, left = [], first_speech, n_words
    while left > 0:
        p = 1.0 / mean[speech]  # geometric with this mean, at least one word
        n = 1 + int(math.log(1.0 - rng.random()) / math.log(1.0 - p)) if p < 1.0 else 1
        n = min(n, left)
        spans.append(n)
        left -= n
        speech = not speech
    return spans


def interleave(
    word_ids: list[list[int]],
    word_units: list[list[int]],
    rng: random.Random,
    config: MixtureConfig,
    markers: dict[str, int],
) -> list[int]:
    """One interleaved sequence (no begin / end token): spans of words alternate between their text
    ids and their unit ids, each span opened by its marker; the first span's modality is drawn."""
    first_speech = rng.random() < config.speech_ratio
    out, i, speech = [], 0, first_speech
    for n in _span_lengths(len(word_ids), rng, config, first_speech):
        out.append(markers["[SPEECH]"] if speech else markers["[TEXT]"])
        for j in range(i, i + n):
            out += word_units[j] if speech else word_ids[j]
        i += n
        speech = not speech
    return out


def build_mixture(
    units: Any,
    processor: Any,
    config: MixtureConfig | None = None,
    frame_rate: float = 50.0,
    progress: bool = True,
) -> Any:
    """The mixed training sequences of one split, as a `datasets.Dataset` (`input_ids`, `kind`, `id`).

    Args:
        units: a `datasets.Dataset` with `units` and `durations` (de-duplicated units of each clip, from
            `SpeechTextLMForCausalLM.encode_dataset`), `text`, and `words` (`word`, `start`, `end`)
            for interleaving.
        processor: the model's `SpeechTextLMProcessor` (text token ids, marker and unit ids).
        config: the weights and interleaving settings.
        frame_rate: unit frames per second of the tokenizer (durations are in frames).
    """
    from datasets import Dataset
    from tqdm.auto import tqdm

    config = config or MixtureConfig()
    spans_needed = config.interleaved > 0 or config.paired_span_prob > 0
    needed = {"units", "durations", "text"} | ({"words"} if spans_needed else set())
    missing = sorted(needed - set(units.column_names))
    if missing:
        raise ValueError(
            f"the unit dataset lacks {missing} (it has {units.column_names}): encode the corpus with "
            "SpeechTextLMForCausalLM.encode_dataset; interleaving needs the corpus's word alignments ('words')"
        )
    rng = random.Random(config.seed)
    tok = processor.tokenizer
    bos, eos = tok.bos_token_id, tok.eos_token_id
    m = {name: processor.marker_id(name) for name in ("[TEXT]", "[SPEECH]", "[ASR]", "[TTS]")}
    offset = processor.unit_offset
    kinds = [k for k in KINDS if getattr(config, k) > 0]
    weights = [getattr(config, k) for k in kinds]
    rows: dict[str, list] = {"input_ids": [], "kind": [], "id": []}
    skipped = 0
    columns = ["units", "durations", "text"] + (["words"] if "words" in units.column_names else [])
    ids_col = units["id"] if "id" in units.column_names else [str(i) for i in range(len(units))]
    for n, row in enumerate(
        tqdm(units.select_columns(columns), desc="mixing sequences", disable=not progress)
    ):
        unit_ids = [u + offset for u in row["units"]]
        text_ids = processor.text_ids(row["text"].lower())
        words = row.get("words") or []
        spans = word_unit_spans(words, row["durations"], frame_rate) if words else []
        aligned = len(words) >= 2 and all(a < b for a, b in spans)
        word_ids = [processor.text_ids(w["word"].lower()) for w in words] if aligned else []
        for _ in range(config.views):
            kind = rng.choices(kinds, weights)[0]
            if kind == "interleaved":
                if not aligned:
                    skipped += 1  # an alignment that gives a word no unit: fall back to a paired sequence
                    kind = rng.choice([k for k in kinds if k != "interleaved"] or ["asr"])
                else:
                    body = interleave(word_ids, [unit_ids[a:b] for a, b in spans], rng, config, m)
            pair_units, pair_text = unit_ids, text_ids
            if kind in ("asr", "tts") and aligned and rng.random() < config.paired_span_prob:
                width = rng.randint(1, min(config.max_span_words, len(words)))
                i = rng.randrange(len(words) - width + 1)
                pair_units = unit_ids[spans[i][0] : spans[i + width - 1][1]]
                pair_text = [t for w in word_ids[i : i + width] for t in w]
            if kind == "asr":
                body = [m["[ASR]"], m["[SPEECH]"], *pair_units, m["[TEXT]"], *pair_text]
            elif kind == "tts":
                body = [m["[TTS]"], m["[TEXT]"], *pair_text, m["[SPEECH]"], *pair_units]
            elif kind == "text_only":
                body = [m["[TEXT]"], *text_ids]
            elif kind == "speech_only":
                body = [m["[SPEECH]"], *unit_ids]
            rows["input_ids"].append([bos, *body, eos])
            rows["kind"].append(kind)
            rows["id"].append(ids_col[n])
    if skipped and progress:
        print(f"{skipped} interleaved draws fell back to paired sequences (a word with no unit)")
    return Dataset.from_dict(rows)
