"""The unit vocoder: shapes, durations, speakers, training steps that learn, Griffin-Lim baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_slm import load_audio
from hf_slm.units import SpeechUnitTokenizer, SpeechUnitTokenizerConfig
from hf_slm.vocoders import UnitVocoder, UnitVocoderConfig, expand_durations
from hf_slm.vocoders.griffin_lim import GriffinLimVocoder
from hf_slm.vocoders.training import VocoderTrainingData, train_vocoder

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_unit_layers": 1, "num_frame_layers": 1}


def test_expand_durations():
    units = torch.tensor([[4, 2, -1], [1, 3, 5]])
    durations = torch.tensor([[2, 3, 0], [1, 0, 2]])
    out, lengths = expand_durations(units, durations)
    assert lengths.tolist() == [5, 3]
    assert out.tolist() == [[4, 4, 2, 2, 2], [1, 5, 5, -1, -1]]


def test_output_lengths_follow_units_and_durations():
    voc = UnitVocoder(UnitVocoderConfig(n_units=10, **TINY)).eval()
    units = torch.tensor([[1, 2, 3, 4], [5, 6, -1, -1]])
    out = voc(units)
    assert out.waveform.shape == (2, 4 * 320) and out.lengths.tolist() == [1280, 640]
    assert (out.waveform[1, 640:] == 0).all()
    dur = torch.tensor([[1, 2, 1, 1], [3, 1, 0, 0]])
    waves = voc.generate_speech(units, dur)
    assert [len(w) for w in waves] == [5 * 320, 4 * 320] and all(w.dtype == np.float32 for w in waves)
    # lists of different lengths work too, and a batch equals its rows one by one
    rows = voc.generate_speech([[1, 2, 3, 4], [5, 6]])
    alone = voc.generate_speech([5, 6])[0]
    assert len(rows[1]) == len(alone) == 640
    # identical but for the inverse STFT's overlap-add in the last 20 ms
    torch.testing.assert_close(
        torch.from_numpy(rows[1][:320]), torch.from_numpy(alone[:320]), atol=1e-5, rtol=1e-4
    )


def test_speakers_change_the_voice_and_unknown_is_the_default():
    cfg = UnitVocoderConfig(n_units=10, speakers=["en-us+f1", "en+m3"], **TINY)
    voc = UnitVocoder(cfg).eval()
    units = torch.randint(0, 10, (1, 20))
    a = voc.generate_speech(units, speaker="en-us+f1")[0]
    b = voc.generate_speech(units, speaker="en+m3")[0]
    unknown = voc.generate_speech(units, speaker="a-voice-never-heard")[0]
    default = voc.generate_speech(units)[0]
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(unknown, default)
    assert cfg.speaker_id("en+m3") == 2 and cfg.speaker_id(None) == 0


def test_bad_input():
    voc = UnitVocoder(UnitVocoderConfig(n_units=10, **TINY))
    with pytest.raises(ValueError, match="outside this vocoder's 10 units"):
        voc(torch.tensor([[1, 12]]))
    with pytest.raises(ValueError, match="must divide sampling_rate"):
        UnitVocoderConfig(unit_rate=33.0)


def test_a_speech_lm_holding_a_vocoder_loads_with_sdpa(tmp_path):
    # the vocoder has no attention: an sdpa request, which reaches every sub-model, must not be refused
    from transformers import AutoModelForCausalLM

    from hf_slm.auto import MODEL_REGISTRY

    spec = MODEL_REGISTRY["hf_slm_speech_lm"]
    model = spec.model_class(spec.tiny_config())
    spec.prepare(model)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="sdpa")
    llama = next(m for m in loaded.modules() if type(m).__name__ == "LlamaForCausalLM")
    assert llama.config._attn_implementation == "sdpa"


def test_training_lowers_the_loss_on_real_speech(tiny_corpus):
    tok = SpeechUnitTokenizer(SpeechUnitTokenizerConfig(frontend="mfcc", n_units=16))
    train = tiny_corpus["train"].select(range(24))
    tok.fit(train, epochs=1, progress=False)
    data = VocoderTrainingData.from_dataset(tok, train, progress=False)
    assert len(data.units) == 24 and all(len(w) >= 320 * len(u) for u, w in zip(data.units, data.waves))
    voc = UnitVocoder(UnitVocoderConfig(n_units=16, speakers=sorted(set(train["voice"])), **TINY))
    history = train_vocoder(
        voc, data, steps=40, batch_size=4, segment_units=24, warmup_steps=5, progress=False, log_every=10
    )
    assert len(history) == 4
    assert history[-1]["mel"] < history[0]["mel"]  # it learns
    # and it speaks: the output of a training clip's units has energy where the clip has speech
    clip_units = torch.from_numpy(data.units[0].astype(np.int64))[None]
    wave = voc.generate_speech(clip_units, speaker=train[0]["voice"])[0]
    assert np.isfinite(wave).all() and np.abs(wave).max() > 1e-3


def test_griffin_lim_baseline(tiny_corpus):
    with pytest.raises(ValueError, match="normalize=False"):
        GriffinLimVocoder(SpeechUnitTokenizer(SpeechUnitTokenizerConfig(frontend="log_mel", n_units=8)))
    tok = SpeechUnitTokenizer(SpeechUnitTokenizerConfig(frontend="log_mel", n_units=16, normalize=False))
    tok.fit(tiny_corpus["train"].select(range(16)), epochs=1, progress=False)
    clip = load_audio(tiny_corpus["test"][0]["audio"])
    enc = tok.encode(clip, sampling_rate=16_000)
    wave = GriffinLimVocoder(tok, n_iter=8).generate_speech(enc.units, enc.durations)[0]
    frames = int(enc.durations.sum())
    assert abs(len(wave) - (frames - 1) * 320) <= 320 and np.isfinite(wave).all()
