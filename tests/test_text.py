"""The lexicon and the deterministic text generator, including the benchmark material it makes."""

from __future__ import annotations

import pytest

from hf_slm.data import TextGenerator, lexicon
from hf_slm.data.text import _known_words


def test_lexicon_size_and_categories():
    lex = lexicon()
    assert 500 <= len(lex) <= 2000
    assert 500 <= len(lex.lemmas) <= len(lex)
    cats = set(lex.categories)
    assert {"animals", "people", "food", "places", "vehicles", "clothing"} <= cats
    assert "garden" in lex and "ran" in lex and "geese" in lex
    assert "blorf" not in lex
    # irregular forms are right, not made by rule
    verbs = {v.word: v for v in lex.verbs}
    assert (
        verbs["eat"].past == "ate" and verbs["carry"].third == "carries" and verbs["drop"].past == "dropped"
    )
    nouns = {n.word: n for n in lex.nouns}
    assert (
        nouns["child"].plural == "children"
        and nouns["box"].plural == "boxes"
        and nouns["water"].plural is None
    )


def test_same_seed_same_text_other_seed_other_text():
    a = [TextGenerator(7).utterance_text() for _ in range(1)]
    g1, g2, g3 = TextGenerator(7), TextGenerator(7), TextGenerator(8)
    s1 = [g1.utterance_text() for _ in range(50)]
    s2 = [g2.utterance_text() for _ in range(50)]
    s3 = [g3.utterance_text() for _ in range(50)]
    assert s1 == s2 and s1[0] == a[0]
    assert s1 != s3


def test_sentences_use_only_lexicon_words_and_vary():
    lex = lexicon()
    gen = TextGenerator(0)
    texts = [gen.utterance_text()[0] for _ in range(500)]
    words = [w for t in texts for w in t.split()]
    assert set(words) <= set(lex.words)
    assert len(set(texts)) > 490  # varied
    assert len(set(words)) > 400
    kinds = [
        TextGenerator(1).utterance_text(story_fraction=1.0)[2],
        TextGenerator(1).utterance_text(story_fraction=0.0)[2],
    ]
    assert kinds == ["story", "sentence"]


def test_agreement_in_present_tense():
    gen = TextGenerator(3)
    for _ in range(200):
        s = gen.sentence(tense="present")
        verb = s.words()[len(s.subject.words())]
        assert verb == (s.verb.word if s.subject.plural else s.verb.third)


def test_stories_have_two_sentences_with_a_consistent_pronoun():
    gen = TextGenerator(4)
    for _ in range(50):
        first, second = gen.story()
        assert second.words()[0] in {"he", "she", "they"}
        assert (second.words()[0] == "they") == first.subject.plural


def test_word_nonword_pairs():
    gen = TextGenerator(5)
    known = _known_words()
    assert len(known) > 50_000, "the system word list (apt wamerican) is missing"
    pairs = [gen.word_nonword_pair() for _ in range(200)]
    for p in pairs:
        assert p["word"] in lexicon()
        assert p["nonword"] not in known and p["nonword"] not in lexicon()
        assert p["nonword"].isalpha() and abs(len(p["nonword"]) - len(p["word"])) <= 2


@pytest.mark.parametrize("kind", TextGenerator.SYNTAX_TYPES)
def test_minimal_pairs_differ_minimally(kind):
    gen = TextGenerator(6)
    for _ in range(30):
        p = gen.minimal_pair(kind)
        assert p["type"] == kind and p["good"] != p["bad"]
        good, bad = p["good"].split(), p["bad"].split()
        if kind == "argument_structure":
            assert len(bad) > len(good) and all(w in bad for w in good)
        elif kind == "word_order":
            # the same words in another order ("the red ball" -> "the ball red"; a/an may change)
            assert sorted(good[1:]) == sorted(bad[1:]) and good[1:] != bad[1:]
        else:
            assert len(good) == len(bad)
            assert sum(a != b for a, b in zip(good, bad)) == 1, p


def test_minimal_pair_examples_are_ungrammatical_in_the_expected_way():
    gen = TextGenerator(9)
    p = gen.minimal_pair("irregular_past")
    verbs = {v.past: v for v in lexicon().verbs}
    changed = next(b for a, b in zip(p["good"].split(), p["bad"].split()) if a != b)
    assert changed.endswith("ed") and changed not in verbs
    with pytest.raises(ValueError, match="unknown minimal-pair type"):
        gen.minimal_pair("nonsense")


def test_story_pairs_and_questions():
    gen = TextGenerator(10)
    for _ in range(30):
        p = gen.story_pair()
        assert p["good_ending"] != p["bad_ending"]
        assert p["scenario"] in p["context"]
    s = gen.sentence()
    qa = gen.question_answers(s)
    assert {q["type"] for q in qa} >= {"subject", "count"}
    for q in qa:
        if q["type"] in ("subject", "object", "place"):
            assert q["answer"] in s.text
        if q["type"] == "count":
            assert int(q["answer"]) == len(s.text.split())
