"""A word n-gram language model in ARPA format, for the ASR judge's decoder.

:func:`build_arpa` counts the n-grams of some sentences and writes an interpolated Kneser-Ney
model (Chen & Goodman 1998, one discount per order) as an ARPA file, the text format that
pocketsphinx, KenLM and SRILM read.

It is written here by hand: no maintained PyPI package writes ARPA files without compiling KenLM
(a C++ build), and a corpus of a few thousand sentences needs a few hundred lines of Python, not
a toolkit.

How the model is laid out in ARPA form: for an n-gram ``h w`` seen in the text, the file stores
the full interpolated probability ``p(w|h) = max(c(h w) - D, 0) / c(h) + gamma(h) * p(w|h')``
(``h'`` is ``h`` without its first word), and the backoff weight of the context ``h`` is
``gamma(h) = D * N1+(h .) / c(h)``, the mass the discount took away. A reader that backs off from an
unseen ``h w`` to ``gamma(h) * p(w|h')`` then gets exactly the interpolated model. The highest
order uses raw counts; lower orders use continuation counts (how many different words precede
the n-gram), except n-grams that start with ``<s>``, which nothing can precede, and keep their raw
counts. Unigrams are interpolated with the uniform distribution over the vocabulary (every word,
``</s>`` and ``<unk>``), so every word of the vocabulary gets a probability and they sum to 1.
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
_LOG10_ZERO = -99.0  # what ARPA files give <s>, which is never predicted
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def tokenize(text: str) -> list[str]:
    """Lowercase words of ``text``, punctuation dropped (apostrophes inside words kept).

    Example:
        >>> tokenize("The dog's ball, rolled!")
        ['the', "dog's", 'ball', 'rolled']
    """
    return _WORD.findall(text.lower())


def build_arpa(
    sentences: Iterable[str],
    order: int = 3,
    path: str | os.PathLike = "lm.arpa",
    *,
    vocabulary: Iterable[str] | None = None,
) -> Path:
    """Write an interpolated Kneser-Ney n-gram model of ``sentences`` to ``path`` (ARPA format).

    Args:
        sentences: one sentence per item; words are lowercased and punctuation is dropped.
        order (`int`, defaults to 3): the n of the n-grams (1 to 6).
        path: the file to write (its folder is created).
        vocabulary (*optional*): the words the model may use. Words of ``sentences`` outside it
            are counted as ``<unk>``; words of it that ``sentences`` never use still get a
            unigram probability (from the uniform share). Default: the words of ``sentences``.

    Returns:
        The path written. The same sentences always give the same bytes.

    Raises:
        ValueError: no words in ``sentences``, or an ``order`` out of range.

    Example:
        >>> from hf_slm.evaluation.ngram import build_arpa
        >>> p = build_arpa(["the dog ran", "the cat ran home"], order=2, path="/tmp/lm.arpa")
        >>> p.read_text().splitlines()[2:4]
        ['ngram 1=8', 'ngram 2=8']
    """
    if not 1 <= order <= 6:
        raise ValueError(f"order must be between 1 and 6, got {order}")
    vocab = None if vocabulary is None else {w for w in vocabulary if w not in (BOS, EOS, UNK)}
    counts: list[dict[tuple[str, ...], int]] = [defaultdict(int) for _ in range(order + 1)]
    n_sentences = 0
    for sentence in sentences:
        words = tokenize(sentence)
        if not words:
            continue
        if vocab is not None:
            words = [w if w in vocab else UNK for w in words]
        n_sentences += 1
        tokens = [BOS, *words, EOS]
        # Every n-gram of every order (none that would start before <s>); raw counts.
        for n in range(1, order + 1):
            for i in range(len(tokens) - n + 1):
                counts[n][tuple(tokens[i : i + n])] += 1
    if n_sentences == 0:
        raise ValueError("no words to build a language model from: every sentence is empty")
    words_seen = {g[0] for g in counts[1]} - {BOS, EOS, UNK}
    vocab = words_seen if vocab is None else vocab | words_seen
    predicted = sorted(vocab) + [EOS, UNK]  # what the model can predict (never <s>)

    adjusted = _adjusted_counts(counts, order)
    discounts = [0.0] + [_discount(adjusted[n]) for n in range(1, order + 1)]

    # Per context h of order n: total count c(h) and number of distinct continuations N1+(h .).
    totals: list[dict[tuple[str, ...], int]] = [defaultdict(int) for _ in range(order + 1)]
    types: list[dict[tuple[str, ...], int]] = [defaultdict(int) for _ in range(order + 1)]
    for n in range(1, order + 1):
        for gram, c in adjusted[n].items():
            totals[n][gram[:-1]] += c
            types[n][gram[:-1]] += 1

    def gamma(n: int, context: tuple[str, ...]) -> float:
        return discounts[n] * types[n][context] / totals[n][context]

    # Interpolated probabilities of the seen n-grams, lowest order first.
    prob: list[dict[tuple[str, ...], float]] = [{} for _ in range(order + 1)]
    uniform = 1.0 / len(predicted)
    g0 = gamma(1, ())
    for w in predicted:
        c = adjusted[1].get((w,), 0)
        prob[1][(w,)] = max(c - discounts[1], 0.0) / totals[1][()] + g0 * uniform

    def lower(gram: tuple[str, ...]) -> float:
        """p(w | h) for any gram = h + (w,), backing off through the seen n-grams."""
        n = len(gram)
        if gram in prob[n]:
            return prob[n][gram]
        context = gram[:-1]
        return (gamma(n, context) if context in totals[n] else 1.0) * lower(gram[1:])

    for n in range(2, order + 1):
        for gram in sorted(adjusted[n]):
            c = adjusted[n][gram]
            context = gram[:-1]
            prob[n][gram] = max(c - discounts[n], 0.0) / totals[n][context] + gamma(n, context) * lower(
                gram[1:]
            )

    return _write(Path(path), order, prob, totals, gamma)


def _adjusted_counts(counts: list[dict[tuple[str, ...], int]], order: int) -> list[dict]:
    """Raw counts at the highest order, continuation counts below (raw for grams starting at <s>)."""
    adjusted: list[dict[tuple[str, ...], int]] = [{} for _ in range(order + 1)]
    adjusted[order] = dict(counts[order])
    for n in range(1, order):
        cont: dict[tuple[str, ...], int] = defaultdict(int)
        for gram in counts[n + 1]:
            cont[gram[1:]] += 1
        for gram, c in counts[n].items():
            if gram[0] == BOS:
                if n > 1:  # the unigram <s> is a context only, never predicted
                    adjusted[n][gram] = c
            else:
                adjusted[n][gram] = cont[gram]
    return adjusted


def _discount(counts: dict[tuple[str, ...], int]) -> float:
    """Chen & Goodman's single discount ``n1 / (n1 + 2 n2)``, 0.5 when a count-of-counts is 0."""
    n1 = sum(1 for c in counts.values() if c == 1)
    n2 = sum(1 for c in counts.values() if c == 2)
    if n1 == 0 or n2 == 0:
        return 0.5
    return n1 / (n1 + 2 * n2)


