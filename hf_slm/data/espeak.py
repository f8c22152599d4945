"""espeak-ng speech synthesis with real word timings, through libespeak-ng.

The espeak-ng command line gives audio but no timings, and no Python package on PyPI wraps
libespeak-ng's event callback, so this module binds the few C functions it needs with ctypes
(written by hand for that reason). Each synthesis returns the waveform at espeak's own rate
(22,050 Hz) and espeak's own events: where every word and every phoneme starts in the audio.
:func:`align_words` turns those into each word's start and end.

libespeak-ng keeps global state and is not thread-safe: use one :class:`Espeak` per process.
Its output also depends on what it synthesised before in the same process (measured with
espeak-ng 1.51: the same text twice gives different samples and lengths; srand, resetting the
voice and Terminate/Initialize do not help), so identical output needs an identical sequence of
calls in a fresh process.

It also draws the noise of its voices from the C library's ``rand()``: one stream for the whole
process, which any other code in it can move (libuuid, for one, reseeds it from the clock and the
process id whenever anything asks it for random bytes), and then the samples change. Every
synthesis therefore reseeds that stream from the utterance itself (text, voice, rate, pitch), so
that its audio depends on nothing else that runs in the process, or on when.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import threading
from dataclasses import dataclass

import numpy as np

__all__ = [
    "AlignmentError",
    "Espeak",
    "EspeakError",
    "EspeakUtterance",
    "PhonemeEvent",
    "WordSpan",
    "align_words",
]

# Values from espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_END = 5
_EVENT_PHONEME = 7
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_WORDGAP = 7
_PHONEMES_IPA = 0x02
_EE_OK = 0


class EspeakError(RuntimeError):
    """libespeak-ng is missing or refused a request."""


class AlignmentError(RuntimeError):
    """espeak's events could not be matched to the words of the text."""


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class PhonemeEvent:
    """One ``espeakEVENT_PHONEME``: a phoneme (IPA; empty for a pause) and where it starts."""

    start_ms: int
    text_start: int  # 0-based offset of the word it belongs to, in the synthesised text
    name: str

    @property
    def is_pause(self) -> bool:
        return self.name.strip("_ ") == ""


@dataclass
class EspeakUtterance:
    waveform: np.ndarray  # int16 samples, mono
    sampling_rate: int
    word_starts: list[tuple[int, int]]  # (audio ms, 0-based text offset) of each espeakEVENT_WORD
    phonemes: list[PhonemeEvent]
    end_ms: int  # where espeak said the utterance ends

    @property
    def duration_ms(self) -> int:
        return int(round(1000 * len(self.waveform) / self.sampling_rate))


@dataclass(frozen=True)
class WordSpan:
    word: str
    start: float  # seconds
    end: float  # seconds
    phonemes: str  # IPA, space-separated


def _utterance_seed(text: str, voice: str, rate: int, pitch: int) -> int:
    """The seed of espeak's noise for one utterance: a function of the utterance alone."""
    key = f"{voice}|{int(rate)}|{int(pitch)}|{text}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little")


def _load_library() -> ctypes.CDLL:
    names = [ctypes.util.find_library("espeak-ng"), "libespeak-ng.so.1", "libespeak-ng.so"]
    for name in names:
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise EspeakError(
        "libespeak-ng was not found. Install it with `apt-get install espeak-ng` "
        "(`make test` and `make demo` do this for you)."
    )


