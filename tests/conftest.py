"""Shared fixtures: a tiny synthetic corpus, built once per test session (a few seconds)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest

TINY_HOURS = 0.03  # ~110 s of audio: every voice of every split speaks a few sentences


@pytest.fixture(scope="session")
def tiny_corpus_dir(tmp_path_factory):
    from hf_slm.data import synthesize_corpus

    out = tmp_path_factory.mktemp("corpus") / "tiny"
    synthesize_corpus(out, hours=TINY_HOURS, seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_corpus(tiny_corpus_dir):
    from datasets import load_from_disk

    return load_from_disk(str(tiny_corpus_dir))
