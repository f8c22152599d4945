"""The synthetic corpus: splits, columns, held-out voices, real word alignments, determinism, resume."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio

from hf_slm import load_audio
from hf_slm.data import (
    TEST_VOICES,
    TRAIN_VOICES,
    VALIDATION_VOICES,
    SynthConfig,
    Voice,
    plan_corpus,
    synthesize_corpus,
)
from hf_slm.data.espeak import Espeak, align_words
from hf_slm.data.synth import _synthesize_shard

COLUMNS = {
    "id",
    "audio",
    "text",
    "phonemes",
    "words",
    "voice",
    "speaker_sex",
    "accent",
    "speed",
    "pitch",
    "duration",
    "kind",
}


def test_splits_columns_and_features(tiny_corpus):
    from datasets import Audio

    assert set(tiny_corpus) == {"train", "validation", "test"}
    for split, ds in tiny_corpus.items():
        assert set(ds.column_names) == COLUMNS, split
        assert isinstance(ds.features["audio"], Audio) and ds.features["audio"].sampling_rate == 16_000
        assert len(ds) > 0
    assert len(tiny_corpus["train"]) > len(tiny_corpus["test"])


def test_held_out_voices_and_sentences(tiny_corpus):
    train_voices = set(tiny_corpus["train"]["voice"])
    test_voices = set(tiny_corpus["test"]["voice"])
    val_voices = set(tiny_corpus["validation"]["voice"])
    assert (
        train_voices == set(TRAIN_VOICES)
        and test_voices == set(TEST_VOICES)
        and val_voices == set(VALIDATION_VOICES)
    )
    assert not train_voices & (test_voices | val_voices)
    assert not set(tiny_corpus["train"]["text"]) & set(tiny_corpus["test"]["text"])
    # at least 6 voices, both sexes, several accents
    assert len(train_voices) >= 6
    assert set(tiny_corpus["train"]["speaker_sex"]) == {"female", "male"}
    assert len(set(tiny_corpus["train"]["accent"])) >= 4
    assert set(tiny_corpus["test"]["accent"]) - set(tiny_corpus["train"]["accent"]), (
        "test should hold an unseen accent"
    )


def test_rows_are_consistent(tiny_corpus):
    ds = tiny_corpus["test"]
    for row in ds.select(range(min(8, len(ds)))):
        wave = load_audio(row["audio"])
        assert abs(len(wave) / 16_000 - row["duration"]) < 1e-3
        assert np.abs(wave).max() > 0.1  # real speech, not silence
        assert [w["word"] for w in row["words"]] == row["text"].split()
        starts = [w["start"] for w in row["words"]]
        assert starts == sorted(starts) and all(w["end"] > w["start"] for w in row["words"])
        assert row["words"][-1]["end"] <= row["duration"] + 1e-3
        assert Voice.parse(row["voice"]).speaker_sex == row["speaker_sex"]
        assert row["phonemes"] and 0.7 < row["speed"] < 1.2
    speeds = set(tiny_corpus["train"]["speed"])
    pitches = set(tiny_corpus["train"]["pitch"])
    assert len(speeds) > 5 and len(pitches) > 5  # varied speed and pitch


def _mfcc(wave: np.ndarray) -> np.ndarray:
    m = torchaudio.transforms.MFCC(
        16_000, n_mfcc=13, melkwargs={"n_fft": 400, "hop_length": 160, "n_mels": 40}
    )
    feats = m(torch.from_numpy(wave)).T.numpy()
    return (feats - feats.mean(0)) / (feats.std(0) + 1e-5)


def _dtw(a: np.ndarray, b: np.ndarray) -> float:
    """Length-normalised DTW distance (plain numpy; a test helper, not library code)."""
    cost = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    acc = np.full((len(a) + 1, len(b) + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            acc[i, j] = cost[i - 1, j - 1] + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
    return acc[-1, -1] / (len(a) + len(b))


def _word_match_rate(rows, shift: int = 0) -> float:
    """How often a word's slice of audio sounds most like that word spoken alone (among the
    words of its own utterance), by DTW over MFCCs. ``shift`` pairs slices with wrong words."""
    tts = Espeak()
    hits = total = 0
    for row in rows:
        wave = load_audio(row["audio"])
        words = row["words"]
        refs = {}
        for w in {w["word"] for w in words}:
            utt = tts.synthesize(w, row["voice"], rate=round(row["speed"] * 175), pitch=row["pitch"])
            refs[w] = _mfcc(load_audio(utt.waveform, sampling_rate=utt.sampling_rate))
        for k, w in enumerate(words):
            label = words[(k + shift) % len(words)]["word"]
            if len(refs) < 2 or (label == w["word"] and shift):
                continue
            seg = wave[int(w["start"] * 16_000) : int(w["end"] * 16_000)]
            feats = _mfcc(seg)
            best = min(refs, key=lambda r: _dtw(feats, refs[r]))
            hits += best == label
            total += 1
    return hits / total


def test_each_word_slice_is_that_word(tiny_corpus):
    rows = [r for r in tiny_corpus["test"].select(range(min(6, len(tiny_corpus["test"]))))]
    rate = _word_match_rate(rows)
    wrong = _word_match_rate(rows, shift=1)
    # the check can fail: slices paired with their neighbours' words match far less often
    assert rate >= 0.85, rate
    assert wrong < 0.4, wrong


def test_merged_function_words_are_split_at_espeak_phonemes():
    # espeak speaks "in the" as one word event; the split must follow its phoneme events
    tts = Espeak()
    text = "that horse hid in the lake."
    words = text.rstrip(".").split()
    utt = tts.synthesize(text, "en-us", rate=175, pitch=50)
    spans = align_words(text, words, utt, tts, "en-us")
    by_word = {s.word: s for s in spans}
    assert by_word["the"].phonemes.replace(" ", "") in ("ðə", "ðɪ")
    assert by_word["in"].end == by_word["the"].start
    assert by_word["in"].phonemes.replace(" ", "") == "ɪn"
    the_dh = [p for p in utt.phonemes if p.name == "ð"][-1]  # "that" starts with ð too
    assert by_word["the"].start == the_dh.start_ms / 1000 == 0.871  # espeak-ng 1.51, as measured


def test_plan_is_deterministic_and_sized():
    cfg = SynthConfig(hours=0.5, seed=3)
    a, b = plan_corpus(cfg), plan_corpus(SynthConfig(hours=0.5, seed=3))
    assert a == b
    assert plan_corpus(SynthConfig(hours=0.5, seed=4)) != a
    est = sum(len(i.text.split()) for items in a.values() for i in items)
    assert 4500 < est < 7000  # about 0.5 h of words (a 1 h corpus holds ~11,500)
    with pytest.raises(ValueError, match="held-out voices must be new"):
        SynthConfig(voices={"train": ("en-us+f1",), "validation": ("en-us+f1",), "test": ("en+m1",)})
    with pytest.raises(ValueError, match="needs a variant"):
        Voice.parse("en-us")


def _tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def cpu_hog():
    """A process per core spinning in Python while the test runs (each stops by itself after 10 minutes)."""
    spin = "import time\nend = time.monotonic() + 600\nwhile time.monotonic() < end:\n    pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(os.cpu_count() or 1)]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def test_same_seed_gives_byte_identical_output(tmp_path, tiny_corpus_dir, cpu_hog):
    # made on a machine busy with other work, with another number of workers: not a byte may change
    again = tmp_path / "again"
    synthesize_corpus(again, hours=0.03, seed=0, num_workers=1, progress=False)
    assert all(p.poll() is None for p in cpu_hog)  # the hog ran all along
    assert _tree_hashes(again) == _tree_hashes(tiny_corpus_dir)
    other = tmp_path / "other"
    synthesize_corpus(other, hours=0.03, seed=1, num_workers=2, progress=False)
    assert _tree_hashes(other) != _tree_hashes(tiny_corpus_dir)


SHARD = r"""
import sys, uuid
from hf_slm.data import espeak
from hf_slm.data.synth import SynthConfig, _synthesize_shard, plan_corpus

