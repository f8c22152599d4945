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


# markers that transformers' common test files (tests/transformers_suite.py) put on their tests
TRANSFORMERS_MARKERS = (
    "accelerate_tests", "flash_attn_test", "flash_attn_3_test", "flash_attn_4_test", "torch_compile_test",
    "is_training_test", "is_tensor_parallel_test", "is_expert_parallel_test", "is_fsdp_test",
    "is_pipeline_test", "is_staging_test", "is_agent_test", "order",
)  # fmt: skip


def pytest_configure(config):
    for name in TRANSFORMERS_MARKERS:
        config.addinivalue_line("markers", f"{name}: a marker of transformers' common tests")
