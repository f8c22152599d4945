"""A deterministic English text generator over the corpus lexicon.

It writes varied sentences and short two-sentence stories for the speech corpus, and the
material the benchmarks need, from the same grammar and words:

- word / nonword pairs (sWUGGY-style lexical task),
- grammatical / ungrammatical minimal pairs (sBLIMP-style syntactic task),
- coherent / incoherent story endings (spoken StoryCloze-style),
- questions with answers about a sentence (spoken QA, instruction following).

Sentences are built as :class:`Sentence` structures and rendered to lowercase words without
punctuation (what a transcript holds); :meth:`Sentence.spoken` adds the punctuation that gives
the synthesiser its intonation. The same seed always gives the same text.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from hf_slm.data.lexicon import Lexicon, Noun, Verb, lexicon

__all__ = [
    "NounPhrase",
    "Sentence",
    "TextGenerator",
    "article",
]

_VOWEL_SOUND_EXCEPTIONS = {"one": "a", "uniform": "a", "useful": "a", "unicorn": "a", "hour": "an"}


def article(word: str) -> str:
    """``a`` or ``an`` before ``word``."""
    if word in _VOWEL_SOUND_EXCEPTIONS:
        return _VOWEL_SOUND_EXCEPTIONS[word]
    return "an" if word[0] in "aeiou" else "a"


@dataclass(frozen=True)
class NounPhrase:
    noun: Noun
    plural: bool = False
    determiner: str = "the"  # "the", "a", a possessive, or a number word
    adjectives: tuple[str, ...] = ()

    @property
    def head(self) -> str:
        return self.noun.plural if self.plural and self.noun.plural else self.noun.word

    def words(self) -> list[str]:
        det = self.determiner
        rest = [*self.adjectives, self.head]
        if det == "a":
            det = article(rest[0])
        return ([det] if det else []) + rest

    def __str__(self) -> str:
        return " ".join(self.words())

    @property
    def pronoun(self) -> str:
        if self.plural:
            return "they"
        if self.noun.category == "people":
            return self.noun.gender or "she"
        return "it"


@dataclass(frozen=True)
class Sentence:
    """One clause: subject, verb, optional object, adverb and place, in a tense."""

    subject: NounPhrase
    verb: Verb
    tense: str = "past"  # "past" or "present"
    obj: NounPhrase | None = None
    adverb: str | None = None
    place: tuple[str, NounPhrase] | None = None  # (preposition, noun phrase)
    complement: str | None = None  # an adjective after a copula: "the girl was *hungry*"

    @property
    def verb_form(self) -> str:
        if self.verb.word == "be":
            if self.tense == "past":
                return "were" if self.subject.plural else "was"
            return "are" if self.subject.plural else "is"
        if self.tense == "past":
            return self.verb.past
        return self.verb.word if self.subject.plural else self.verb.third

    def words(self) -> list[str]:
        out = self.subject.words() + [self.verb_form]
        if self.complement:
            out.append(self.complement)
        if self.obj is not None:
            out += self.obj.words()
        if self.adverb:
            out.append(self.adverb)
        if self.place is not None:
            out += [self.place[0], *self.place[1].words()]
        return out

    @property
    def text(self) -> str:
        return " ".join(self.words())

    def spoken(self) -> str:
        """The text as handed to the synthesiser: a full stop gives it sentence intonation."""
        return self.text + "."


class TextGenerator:
    """Deterministic sentences, stories and benchmark material over :func:`lexicon`.

    Example:
        >>> gen = TextGenerator(seed=0)
        >>> s = gen.sentence()
        >>> isinstance(s.text, str) and s.text == s.text.lower()
        True
    """

    def __init__(self, seed: int = 0, lex: Lexicon | None = None) -> None:
        self.rng = random.Random(seed)
        self.lex = lex or lexicon()
        self._nouns_by_cat: dict[str, list[Noun]] = {}
        for n in self.lex.nouns:
            self._nouns_by_cat.setdefault(n.category, []).append(n)
        self._adjs_for: dict[str, list[str]] = {}
        for a in self.lex.adjectives:
            for cat in a.applies_to:
                self._adjs_for.setdefault(cat, []).append(a.word)
        self._verbs = list(self.lex.verbs)

    # ---- building blocks ----------------------------------------------------------------------
    def noun_phrase(
        self, categories: tuple[str, ...], *, allow_plural: bool = True, max_adjectives: int = 2
    ) -> NounPhrase:
        rng = self.rng
        cat = rng.choice(categories)
        noun = rng.choice(self._nouns_by_cat[cat])
        plural = allow_plural and noun.plural is not None and rng.random() < 0.3
        if noun.plural is None:  # mass noun: "the water", "some rice", "my tea"
            det = rng.choice(["the", "the", "some", "my", "her", "his", "their"])
        elif plural:
            det = rng.choice(
                ["the", "the", "the", "some", "many", "my", "our", "their", *self.lex.numbers[1:6]]
            )
        else:
            det = rng.choice(
                ["the", "the", "the", "a", "a", "my", "his", "her", "our", "their", "this", "that"]
            )
        n_adj = 0
        r = rng.random()
        if max_adjectives >= 1 and r < 0.45:
            n_adj = 1
        if max_adjectives >= 2 and r < 0.1:
            n_adj = 2
        adjs: list[str] = []
        pool = self._adjs_for.get(cat, [])
        while len(adjs) < n_adj and pool:
            a = rng.choice(pool)
            if a not in adjs:
                adjs.append(a)
        return NounPhrase(noun, plural, det, tuple(adjs))

    def sentence(self, tense: str | None = None) -> Sentence:
        """A sensible clause: an animate subject, a verb it can do, an object the verb takes."""
        rng = self.rng
        verb = rng.choice(self._verbs)
        subject = self.noun_phrase(verb.subjects)
        obj = self.noun_phrase(verb.objects) if verb.objects else None
        tense = tense or rng.choice(["past", "past", "present"])
        adverb = None
        if rng.random() < 0.25:
            adverb = rng.choice(self.lex.adverbs)
            if adverb == "yesterday" and tense == "present":
                adverb = "today"
        place = None
        if rng.random() < (0.55 if obj is None else 0.3):
            prep = rng.choice(["in", "near", "behind", "at", "beside", "inside"])
            place = (prep, self.noun_phrase(("places",), allow_plural=False, max_adjectives=1))
        return Sentence(subject, verb, tense, obj, adverb, place)

    # ---- corpus text --------------------------------------------------------------------------
    def utterance_text(self, story_fraction: float = 0.2) -> tuple[str, str, str]:
        """One utterance for the corpus: ``(transcript, spoken text, kind)``."""
        if self.rng.random() < story_fraction:
            a, b = self.story()
            return f"{a.text} {b.text}", f"{a.spoken()} {b.spoken()}", "story"
        s = self.sentence()
        return s.text, s.spoken(), "sentence"

    # ---- stories ------------------------------------------------------------------------------
    # Each scenario: a state of the subject, and what the subject does because of it
    # (a verb and the noun categories of its object, () for none).
    SCENARIOS: dict[str, list[tuple[str, tuple[str, ...]]]] = {
        "hungry": [("eat", ("food",)), ("cook", ("food",)), ("bake", ("food",))],
        "thirsty": [("drink", ("drinks",))],
        "tired": [("sleep", ())],
        "happy": [("sing", ()), ("dance", ()), ("laugh", ()), ("smile", ())],
        "sad": [("cry", ())],
        "cold": [("wear", ("clothing",))],
        "bored": [("read", ("writing",)), ("draw", ("animals", "places"))],
    }

    def story(self, scenario: str | None = None) -> tuple[Sentence, Sentence]:
        """Two sentences about one person: a situation, then what they did because of it."""
        scenario = scenario or self.rng.choice(sorted(self.SCENARIOS))
        subject = self._story_subject()
        return self._context(scenario, subject), self._ending(scenario, subject)

    def _story_subject(self) -> NounPhrase:
        subject = self.noun_phrase(("people",), max_adjectives=1)
        moods = {a.word for a in self.lex.adjectives if a.category == "mood"}
        if moods.intersection(subject.adjectives):  # not "the happy boy was sad"
            subject = replace(subject, adjectives=())
        return subject

    def _context(self, scenario: str, subject: NounPhrase) -> Sentence:
        be = Verb("be", "is", "was", category="copula")
        return Sentence(subject, be, "past", complement=scenario)

    def _ending(self, scenario: str, subject: NounPhrase) -> Sentence:
        verb_name, obj_cats = self.rng.choice(self.SCENARIOS[scenario])
        verb = next(v for v in self._verbs if v.word == verb_name)
        obj = self.noun_phrase(obj_cats, max_adjectives=1) if obj_cats else None
        return Sentence(_PronounPhrase.of(subject), verb, "past", obj)

    def story_pair(self) -> dict[str, str]:
        """A context and two endings: one that follows from it, one from another situation."""
        good, bad = self.rng.sample(sorted(self.SCENARIOS), 2)
        subject = self._story_subject()
        return {
            "context": self._context(good, subject).text,
            "good_ending": self._ending(good, subject).text,
            "bad_ending": self._ending(bad, subject).text,
            "scenario": good,
        }

    # ---- lexical pairs ------------------------------------------------------------------------
    def word_nonword_pair(self) -> dict[str, str]:
        """A real word of the lexicon and a pronounceable nonword one sound-letter away."""
        rng = self.rng
        content = (
            [n.word for n in self.lex.nouns]
            + [v.word for v in self.lex.verbs]
            + [a.word for a in self.lex.adjectives]
        )
        content = [w for w in content if len(w) >= 4]
        known = _known_words() | set(self.lex.words)
        for _ in range(1000):
            word = rng.choice(content)
            non = _mutate(word, rng)
            if non and non not in known:
                return {"word": word, "nonword": non}
        raise RuntimeError("could not make a nonword; the lexicon is too small")

    # ---- syntactic minimal pairs --------------------------------------------------------------
    SYNTAX_TYPES = ("agreement", "determiner_noun", "irregular_past", "argument_structure", "word_order")

    def minimal_pair(self, kind: str | None = None) -> dict[str, str]:
        """A grammatical sentence and an ungrammatical one that differs from it in one place.

        Returns ``{"good", "bad", "type", "subtype"}``; ``type`` is one of :attr:`SYNTAX_TYPES`.
        """
        kind = kind or self.rng.choice(self.SYNTAX_TYPES)
        if kind not in self.SYNTAX_TYPES:
            raise ValueError(f"unknown minimal-pair type {kind!r}; choose one of {self.SYNTAX_TYPES}")
        for _ in range(200):
            made = self._break(self.sentence(), kind)
            if made is not None and made[0].text != made[2]:
                good, subtype, bad = made
                return {"good": good.text, "bad": bad, "type": kind, "subtype": subtype}
        raise RuntimeError(f"could not make a {kind!r} pair from this lexicon")

    def _break(self, s: Sentence, kind: str) -> tuple[Sentence, str, str] | None:
        """``(grammatical sentence, subtype, ungrammatical text)``, or None if ``s`` does not fit."""
        rng = self.rng
        n_subj = len(s.subject.words())
        if kind == "agreement":  # "the dogs runs" / "the dog run"
            if s.subject.noun.plural is None:
                return None
            s = replace(s, tense="present")
            words = s.words()
            words[n_subj] = s.verb.third if s.subject.plural else s.verb.word
            return s, "plural_subject" if s.subject.plural else "singular_subject", " ".join(words)
        if kind == "determiner_noun":  # "a dogs" / "these dog"
            if s.subject.noun.plural is None:
                return None
            det = rng.choice(["a", "this", "these"])
            s = replace(s, subject=replace(s.subject, determiner=det, plural=det == "these"))
            bad_subject = replace(s.subject, plural=not s.subject.plural)
            return s, "number_mismatch", " ".join(bad_subject.words() + s.words()[n_subj:])
        if kind == "irregular_past":  # "the boy eated"
            if s.verb.past == _regular_past_of(s.verb.word):
                return None
            s = replace(s, tense="past")
            words = s.words()
            words[n_subj] = _regular_past_of(s.verb.word)
            return s, "overregularized", " ".join(words)
        if kind == "argument_structure":  # "the girl slept the apple"
            if s.obj is not None:
                return None
            obj = self.noun_phrase(("food", "toys", "furniture"), max_adjectives=0)
            words = s.words()
            bad = words[: n_subj + 1] + obj.words() + words[n_subj + 1 :]
            return s, "intransitive_with_object", " ".join(bad)
        if kind == "word_order":  # "the ball red"
            if not s.subject.adjectives:
                pool = self._adjs_for.get(s.subject.noun.category, [])
                s = replace(s, subject=replace(s.subject, adjectives=(rng.choice(pool),)))
            sw = s.subject.words()
            head, adj, prefix = sw[-1], sw[-2], sw[:-2]
            if prefix == ["a"] or prefix == ["an"]:
                prefix = [article(head)]  # "an old dog" -> "a dog old"
            return s, "adjective_after_noun", " ".join([*prefix, head, adj] + s.words()[len(sw) :])
        raise ValueError(kind)

    # ---- questions about a sentence -----------------------------------------------------------
    def question_answers(self, s: Sentence) -> list[dict[str, str]]:
        """Questions a listener can answer from ``s`` alone, with their answers."""
        qa = []
        do = "did" if s.tense == "past" else ("do" if s.subject.plural else "does")
        subj = str(s.subject)
        if s.obj is not None:
            qa.append({"question": f"what {do} {subj} {s.verb.word}", "answer": str(s.obj), "type": "object"})
            who_verb = s.verb_form if s.tense == "past" else s.verb.third
            qa.append({"question": f"who {who_verb} {s.obj}", "answer": subj, "type": "subject"})
        else:
            qa.append(
                {
                    "question": f"who {s.verb_form if s.tense == 'past' else s.verb.third}",
                    "answer": subj,
                    "type": "subject",
                }
            )
        if s.place is not None:
            qa.append(
                {
                    "question": f"where {do} {subj} {s.verb.word}",
                    "answer": f"{s.place[0]} {s.place[1]}",
                    "type": "place",
                }
            )
        qa.append(
            {"question": "how many words did the speaker say", "answer": str(len(s.words())), "type": "count"}
        )
        return qa


class _PronounPhrase(NounPhrase):
    """A noun phrase spoken as its pronoun ("she", "they")."""

    @classmethod
    def of(cls, np_: NounPhrase) -> _PronounPhrase:
        return cls(np_.noun, np_.plural, np_.determiner, np_.adjectives)

    def words(self) -> list[str]:
        return [self.pronoun]


def _regular_past_of(w: str) -> str:
    if w.endswith("e"):
        return w + "d"
    if w.endswith("y") and w[-2] not in "aeiou":
        return w[:-1] + "ied"
    return w + "ed"


_VOWELS = ["a", "e", "i", "o", "u", "ai", "ee", "oo", "ea", "oa", "ou"]
_CONSONANTS = list("bcdfgklmnprstvz")


def _mutate(word: str, rng: random.Random) -> str | None:
    """Change one consonant or one vowel group, keeping the word pronounceable."""
    parts = re.findall(r"[aeiou]+|[^aeiou]+", word)
    idx = [i for i, p in enumerate(parts) if len(p) <= 2]
    if not idx:
        return None
    i = rng.choice(idx)
    p = parts[i]
    if p[0] in "aeiou":
        choices = [v for v in _VOWELS if v != p]
    else:
        if len(p) != 1:
            return None
        choices = [c for c in _CONSONANTS if c != p]
    parts[i] = rng.choice(choices)
    out = "".join(parts)
    return out if out != word else None


@cache
def _known_words() -> frozenset[str]:
    """English words a nonword must not be: the system word list when there is one."""
    for path in ("/usr/share/dict/words", "/usr/share/dict/american-english"):
        p = Path(path)
        if p.exists():
            return frozenset(
                w.strip().lower() for w in p.read_text(errors="ignore").splitlines() if w.strip()
            )
    return frozenset()