if sys.argv[2] == "uuid":
    # uuid1() goes through libuuid, which reseeds the C library's random stream from the clock and the
    # process id: as any library in the process may do, at any moment
    synthesize = espeak.Espeak.synthesize

    def after_a_uuid(self, *args, **kwargs):
        uuid.uuid1()
        return synthesize(self, *args, **kwargs)

    espeak.Espeak.synthesize = after_a_uuid
_synthesize_shard(plan_corpus(SynthConfig(hours=0.01, seed=0))["test"][:3], 16_000, sys.argv[1])
"""


def test_audio_does_not_depend_on_what_else_draws_from_the_c_random_stream(tmp_path):
    # espeak-ng's voices draw noise from the C library's rand(): a shard made in a fresh process where
    # something moves that stream before every utterance must equal one made where nothing does
    for kind in ("plain", "uuid"):
        done = subprocess.run(
            [sys.executable, "-c", SHARD, str(tmp_path / f"{kind}.parquet"), kind],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "uuid.parquet").read_bytes() == (tmp_path / "plain.parquet").read_bytes()


def test_finished_shards_are_kept_and_reused(tmp_path):
    out = tmp_path / "resumed"
    cfg = SynthConfig(hours=0.01, seed=5, shard_size=10)
    plan = plan_corpus(cfg)
    shard_dir = out / ".shards"
    shard_dir.mkdir(parents=True)
    (shard_dir / "config.json").write_text(cfg.to_json())
    # a shard finished before an interruption; mark it so we can tell it is reused, not remade
    items = plan["train"][:10]
    marked = [type(i)(**{**i.__dict__, "text": i.text}) for i in items]
    path = shard_dir / "train-00000.parquet"
    _synthesize_shard(marked, 16_000, str(path))
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    texts = table.column("text").to_pylist()
    texts[0] = "resumed shard"
    pq.write_table(table.set_column(table.column_names.index("text"), "text", [texts]), path)
    ds = synthesize_corpus(out, hours=0.01, seed=5, config=cfg, progress=False)
    assert ds["train"][0]["text"] == "resumed shard"
    assert not shard_dir.exists()  # cleaned up once assembled
    # a finished corpus is not rebuilt; one with other settings is refused without --overwrite
    assert (
        synthesize_corpus(out, hours=0.01, seed=5, config=cfg, progress=False)["train"][0]["text"]
        == "resumed shard"
    )
    with pytest.raises(FileExistsError, match="--overwrite"):
        synthesize_corpus(out, hours=0.01, seed=6, config=cfg, progress=False)