def _write(path: Path, order: int, prob, totals, gamma) -> Path:
    sections: list[list[str]] = []
    for n in range(1, order + 1):
        grams = sorted(prob[n])
        if n == 1:
            grams = sorted([*grams, (BOS,)])
        lines = []
        for gram in grams:
            logp = _LOG10_ZERO if gram == (BOS,) else math.log10(prob[n][gram])
            line = f"{logp:.6f}\t{' '.join(gram)}"
            if n < order and gram in totals[n + 1]:  # a context of a higher order: its backoff weight
                line += f"\t{math.log10(gamma(n + 1, gram)):.6f}"
            lines.append(line)
        sections.append(lines)
    out = ["", "\\data\\"]
    out += [f"ngram {n}={len(lines)}" for n, lines in enumerate(sections, start=1)]
    for n, lines in enumerate(sections, start=1):
        out += ["", f"\\{n}-grams:", *lines]
    out += ["", "\\end\\", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(out), encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_arpa_counts(path: str | os.PathLike) -> dict[int, int]:
    """The ``ngram N=count`` lines of an ARPA file's header, as ``{N: count}``.

    Example:
        >>> read_arpa_counts(build_arpa(["a b"], order=2, path="/tmp/lm.arpa"))
        {1: 5, 2: 3}
    """
    counts: dict[int, int] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("ngram "):
                n, c = line[len("ngram ") :].split("=")
                counts[int(n)] = int(c)
            elif line.endswith("-grams:"):
                break
    return counts


__all__ = ["BOS", "EOS", "UNK", "build_arpa", "read_arpa_counts", "tokenize"]
