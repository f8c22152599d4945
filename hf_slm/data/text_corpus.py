"""Text views of a speech corpus, and word-level tokenizers for them.

Two uses: the text LM that warm-starts a speech LM (TWIST) is trained on the corpus's words, and
the topline of a speech LM is the same backbone trained on the corpus's phoneme transcriptions
(one token per phoneme, no word boundaries: what a perfect unit tokenizer would give).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["FIELDS", "build_subword_tokenizer", "build_word_tokenizer", "phoneme_string", "text_dataset"]

FIELDS = ("text", "phonemes")
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")


def phoneme_string(words: list[dict[str, Any]]) -> str:
    """Space-separated phonemes of an utterance's aligned words, without word boundaries."""
    return " ".join(w["phonemes"] for w in words if w.get("phonemes"))


def text_dataset(corpus: Any, field: str = "text") -> Any:
    """A `DatasetDict` with one `text` column per split: the words, or the phonemes (`field`)."""
    from datasets import DatasetDict

    if field not in FIELDS:
        raise ValueError(f"field must be one of {FIELDS}, got {field!r}")
    out = {}
    for split, ds in corpus.items():
        if field == "phonemes":
            if "words" not in ds.column_names:
                raise ValueError(
                    f"split {split!r} has no word alignments ('words' column) to take phonemes from"
                )
            texts = [phoneme_string(w) for w in ds["words"]]
        else:
            texts = [t.lower() for t in ds["text"]]
        out[split] = ds.select_columns([c for c in ("id", "voice") if c in ds.column_names]).add_column(
            "text", texts
        )
    return DatasetDict(out)


def build_word_tokenizer(texts: Any, out: str | Path | None = None) -> Any:
    """A whitespace word-level tokenizer over ``texts`` (a `PreTrainedTokenizerFast`).

    Ids 0-3 are `<pad>`, `<s>`, `</s>`, `<unk>`; every encoding starts with `<s>`. Built with the
    `tokenizers` library, so no download is needed.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS)))
    return _wrap(tok, out)


def build_subword_tokenizer(
    texts: Any,
    vocab_size: int = 1000,
    out: str | Path | None = None,
    special_tokens: Sequence[str] | None = None,
) -> Any:
    """A lower-casing WordPiece tokenizer trained on ``texts`` (a `PreTrainedTokenizerFast`).

    Unlike the word-level tokenizer, it spells any word, seen or not, in pieces (``##`` marks a
    piece inside a word), so text LMs built on it can score nonwords and read new sentences.
    Ids 0-3 are `<pad>`, `<s>`, `</s>`, `<unk>`; every encoding starts with `<s>`.

    Args:
        special_tokens (`Sequence[str]`, *optional*): more special tokens (e.g. the chat tokens of
            :data:`~hf_slm.data.instructions.CHAT_SPECIAL_TOKENS`), given the ids after `<unk>` and
            always kept whole. The tokenizer is trained on ``texts`` with them taken out, and its
            alphabet then also holds the digits 0-9.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    extra = [t for t in special_tokens or () if t not in SPECIAL_TOKENS]
    alphabet = list("abcdefghijklmnopqrstuvwxyz'") + (list("0123456789") if special_tokens else [])
    tok = Tokenizer(models.WordPiece(unk_token="<unk>", continuing_subword_prefix="##"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=[*SPECIAL_TOKENS, *extra],
        initial_alphabet=alphabet,
        continuing_subword_prefix="##",
    )
    if extra:  # training would otherwise learn "<", "|", "user", ... as pieces of ordinary words
        pattern = re.compile("|".join(re.escape(t) for t in sorted(extra, key=len, reverse=True)))
        texts = (pattern.sub(" ", t) for t in texts)
    tok.train_from_iterator(texts, trainer)
    tok.decoder = decoders.WordPiece(prefix="##")
    return _wrap(tok, out, extra)


def _wrap(tok: Any, out: str | Path | None, extra_special_tokens: Sequence[str] = ()) -> Any:
    """A `PreTrainedTokenizerFast` over a trained `tokenizers` tokenizer: `<s>` first, saved to `out`."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    extra = {"extra_special_tokens": list(extra_special_tokens)} if extra_special_tokens else {}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>", **extra
    )
    if out is not None:
        fast.save_pretrained(out)
    return fast
