"""Speech data: the synthetic corpus, its lexicon and text generator, and loaders for user corpora."""

from hf_slm.data.corpus import CorpusError, load_corpus
from hf_slm.data.lexicon import Lexicon, lexicon
from hf_slm.data.synth import (
    TEST_VOICES,
    TRAIN_VOICES,
    VALIDATION_VOICES,
    SynthConfig,
    Voice,
    plan_corpus,
    synthesize_corpus,
)
from hf_slm.data.text import Sentence, TextGenerator

__all__ = [
    "TEST_VOICES",
    "TRAIN_VOICES",
    "VALIDATION_VOICES",
    "CorpusError",
    "Lexicon",
    "Sentence",
    "SynthConfig",
    "TextGenerator",
    "Voice",
    "lexicon",
    "load_corpus",
    "plan_corpus",
    "synthesize_corpus",
]
