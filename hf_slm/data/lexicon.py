"""The lexicon of the synthetic corpus: English words in semantic categories, with their forms.

Every word the text generator can say comes from here. Nouns carry their plural and whether they
are animate (can be the subject of most verbs) or a mass noun; verbs carry their third-person and
past forms and the noun categories they take as objects. ``lexicon()`` returns the whole thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

__all__ = ["Adjective", "Lexicon", "Noun", "Verb", "lexicon"]


@dataclass(frozen=True)
class Noun:
    word: str
    category: str
    plural: str | None  # None for mass nouns ("water", "rice")
    animate: bool = False
    gender: str | None = None  # "he" / "she" for people whose word says so


@dataclass(frozen=True)
class Verb:
    word: str
    third: str
    past: str
    objects: tuple[str, ...] = ()  # noun categories it takes as direct object; () = intransitive
    subjects: tuple[str, ...] = ("people", "animals")
    category: str = "action"


@dataclass(frozen=True)
class Adjective:
    word: str
    category: str
    applies_to: tuple[str, ...]  # noun categories it describes sensibly


# --- nouns -------------------------------------------------------------------------------------
# "word" or "word/plural" for irregular plurals; a trailing "*" marks a mass noun.
_NOUNS: dict[str, str] = {
    "animals": (
        "dog cat bird horse cow sheep/sheep pig goat duck chicken rabbit mouse/mice fox wolf/wolves bear "
        "deer/deer lion tiger elephant monkey frog snake owl goose/geese whale dolphin bee spider turtle "
        "camel zebra donkey squirrel eagle crow swan kitten puppy/puppies parrot"
    ),
    "people": (
        "man/men woman/women boy girl child/children baby/babies teacher doctor farmer driver singer "
        "painter baker nurse sailor pilot king queen student friend neighbor mother father brother "
        "sister grandmother grandfather uncle aunt cook guard writer dancer player captain hunter "
        "fisherman/fishermen soldier artist prince princess"
    ),
    "food": (
        "apple cake egg banana orange carrot potato/potatoes tomato/tomatoes pie cookie "
        "sandwich/sandwiches grape lemon pear peach/peaches plum onion pizza nut berry/berries "
        "cherry/cherries melon pepper bean biscuit muffin pancake sausage bread* cheese* rice* meat* "
        "honey* butter* soup* candy*"
    ),
    "drinks": "water* milk* tea* coffee* juice* lemonade*",
    "furniture": "chair table bed lamp sofa shelf/shelves desk bench cupboard mirror clock carpet",
    "tableware": "cup plate bowl spoon fork knife/knives glass/glasses jar pot kettle bottle basket",
    "clothing": "hat coat shoe sock shirt dress/dresses scarf/scarves glove boot jacket skirt sweater belt",
    "toys": "ball doll kite drum guitar piano balloon puzzle whistle robot",
    "tools": "hammer ladder rope bucket brush broom shovel saw needle umbrella key bag box/boxes",
    "writing": "book letter map picture pencil pen card note newspaper story/stories poem song",
    "nature": (
        "tree flower leaf/leaves stone rock shell feather seed branch/branches mushroom "
        "sun moon star cloud sky sea wind storm rainbow fire grass* sand* snow* rain* ice*"
    ),
    "places": (
        "garden park house kitchen school forest river lake beach city/cities village farm market "
        "shop street road bridge hill mountain field station library church hospital office castle "
        "island cave valley harbor zoo museum restaurant hotel bakery barn yard room tower"
    ),
    "vehicles": "car bus/buses train boat ship bike truck plane taxi tractor wagon rocket canoe van scooter",
    "body": "hand foot/feet head eye ear nose mouth arm leg finger tooth/teeth knee shoulder",
    "time": "morning evening night day week year summer winter autumn",
}
_GENDER = {
    "man": "he", "boy": "he", "king": "he", "father": "he", "brother": "he", "uncle": "he",
    "grandfather": "he", "prince": "he", "fisherman": "he",
    "woman": "she", "girl": "she", "queen": "she", "mother": "she", "sister": "she", "aunt": "she",
    "grandmother": "she", "princess": "she",
}  # fmt: skip

# --- verbs -------------------------------------------------------------------------------------
# "base/past" for irregular pasts. Objects name the noun categories a verb takes.
_PEOPLE = ("people",)
_ALL_ANIMATE = ("people", "animals")
_OBJECTS = ("furniture", "tableware", "clothing", "toys", "tools", "writing")
_VERBS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    # intransitive
    ("run/ran", (), _ALL_ANIMATE), ("walk", (), _ALL_ANIMATE), ("jump", (), _ALL_ANIMATE),
    ("sleep/slept", (), _ALL_ANIMATE), ("sing/sang", (), _PEOPLE), ("dance", (), _PEOPLE),
    ("swim/swam", (), _ALL_ANIMATE), ("laugh", (), _PEOPLE), ("cry", (), _PEOPLE), ("smile", (), _PEOPLE),
    ("sit/sat", (), _ALL_ANIMATE), ("stand/stood", (), _ALL_ANIMATE), ("wait", (), _ALL_ANIMATE),
    ("shout", (), _PEOPLE), ("play", (), _ALL_ANIMATE), ("rest", (), _ALL_ANIMATE), ("work", (), _PEOPLE),
    ("hide/hid", (), _ALL_ANIMATE), ("listen", (), _ALL_ANIMATE), ("whisper", (), _PEOPLE),
    ("travel", (), _PEOPLE), ("yawn", (), _ALL_ANIMATE), ("wander", (), _ALL_ANIMATE),
    ("hurry", (), _ALL_ANIMATE), ("arrive", (), _PEOPLE), ("fall/fell", (), _ALL_ANIMATE),
    ("climb", (), _ALL_ANIMATE), ("cough", (), _PEOPLE), ("dream", (), _ALL_ANIMATE), ("bark", (), ("animals",)),
    # transitive
    ("eat/ate", ("food",), _ALL_ANIMATE), ("drink/drank", ("drinks",), _ALL_ANIMATE),
    ("read/read", ("writing",), _PEOPLE), ("write/wrote", ("writing",), _PEOPLE),
    ("find/found", _OBJECTS + ("animals", "food"), _ALL_ANIMATE),
    ("see/saw", _OBJECTS + ("animals", "people", "vehicles", "nature", "places"), _ALL_ANIMATE),
    ("watch", ("animals", "people", "vehicles", "nature"), _PEOPLE),
    ("hold/held", _OBJECTS + ("animals", "food"), _PEOPLE), ("carry", _OBJECTS + ("food", "animals"), _PEOPLE),
    ("drop", _OBJECTS + ("food",), _PEOPLE), ("throw/threw", ("toys", "nature", "food"), _PEOPLE),
    ("catch/caught", ("toys", "animals"), _ALL_ANIMATE), ("buy/bought", _OBJECTS + ("food", "vehicles"), _PEOPLE),
    ("sell/sold", _OBJECTS + ("food", "vehicles"), _PEOPLE), ("cook", ("food",), _PEOPLE),
    ("wash", ("tableware", "clothing", "vehicles", "animals"), _PEOPLE),
    ("paint", ("furniture", "vehicles", "places", "toys"), _PEOPLE),
    ("open", ("tools", "writing", "tableware"), _PEOPLE), ("close", ("tools", "writing"), _PEOPLE),
    ("break/broke", ("tableware", "furniture", "toys", "tools"), _ALL_ANIMATE),
    ("fix", ("furniture", "toys", "tools", "vehicles"), _PEOPLE), ("build/built", ("places", "toys"), _PEOPLE),
    ("drive/drove", ("vehicles",), _PEOPLE), ("ride/rode", ("vehicles", "animals"), _PEOPLE),
    ("push", ("furniture", "vehicles", "toys"), _ALL_ANIMATE), ("pull", ("furniture", "vehicles", "toys"), _ALL_ANIMATE),
    ("kick", ("toys",), _PEOPLE), ("lose/lost", _OBJECTS, _PEOPLE), ("keep/kept", _OBJECTS + ("animals",), _PEOPLE),
    ("bring/brought", _OBJECTS + ("food",), _ALL_ANIMATE), ("take/took", _OBJECTS + ("food",), _PEOPLE),
    ("clean", ("furniture", "tableware", "places", "vehicles"), _PEOPLE),
    ("love", ("people", "animals", "food", "places"), _ALL_ANIMATE),
    ("like", ("people", "animals", "food", "toys", "places"), _ALL_ANIMATE),
    ("want", _OBJECTS + ("food", "drinks", "animals", "vehicles"), _ALL_ANIMATE),
    ("visit", ("places", "people"), _PEOPLE), ("feed/fed", ("animals", "people"), _PEOPLE),
    ("help", ("people", "animals"), _PEOPLE), ("call", ("people", "animals"), _PEOPLE),
    ("follow", ("people", "animals", "vehicles"), _ALL_ANIMATE), ("chase", ("animals", "people", "toys"), _ALL_ANIMATE),
    ("meet/met", ("people",), _PEOPLE), ("hear/heard", ("animals", "people", "toys", "vehicles"), _ALL_ANIMATE),
    ("smell", ("food", "nature", "drinks"), _ALL_ANIMATE), ("touch", _OBJECTS + ("animals", "nature"), _PEOPLE),
    ("wear/wore", ("clothing",), _PEOPLE), ("fill", ("tableware", "tools"), _PEOPLE),
    ("pick", ("nature", "food"), _PEOPLE), ("plant", ("nature",), _PEOPLE), ("draw/drew", _OBJECTS + ("animals", "people", "places"), _PEOPLE),
    ("count", _OBJECTS + ("animals", "food", "nature"), _PEOPLE), ("bake", ("food",), _PEOPLE),
]  # fmt: skip

# --- adjectives --------------------------------------------------------------------------------
_ANY = tuple(_NOUNS)
_THINGS = _OBJECTS + ("food", "vehicles", "nature", "places", "furniture")
_ADJECTIVES: dict[str, tuple[str, tuple[str, ...]]] = {
    "color": (
        "red blue green yellow black white brown pink purple gray golden silver",
        _OBJECTS + ("animals", "vehicles", "nature", "places", "food"),
    ),
    "size": ("big small little tiny huge tall short long wide heavy", _ANY),
    "age": ("old new young", _ANY),
    "mood": (
        "happy sad angry tired hungry thirsty brave clever kind lazy quiet busy funny gentle proud "
        "shy calm friendly strong weak lucky careful noisy sleepy bored",
        ("people", "animals"),
    ),
    "texture": ("soft hard smooth rough sharp round flat shiny fluffy broken empty full", _THINGS),
    "temperature": ("hot cold warm cool wet dry", _THINGS + ("drinks",)),
    "taste": ("sweet fresh salty sour tasty", ("food", "drinks")),
    "look": ("beautiful ugly strange famous bright dark clean dirty pretty lovely", _ANY),
}

# --- everything else ---------------------------------------------------------------------------
_ADVERBS = (
    "quickly slowly quietly loudly happily sadly carefully suddenly softly gently early late "
    "again today yesterday often always sometimes together alone"
)
_NUMBERS = "one two three four five six seven eight nine ten eleven twelve"
_FUNCTION = (
    "the a an this that these those some many every my his her our their your he she they it we "
    "i you him them us me was were is are and but so because then with to of not did does do "
    "what who where when why how there in on near behind under beside at inside into from for "
    "by over after before very too all no yes up down away home back went go goes going asked "
    "said put got get gets made make makes"
)
_PREPOSITIONS = "in on near behind under beside at inside"


def _split(spec: str) -> list[tuple[str, str | None]]:
    out = []
    for tok in spec.split():
        if "/" in tok:
            a, b = tok.split("/")
            out.append((a, b))
        else:
            out.append((tok, None))
    return out


def _regular_plural(w: str) -> str:
    if w.endswith(("s", "x", "ch", "sh")):
        return w + "es"
    if w.endswith("y") and w[-2] not in "aeiou":
        return w[:-1] + "ies"
    return w + "s"


def _third_person(w: str) -> str:
    if w.endswith(("s", "x", "ch", "sh", "o")) or w == "go":
        return w + "es"
    if w.endswith("y") and w[-2] not in "aeiou":
        return w[:-1] + "ies"
    return w + "s"


def _regular_past(w: str) -> str:
    if w.endswith("e"):
        return w + "d"
    if w.endswith("y") and w[-2] not in "aeiou":
        return w[:-1] + "ied"
    if w in {"drop", "hug", "stop", "plan", "jog", "skip"}:
        return w + w[-1] + "ed"
    return w + "ed"


@dataclass(frozen=True)
class Lexicon:
    """All words of the corpus, by part of speech and semantic category."""

    nouns: tuple[Noun, ...]
    verbs: tuple[Verb, ...]
    adjectives: tuple[Adjective, ...]
    adverbs: tuple[str, ...]
    numbers: tuple[str, ...]
    prepositions: tuple[str, ...]
    function_words: tuple[str, ...]
    _index: dict = field(default_factory=dict, compare=False, repr=False)

    def nouns_in(self, *categories: str) -> list[Noun]:
        return [n for n in self.nouns if n.category in categories]

    @property
    def categories(self) -> list[str]:
        return list(dict.fromkeys(n.category for n in self.nouns))

    @property
    def words(self) -> list[str]:
        """Every surface form the generator can produce (sorted, unique)."""
        forms: set[str] = set()
        for n in self.nouns:
            forms.add(n.word)
            if n.plural:
                forms.add(n.plural)
        for v in self.verbs:
            forms.update((v.word, v.third, v.past))
        forms.update(a.word for a in self.adjectives)
        forms.update(self.adverbs + self.numbers + self.prepositions + self.function_words)
        return sorted(forms)

    @property
    def lemmas(self) -> list[str]:
        """Dictionary forms only (one per noun, verb, adjective, ...)."""
        out = [n.word for n in self.nouns] + [v.word for v in self.verbs] + [a.word for a in self.adjectives]
        out += list(self.adverbs + self.numbers + self.prepositions + self.function_words)
        return sorted(set(out))

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self._word_set()

    def _word_set(self) -> frozenset[str]:
        if "words" not in self._index:
            self._index["words"] = frozenset(self.words)
        return self._index["words"]


@cache
def lexicon() -> Lexicon:
    """The corpus lexicon (built once, then shared).

    Example:
        >>> from hf_slm.data import lexicon
        >>> lex = lexicon()
        >>> "garden" in lex, len(lex) > 500
        (True, True)
    """
    nouns = []
    for cat, spec in _NOUNS.items():
        for word, plural in _split(spec):
            mass = word.endswith("*")
            word = word.rstrip("*")
            nouns.append(
                Noun(
                    word=word,
                    category=cat,
                    plural=None if mass else (plural or _regular_plural(word)),
                    animate=cat in ("people", "animals"),
                    gender=_GENDER.get(word),
                )
            )
    verbs = []
    for spec, objects, subjects in _VERBS:
        base, past = spec.split("/") if "/" in spec else (spec, None)
        verbs.append(
            Verb(
                word=base,
                third=_third_person(base),
                past=past or _regular_past(base),
                objects=objects,
                subjects=subjects,
                category="transitive" if objects else "intransitive",
            )
        )
    adjectives = [
        Adjective(word, cat, applies) for cat, (spec, applies) in _ADJECTIVES.items() for word in spec.split()
    ]
    return Lexicon(
        nouns=tuple(nouns),
        verbs=tuple(verbs),
        adjectives=tuple(adjectives),
        adverbs=tuple(_ADVERBS.split()),
        numbers=tuple(_NUMBERS.split()),
        prepositions=tuple(_PREPOSITIONS.split()),
        function_words=tuple(dict.fromkeys(_FUNCTION.split())),
    )
