"""Smoke test of benchmarks/bench_train.py (ours vs Trainer tokens/s, fraction of matmul peak) at tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"
TINY = ["--hidden-size", "32", "--intermediate-size", "64", "--layers", "2", "--heads", "4",
        "--vocab-size", "64", "--seq-len", "64", "--batch-size", "4", "--steps", "6",
        "--warmup-steps-skipped", "2", "--repeats", "1", "--threads", "1",
        "--peak-sizes", "256", "--peak-repeats", "3"]  # fmt: skip


def test_bench_train_writes_consistent_results(tmp_path):
    out = tmp_path / "train.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    # a process of its own: the benchmark sets global torch state (threads, denormals, a forward hook)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *TINY, "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    ours, trainer = results["ours"], results["trainer"]
    for side in (ours, trainer):
        assert side["tokens_per_second"] > 0
        assert side["cycle_tokens_per_second"] > 0
        assert len(side["runs_tokens_per_second"]) == 1
        assert 0 < side["fraction_of_peak"] < 1.5
    assert results["ratio"] == pytest.approx(ours["tokens_per_second"] / trainer["tokens_per_second"])
    assert results["peak_gflops"] > 0
    assert results["threads"] == 1
    assert results["tokens_per_step"] == 4 * 64
    # 6 N + 12 L H T, N = every parameter except the input embedding table
    assert results["flops_per_token"] == 6 * results["non_embedding_parameters"] + 12 * 2 * 32 * 64
    assert results["non_embedding_parameters"] == results["parameters"] - 64 * 32
    assert out.with_suffix(".png").stat().st_size > 0