class Espeak:
    """A handle on libespeak-ng for one process.

    Example:
        >>> tts = Espeak()
        >>> utt = tts.synthesize("the dog runs", voice="en-us+f3", rate=170, pitch=50)
        >>> [w.start_ms for w in utt.words]  # doctest: +SKIP
        [0, 131, 380]
    """

    _lock = threading.Lock()

    def __init__(self) -> None:
        lib = _load_library()
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self._lib = lib
        # the C library espeak's rand() comes from: srand() there reseeds the stream it draws from
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        self._libc.srand.argtypes = [ctypes.c_uint]
        self._libc.srand.restype = None
        options = _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, options)
        if rate <= 0:
            raise EspeakError("espeak_Initialize failed: is the espeak-ng-data package installed?")
        self.sampling_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, str]] = []
        # Keep a reference: ctypes callbacks are freed when their Python object is.
        self._callback = _SYNTH_CALLBACK(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None
        self._counts: dict[tuple[str, str], int] = {}

    def _on_audio(self, wav, numsamples, events) -> int:
        if numsamples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            name = (
                ev.id.string.split(b"\0")[0].decode("utf-8", "replace") if ev.type == _EVENT_PHONEME else ""
            )
            self._events.append((ev.type, ev.audio_position, ev.text_position, name))
            i += 1
        return 0

    def set_voice(self, voice: str) -> None:
        """Select a voice such as ``en-us``, ``en-gb-scotland+f3`` or ``en-029+m2``."""
        if voice == self._voice:
            return
        if self._lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise EspeakError(f"espeak-ng has no voice {voice!r}; list them with `espeak-ng --voices=en`.")
        self._voice = voice

    def phonemes(self, text: str, voice: str) -> str:
        """IPA phonemes of ``text`` as the voice's language pronounces it (words separated by spaces)."""
        with self._lock:
            self.set_voice(voice)
            buf = ctypes.create_string_buffer(text.encode("utf-8"))
            ptr = ctypes.c_void_p(ctypes.addressof(buf))
            parts = []
            while ptr.value:
                out = self._lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, _PHONEMES_IPA)
                if out:
                    parts.append(out.decode("utf-8").strip())
            return " ".join(p for p in parts if p)

    def synthesize(self, text: str, voice: str, rate: int = 175, pitch: int = 50) -> EspeakUtterance:
        """Speak ``text`` with a voice, a rate in words per minute and a pitch (0-100)."""
        with self._lock:
            self.set_voice(voice)
            self._lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
            self._lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
            self._lib.espeak_SetParameter(_PARAM_WORDGAP, 0, 0)
            self._chunks, self._events = [], []
            data = text.encode("utf-8") + b"\0"
            buf = ctypes.create_string_buffer(data)
            self._libc.srand(_utterance_seed(text, voice, rate, pitch))
            err = self._lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if err != _EE_OK:
                raise EspeakError(f"espeak_Synth failed with code {err} on {text!r}.")
            wave = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
            # text_position is 1-based.
            words = [(pos, tpos - 1) for kind, pos, tpos, _ in self._events if kind == _EVENT_WORD]
            phonemes = [
                PhonemeEvent(pos, tpos - 1, name)
                for kind, pos, tpos, name in self._events
                if kind == _EVENT_PHONEME
            ]
            duration_ms = int(round(1000 * len(wave) / self.sampling_rate))
            ends = [pos for kind, pos, _, _ in self._events if kind == _EVENT_END]
            end_ms = min(max(ends), duration_ms) if ends else duration_ms
            return EspeakUtterance(wave.astype(np.int16), self.sampling_rate, words, phonemes, end_ms)

    def phoneme_count(self, word: str, voice: str) -> int:
        """How many phonemes espeak says ``word`` has when spoken on its own."""
        key = (word, voice)
        if key not in self._counts:
            utt = self.synthesize(word, voice)
            self._counts[key] = sum(not p.is_pause for p in utt.phonemes)
        return self._counts[key]


def align_words(
    text: str, words: list[str], utt: EspeakUtterance, espeak: Espeak, voice: str
) -> list[WordSpan]:
    """Each word's start and end in ``utt``, from espeak's own phoneme events.

    espeak reports where every phoneme starts and which word it belongs to. A word runs from its
    first phoneme to the start of whatever espeak says next (the next phoneme or a pause).
    espeak sometimes speaks an unstressed word as part of the one before ("in the" becomes one
    word event with the phonemes of both); such a group is split at the phoneme count espeak
    gives each word on its own, counted from the end, where the attached word sits.

    Args:
        text: the text that was synthesised (one sentence).
        words: its words in order, as they appear in ``text`` (lowercase, no punctuation).
    """
    lowered = text.lower()
    char_starts, pos = [], 0
    for w in words:
        i = lowered.find(w, pos)
        if i < 0:
            raise AlignmentError(f"word {w!r} not found in {text!r}")
        char_starts.append(i)
        pos = i + len(w)
    word_at = {c: k for k, c in enumerate(char_starts)}

    events = utt.phonemes
    spoken = [i for i, p in enumerate(events) if not p.is_pause]
    # group phoneme events (by index) under the word whose text offset they carry
    groups: dict[int, list[int]] = {}
    for i in spoken:
        k = word_at.get(events[i].text_start)
        if k is None:
            raise AlignmentError(
                f"a phoneme points at offset {events[i].text_start} of {text!r}, where no word starts"
            )
        groups.setdefault(k, []).append(i)
    if 0 not in groups:
        raise AlignmentError(f"no phoneme belongs to the first word of {text!r}")

    per_word: list[list[int]] = [[] for _ in words]
    heads = sorted(groups)
    for h, nxt in zip(heads, [*heads[1:], len(words)]):
        members = list(range(h, nxt))
        idx = groups[h]
        # split a merged group from its end: attached words take their own phoneme counts
        for k in reversed(members[1:]):
            n = espeak.phoneme_count(words[k], voice)
            if n <= 0 or n >= len(idx):
                raise AlignmentError(f"cannot split the phonemes of {' '.join(words[h:nxt])!r} in {text!r}")
            per_word[k], idx = idx[-n:], idx[:-n]
        per_word[h] = idx

    spans = []
    for w, idx in zip(words, per_word):
        first, last = idx[0], idx[-1]
        start = events[first].start_ms
        end = events[last + 1].start_ms if last + 1 < len(events) else utt.end_ms
        spans.append(WordSpan(w, start / 1000.0, end / 1000.0, " ".join(events[i].name for i in idx)))
    return spans
