"""The ASR judge: an off-the-shelf recogniser that scores how intelligible speech is.

Models are judged by a recogniser hf-slm did not train: pocketsphinx, with its bundled US English
acoustic model and CMU pronouncing dictionary, and a trigram language model built from the
training text of the corpus (:func:`hf_slm.evaluation.ngram.build_arpa`). pocketsphinx's general
English language model gives 65-75% WER on espeak speech; an in-domain one built from ten
thousand sentences of the corpus grammar gives about 50% on the held-out test voices (from about
40% for en-gb-scotland and en-gb-x-rp to about 65% for en-us-nyc), and about 25% on the en-us
training voices. The test sentences themselves never go into the language model (that would be a
grammar of the answers).

Before decoding, a faint white noise ("dither", 30 dB under the utterance's RMS by default) is
added: it helps the recogniser on clean synthetic audio, whose silences are digital zeros (on
undithered digital silence it even hears words). Its seed comes from the audio's samples, so the
same audio always gives the same transcript.

Example:
    >>> from hf_slm.evaluation.judge import AsrJudge
    >>> judge = AsrJudge.from_texts(corpus["train"]["text"])  # doctest: +SKIP
    >>> judge.evaluate(corpus["test"]["audio"], corpus["test"]["text"])["wer"]  # doctest: +SKIP
    0.27
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jiwer
import numpy as np

from hf_slm.audio import DEFAULT_SAMPLING_RATE, load_audio, to_int16
from hf_slm.evaluation.metrics import word_error_rate
from hf_slm.evaluation.ngram import BOS, EOS, UNK, build_arpa, tokenize

logger = logging.getLogger(__name__)

_JUDGE_FORMAT_VERSION = 1  # bump when the files a judge writes change, to invalidate caches
_ONE_LSB = 1.0 / 32768.0


@cache
def _cmudict() -> dict[str, tuple[str, ...]]:
    """pocketsphinx's CMU dictionary: word -> its dictionary lines (alternatives ``word(2)`` included)."""
    import pocketsphinx

    entries: dict[str, list[str]] = {}
    with open(pocketsphinx.get_model_path("en-us/cmudict-en-us.dict"), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(";;;"):
                continue
            head = line.split(maxsplit=1)[0]
            entries.setdefault(head.split("(", 1)[0], []).append(line)
    return {w: tuple(lines) for w, lines in entries.items()}


def cmudict_words() -> frozenset[str]:
    """The words pocketsphinx's bundled dictionary can pronounce (lowercase).

    Example:
        >>> "garden" in cmudict_words()
        True
    """
    return frozenset(_cmudict())


class AsrJudge:
    """A pocketsphinx recogniser with an in-domain language model, for scoring speech output.

    Build one with :meth:`from_texts` (from the *training* text of the corpus), then
    :meth:`transcribe`, :meth:`transcribe_batch` or :meth:`evaluate`. One decoder is made per
    judge and reused; calls are serialised by a lock, so a judge can be shared between threads
    (without speed-up).

    Attributes:
        lm_path: the ARPA language model file.
        dict_path: the pronunciation dictionary (CMU dictionary lines of the LM's words).
        vocabulary: the words the judge can recognise (sorted).
        oov_words: words of the texts the dictionary cannot pronounce, left out of the LM (sorted).
        dither_db: how far under the utterance's RMS the dither is, in dB (``None``: no dither).

    Example:
        >>> judge = AsrJudge.from_texts(["the dog ran home", "a cat sat on the mat"])  # doctest: +SKIP
        >>> judge.transcribe("dog.wav")  # doctest: +SKIP
        'the dog ran home'
    """

    def __init__(
        self,
        lm_path: str | os.PathLike,
        dict_path: str | os.PathLike,
        *,
        dither_db: float | None = 30.0,
        oov_words: Iterable[str] = (),
        decoder_options: dict[str, Any] | None = None,
    ) -> None:
        import pocketsphinx

        self.lm_path = Path(lm_path)
        self.dict_path = Path(dict_path)
        self.dither_db = dither_db
        self.oov_words = sorted(set(oov_words))
        self.vocabulary = sorted({line.split(maxsplit=1)[0].split("(", 1)[0] for line in self._dict_lines()})
        options = {
            "hmm": pocketsphinx.get_model_path("en-us/en-us"),
            "lm": str(self.lm_path),
            "dict": str(self.dict_path),
            "samprate": DEFAULT_SAMPLING_RATE,
            "loglevel": "FATAL",
            "logfn": os.devnull,
            **(decoder_options or {}),
        }
        config = pocketsphinx.Config(**options)
        self._decoder = pocketsphinx.Decoder(config)
        self._lock = threading.Lock()
        self._tmpdir: str | None = None

    def _dict_lines(self) -> list[str]:
        return [line for line in self.dict_path.read_text(encoding="utf-8").splitlines() if line.strip()]

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        *,
        cache_dir: str | os.PathLike | None = None,
        dither_db: float | None = 30.0,
        order: int = 3,
        vocabulary: Iterable[str] | None = None,
        decoder_options: dict[str, Any] | None = None,
    ) -> AsrJudge:
        """A judge whose language model is built from ``texts`` (pass the TRAIN split's text).

        Args:
            texts: sentences of the training corpus; never the sentences being judged.
            cache_dir (*optional*): where to keep the LM and dictionary; a judge of the same
                texts reuses them. Default: a temporary folder, removed with the judge.
            dither_db (`float`, defaults to 30): dither level under the utterance RMS, in dB;
                ``None`` turns dithering off.
            order (`int`, defaults to 3): n-gram order of the language model.
            vocabulary (*optional*): extra words the judge may recognise though ``texts`` never
                use them (e.g. the corpus lexicon): they get a small unigram probability.
            decoder_options (*optional*): other pocketsphinx settings, e.g. ``{"lw": 8.0}``.

        Words of ``texts`` (or ``vocabulary``) that pocketsphinx's dictionary cannot pronounce
        are left out of the language model (counted as ``<unk>``), listed in ``oov_words`` and
        logged as a warning.

        Example:
            >>> judge = AsrJudge.from_texts(ds["train"]["text"], cache_dir="judge")  # doctest: +SKIP
            >>> judge.oov_words  # doctest: +SKIP
            []
        """
        sentences = [" ".join(tokenize(t)) for t in texts]
        sentences = [s for s in sentences if s]
        if not sentences:
            raise ValueError("no words in the texts: the judge's language model needs training text")
        extra = sorted({w for v in (vocabulary or ()) for w in tokenize(v)})
        words = {w for s in sentences for w in s.split()} | set(extra)
        words -= {BOS, EOS, UNK}
        lexicon = _cmudict()
        oov = sorted(w for w in words if w not in lexicon)
        known = sorted(words - set(oov))
        if not known:
            raise ValueError("none of the words of the texts is in pocketsphinx's dictionary")
        if oov:
            logger.warning(
                "%d word(s) of the judge's texts are not in pocketsphinx's dictionary and are left out "
                "of its language model (it can never recognise them): %s",
                len(oov),
                ", ".join(oov[:20]) + (", ..." if len(oov) > 20 else ""),
            )

        key = hashlib.sha256(
            json.dumps(
                {"version": _JUDGE_FORMAT_VERSION, "order": order, "texts": sorted(sentences), "extra": extra}
            ).encode()
        ).hexdigest()[:16]
        tmpdir = None
        if cache_dir is None:
            tmpdir = tempfile.mkdtemp(prefix="hf-slm-judge-")
            folder = Path(tmpdir)
        else:
            folder = Path(cache_dir) / f"judge-{key}"
        lm_path, dict_path, oov_path = folder / "lm.arpa", folder / "words.dict", folder / "oov.json"
        if not (lm_path.exists() and dict_path.exists() and oov_path.exists()):
            folder.mkdir(parents=True, exist_ok=True)
            build_arpa(sentences, order=order, path=lm_path, vocabulary=known)
            lines = [line for w in known for line in lexicon[w]]
            _atomic_write(dict_path, "\n".join(lines) + "\n")
            _atomic_write(oov_path, json.dumps(oov) + "\n")
        judge = cls(lm_path, dict_path, dither_db=dither_db, oov_words=oov, decoder_options=decoder_options)
        if tmpdir is not None:
            judge._tmpdir = tmpdir
            weakref.finalize(judge, shutil.rmtree, tmpdir, ignore_errors=True)
        return judge

    # ---- decoding -----------------------------------------------------------------------------
    def transcribe(self, audio: Any, sampling_rate: int | None = None) -> str:
        """The words the judge hears in ``audio`` (lowercase, space-separated; ``""`` for none).

        Args:
            audio: anything :func:`hf_slm.audio.load_audio` reads (path, bytes, array, dataset value).
            sampling_rate (*optional*): the rate of ``audio`` when it is an array or tensor.

        Raises:
            AudioError: empty, NaN/inf or unreadable audio.

        Example:
            >>> judge.transcribe(wave, sampling_rate=16000)  # doctest: +SKIP
            'the dog ran home'
        """
        return self._decode(load_audio(audio, sampling_rate, target_sampling_rate=DEFAULT_SAMPLING_RATE))

    def transcribe_batch(
        self, audios: Iterable[Any], sampling_rate: int | None = None, progress: bool = True
    ) -> list[str]:
        """:meth:`transcribe` each of ``audios`` in turn, with a progress bar.

        Example:
            >>> judge.transcribe_batch(ds["test"]["audio"], progress=False)  # doctest: +SKIP
            ['the dolphin swims beside their huge library', ...]
        """
        return self._transcribe_many(audios, sampling_rate, progress)[0]

    def _transcribe_many(
        self, audios: Iterable[Any], sampling_rate: int | None, progress: bool
    ) -> tuple[list[str], float, float]:
        from tqdm.auto import tqdm

        total = len(audios) if hasattr(audios, "__len__") else None
        hypotheses: list[str] = []
        audio_seconds = decode_seconds = 0.0
        for audio in tqdm(audios, total=total, desc="transcribing", unit="utt", disable=not progress):
            wave = load_audio(audio, sampling_rate, target_sampling_rate=DEFAULT_SAMPLING_RATE)
            start = time.perf_counter()
            hypotheses.append(self._decode(wave))
            decode_seconds += time.perf_counter() - start
            audio_seconds += wave.size / DEFAULT_SAMPLING_RATE
        return hypotheses, audio_seconds, decode_seconds

    def _decode(self, wave: np.ndarray) -> str:
        pcm = to_int16(self._dither(wave))
        with self._lock:
            self._decoder.start_utt()
            self._decoder.process_raw(pcm.tobytes(), False, True)
            self._decoder.end_utt()
            hyp = self._decoder.hyp()
        if hyp is None or not hyp.hypstr:
            return ""
        # Fillers (<sil>, [NOISE], ...) are not words, whatever the decoder's version reports.
        words = [w for w in hyp.hypstr.split() if not w.startswith(("<", "["))]
        return " ".join(tokenize(" ".join(words)))

    def _dither(self, wave: np.ndarray) -> np.ndarray:
        if self.dither_db is None:
            return wave
        rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
        # At least one 16-bit step: digital silence gets noise too (undithered, the decoder hears words in it).
        level = max(rms * 10.0 ** (-self.dither_db / 20.0), _ONE_LSB)
        seed = int.from_bytes(hashlib.sha256(wave.tobytes()).digest()[:8], "little")
        noise = np.random.default_rng(seed).standard_normal(wave.size)
        return (wave + noise * level).astype(np.float32)

    # ---- scoring ------------------------------------------------------------------------------
    def evaluate(
        self,
        audios: Iterable[Any],
        references: Sequence[str],
        *,
        sampling_rate: int | None = None,
        groups: Sequence[str] | None = None,
        progress: bool = True,
    ) -> dict[str, Any]:
        """Transcribe ``audios`` and score them against ``references`` (what was meant to be said).

        Args:
            audios: the recordings, one per reference.
            references: the true transcripts; lowercased and stripped of punctuation for scoring.
            sampling_rate (*optional*): the rate of the audios when they are arrays.
            groups (*optional*): a label per utterance (e.g. its voice): adds a WER per label.
            progress: show a progress bar.

        Returns:
            A dict with ``wer`` (corpus-level: all errors over all reference words),
            ``per_utterance`` (each utterance's WER), ``hypotheses``, ``references``,
            ``num_utterances``, ``num_words``, ``audio_seconds``, ``decode_seconds``,
            ``real_time_factor``, and ``per_group`` (label -> WER) when ``groups`` is given.

        Example:
            >>> r = judge.evaluate(ds["test"]["audio"], ds["test"]["text"], groups=ds["test"]["voice"])  # doctest: +SKIP
            >>> round(r["wer"], 2), r["per_group"]["en-us+f3"]  # doctest: +SKIP
            (0.27, 0.1)
        """
        refs = [" ".join(tokenize(r)) for r in references]
        audios = list(audios) if not hasattr(audios, "__len__") else audios
        if len(audios) != len(refs):
            raise ValueError(f"{len(audios)} audios but {len(refs)} references; pass one reference per audio")
        if groups is not None and len(groups) != len(refs):
            raise ValueError(f"{len(groups)} group labels for {len(refs)} utterances")
        hyps, audio_seconds, decode_seconds = self._transcribe_many(audios, sampling_rate, progress)
        result: dict[str, Any] = {
            "wer": word_error_rate(refs, hyps),
            "per_utterance": [_utterance_wer(r, h) for r, h in zip(refs, hyps)],
            "hypotheses": hyps,
            "references": refs,
            "num_utterances": len(refs),
            "num_words": sum(len(r.split()) for r in refs),
            "audio_seconds": audio_seconds,
            "decode_seconds": decode_seconds,
            "real_time_factor": decode_seconds / audio_seconds if audio_seconds else 0.0,
        }
        if groups is not None:
            labels = list(groups)
            result["per_group"] = {
                g: word_error_rate(
                    [r for r, lab in zip(refs, labels) if lab == g],
                    [h for h, lab in zip(hyps, labels) if lab == g],
                )
                for g in sorted(set(labels))
                if any(r for r, lab in zip(refs, labels) if lab == g)
            }
        return result

    def __repr__(self) -> str:
        return (
            f"AsrJudge(vocabulary={len(self.vocabulary)} words, oov_words={len(self.oov_words)}, "
            f"dither_db={self.dither_db}, lm={str(self.lm_path)!r})"
        )


def _utterance_wer(reference: str, hypothesis: str) -> float:
    """One utterance's WER; an empty reference scores 0 if nothing was heard, else 1 per inserted word."""
    if not reference:
        return float(len(hypothesis.split()))
    return float(jiwer.wer(reference, hypothesis))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


__all__ = ["AsrJudge", "cmudict_words"]
