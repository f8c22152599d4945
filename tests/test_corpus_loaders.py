"""User corpora load into the same columns: audiofolder, JSONL manifest, datasets objects."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from hf_slm import load_audio
from hf_slm.data import CorpusError, load_corpus


@pytest.fixture(scope="module")
def clips(tiny_corpus):
    rows = tiny_corpus["test"].select(range(4))
    return [(load_audio(r["audio"]), r["text"]) for r in rows]


def _write_wavs(folder, clips, sr=22_050):
    import torch
    import torchaudio.functional as AF

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for k, (wave, _) in enumerate(clips):
        name = f"clip_{k}.wav"
        # users' files come at other rates: the loader must resample them
        sf.write(folder / name, AF.resample(torch.from_numpy(wave), 16_000, sr).numpy(), sr)
        names.append(name)
    return names


def test_audiofolder_with_metadata_csv(tmp_path, clips):
    names = _write_wavs(tmp_path / "af", clips)
    lines = ["file_name,text"] + [f"{n},{t}" for n, (_, t) in zip(names, clips)]
    (tmp_path / "af" / "metadata.csv").write_text("\n".join(lines) + "\n")
    dsd = load_corpus(tmp_path / "af")
    ds = dsd["train"]
    assert len(ds) == len(clips)
    assert sorted(ds["text"]) == sorted(t for _, t in clips)
    row = ds[0]
    wave = load_audio(row["audio"])
    src = dict((t, w) for w, t in clips)[row["text"]]
    assert abs(len(wave) - len(src)) <= 2  # decoded at 16 kHz


def test_jsonl_manifest_with_relative_paths(tmp_path, clips):
    names = _write_wavs(tmp_path / "m" / "wavs", clips)
    manifest = tmp_path / "m" / "train.jsonl"
    manifest.write_text(
        "\n".join(
            json.dumps({"audio_filepath": f"wavs/{n}", "text": t, "duration": len(w) / 16_000})
            for n, (w, t) in zip(names, clips)
        )
    )
    ds = load_corpus(manifest, split="train")
    assert ds.column_names == ["audio", "text", "duration"]
    wave = load_audio(ds[1]["audio"])
    np.testing.assert_allclose(len(wave) / 16_000, ds[1]["duration"], atol=1e-3)


def test_datasets_object_with_other_column_names(tmp_path, clips):
    from datasets import Audio, Dataset

    ds = Dataset.from_dict(
        {
            "speech": [{"array": w, "sampling_rate": 16_000} for w, _ in clips],
            "sentence": [t for _, t in clips],
        }
    ).cast_column("speech", Audio(sampling_rate=16_000))
    out = load_corpus(ds)["train"]
    assert set(out.column_names) == {"audio", "text"}
    assert out[0]["text"] == clips[0][1]


def test_our_corpus_folder_loads_as_is(tiny_corpus_dir, tiny_corpus):
    dsd = load_corpus(tiny_corpus_dir)
    assert set(dsd) == set(tiny_corpus) and dsd["test"]["text"] == tiny_corpus["test"]["text"]


def test_bad_corpora_get_clear_errors(tmp_path, clips):
    with pytest.raises(CorpusError, match="no such file or folder"):
        load_corpus(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(CorpusError, match=r"metadata\.csv"):
        load_corpus(tmp_path / "plain")
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": "nope.wav", "text": "x"}) + "\n")
    with pytest.raises(CorpusError, match="do not exist"):
        load_corpus(manifest)
    manifest.write_text("{not json\n")
    with pytest.raises(CorpusError, match="not valid JSON"):
        load_corpus(manifest)
    manifest.write_text(json.dumps({"wav": "a.wav", "text": "x"}) + "\n")
    with pytest.raises(CorpusError, match="no audio path key"):
        load_corpus(manifest)
    from datasets import Dataset

    with pytest.raises(CorpusError, match="no transcript column"):
        load_corpus(Dataset.from_dict({"audio": ["a.wav"], "label": [1]}))
    with pytest.raises(CorpusError, match="has no split 'dev'"):
        load_corpus(Dataset.from_dict({"audio": ["a.wav"], "text": ["x"]}), split="dev")


def test_hub_ids_fail_clearly_offline():
    with pytest.raises(CorpusError, match="HF_HUB_OFFLINE=1"):
        load_corpus("some-org/some-speech-dataset")
