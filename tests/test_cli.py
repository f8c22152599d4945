"""The `hf-slm` command as a user runs it: a real console script in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HF_SLM = shutil.which("hf-slm") or str(Path(sys.executable).with_name("hf-slm"))


def run(*args, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([HF_SLM, *args], capture_output=True, text=True, env=env, timeout=600, **kw)


def test_data_synth_prints_a_summary_and_writes_a_plot(tmp_path):
    out = tmp_path / "corpus"
    png = tmp_path / "utt.png"
    res = run("data", "synth", "--out", str(out), "--hours", "0.01", "--seed", "2", "--plot", str(png))
    assert res.returncode == 0, res.stderr
    for heading in ("hours", "utterances", "words", "voices", "lexicon"):
        assert heading in res.stdout
    assert "audio hours per wall minute" in res.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(png) as im:
        assert im.width >= 800 and im.height >= 500
    assert (out / "dataset_dict.json").exists()

    res = run("data", "summary", str(out))
    assert res.returncode == 0, res.stderr
    assert "test" in res.stdout and "validation" in res.stdout


def test_bad_arguments_exit_2_with_a_message(tmp_path):
    res = run("data", "summary", str(tmp_path / "nothing-here"))
    assert res.returncode == 2
    assert "no such file or folder" in res.stderr
    res = run("data", "synth", "--out", str(tmp_path / "x"), "--hours", "-1")
    assert res.returncode == 2 and "hours must be positive" in res.stderr
    res = run("nonsense")
    assert res.returncode == 2 and "invalid choice" in res.stderr


@pytest.mark.parametrize("flag", ["--help"])
def test_help_lists_commands(flag):
    res = run(flag)
    assert res.returncode == 0 and "data" in res.stdout
