"""The audio front door: every input kind, and a clear AudioError for every kind of bad input."""

from __future__ import annotations

import io
import logging
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from hf_slm import AudioError, load_audio
from hf_slm.audio import to_int16


def tone(freq=440.0, sr=44_100, seconds=1.0, amp=0.5):
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x, sr):
    spec = np.abs(np.fft.rfft(x))
    return np.fft.rfftfreq(len(x), 1 / sr)[spec.argmax()]


@pytest.mark.parametrize("fmt,subtype", [("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS")])
def test_reads_files_and_resamples(tmp_path, fmt, subtype):
    path = tmp_path / f"tone.{fmt}"
    sf.write(path, tone(), 44_100, subtype=subtype)
    out = load_audio(path)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - 16_000) <= 2  # 1 s at 16 kHz
    assert abs(peak_hz(out, 16_000) - 440) < 3
    assert np.abs(out).max() <= 1.0


def test_reads_mp3_through_ffmpeg(tmp_path):
    wav = tmp_path / "tone.wav"
    sf.write(wav, tone(sr=22_050), 22_050)
    mp3 = tmp_path / "tone.mp3"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), str(mp3)], check=True)
    out = load_audio(str(mp3), target_sampling_rate=8_000)
    assert abs(len(out) / 8_000 - 1.0) < 0.1  # mp3 encoders pad a little
    assert abs(peak_hz(out, 8_000) - 440) < 3


def test_reads_bytes_and_file_objects(tmp_path):
    buf = io.BytesIO()
    sf.write(buf, tone(sr=16_000), 16_000, format="FLAC")
    data = buf.getvalue()
    a = load_audio(data)
    b = load_audio(io.BytesIO(data))
    c = load_audio({"bytes": data, "path": "x.flac"})
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_allclose(a, tone(sr=16_000), atol=1e-4)  # 16-bit FLAC round trip, no resampling


def test_stereo_is_mixed_to_mono_on_either_axis():
    left, right = tone(440, 16_000), tone(1000, 16_000, amp=0.25)
    stereo = np.stack([left, right])
    mixed = load_audio(stereo, sampling_rate=16_000)
    np.testing.assert_allclose(mixed, (left + right) / 2, atol=1e-6)
    np.testing.assert_allclose(load_audio(stereo.T, sampling_rate=16_000), mixed, atol=1e-6)


def test_int16_tensor_and_list_inputs():
    x = tone(sr=16_000)
    pcm = to_int16(x)
    np.testing.assert_allclose(load_audio(pcm, sampling_rate=16_000), x, atol=1e-4)
    np.testing.assert_allclose(load_audio(torch.from_numpy(x), sampling_rate=16_000), x, atol=1e-7)
    np.testing.assert_allclose(load_audio(x.tolist(), sampling_rate=16_000), x, atol=1e-7)
    np.testing.assert_allclose(load_audio({"array": x, "sampling_rate": 16_000}), x, atol=1e-7)


def test_datasets_audio_values_are_accepted(tiny_corpus):
    row = tiny_corpus["test"][0]
    out = load_audio(row["audio"])  # a torchcodec AudioDecoder, as datasets decodes Audio
    assert abs(len(out) / 16_000 - row["duration"]) < 0.01


def test_out_of_range_floats_are_rescaled_not_clipped(caplog):
    x = tone(sr=16_000, amp=3.0)
    with caplog.at_level(logging.DEBUG, logger="hf_slm.audio"):
        out = load_audio(x, sampling_rate=16_000)
    assert np.isclose(np.abs(out).max(), 1.0, atol=1e-6)
    np.testing.assert_allclose(out, x / np.abs(x).max(), atol=1e-6)  # the shape is kept
    # three times full scale is a wrong scale, not an overshoot: that one the user is told about
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "peaks at 3.000" in caplog.records[0].getMessage()


def test_routine_rescaling_of_espeak_clips_is_a_debug_record_not_a_warning(tmp_path, caplog, capsys, recwarn):
    """espeak-ng clips normalised to full scale overshoot [-1, 1] a little once resampled to 16 kHz:
    load_audio rescales them silently (a debug record), whether it resamples them itself or the
    user did before."""
    from hf_slm.data.espeak import Espeak

    tts = Espeak()
    loaded = []  # (what load_audio got, sampling rate, peak after resampling to 16 kHz)
    for voice in ("en-us+m1", "en-us-nyc+f4", "en-029+f3", "en-us+f3", "en+m3", "en-gb-scotland+m5"):
        for pitch in (35, 65):
            utt = tts.synthesize(
                "the small dog found a red ball in the garden.", voice, rate=170, pitch=pitch
            )
            x = utt.waveform.astype(np.float32)
            x /= np.abs(x).max()  # normalised to full scale, as sox --norm or an editor leaves it
            at_16k = torchaudio.functional.resample(torch.from_numpy(x), utt.sampling_rate, 16_000).numpy()
            peak = float(np.abs(at_16k).max())
            if peak > 1.0:
                path = tmp_path / f"{voice}-{pitch}.wav"
                sf.write(path, x, utt.sampling_rate, subtype="FLOAT")
                loaded += [(path, None, peak), (at_16k, 16_000, peak)]  # load_audio resamples / the user did
    assert loaded, "no clip overshot full scale once resampled: the check below would test nothing"
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        for audio, sr, _ in loaded:
            out = load_audio(audio, sampling_rate=sr)
            assert np.isclose(np.abs(out).max(), 1.0, atol=1e-6)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert capsys.readouterr() == ("", "")
    assert not [w for w in recwarn if "peak" in str(w.message)]
    debug = [
        r.getMessage() for r in caplog.records if r.name == "hf_slm.audio" and r.levelno == logging.DEBUG
    ]
    assert len(debug) == len(loaded) and all("scaled down to fit" in m for m in debug)
    assert f"peaks at {loaded[0][2]:.3f}" in debug[0]  # the overshoot itself, 1.00x


# --- bad input: each gets a typed error naming the problem and the fix ---------------------------
def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        load_audio(tmp_path / "nope.wav")


def test_corrupt_file(tmp_path):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF" + bytes(np.random.default_rng(0).integers(0, 255, 400, dtype=np.uint8)))
    with pytest.raises(AudioError, match=r"corrupt or not audio.*ffmpeg -i"):
        load_audio(bad)


def test_truncated_flac_bytes():
    buf = io.BytesIO()
    sf.write(buf, tone(sr=16_000), 16_000, format="FLAC")
    with pytest.raises(AudioError, match="could not decode"):
        load_audio(buf.getvalue()[:30])


def test_empty_file_and_empty_array(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(empty)
    with pytest.raises(AudioError, match="empty"):
        load_audio(np.zeros(0, dtype=np.float32), sampling_rate=16_000)
    with pytest.raises(AudioError, match="empty"):
        load_audio(np.zeros((2, 0), dtype=np.float32), sampling_rate=16_000)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf(bad):
    x = tone(sr=16_000)
    x[100] = bad
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(x, sampling_rate=16_000)


def test_array_without_sampling_rate():
    with pytest.raises(AudioError, match="sampling_rate="):
        load_audio(tone())
    with pytest.raises(AudioError, match="positive integer"):
        load_audio(tone(), sampling_rate=-5)


def test_too_long_is_refused_with_the_limit():
    with pytest.raises(AudioError, match=r"3\.0 s long, over the limit of 2 s"):
        load_audio(tone(sr=16_000, seconds=3.0), sampling_rate=16_000, max_seconds=2)
    assert len(load_audio(tone(sr=16_000, seconds=1.0), sampling_rate=16_000, max_seconds=2)) == 16_000


def test_folder_and_unsupported_types(tmp_path):
    with pytest.raises(AudioError, match="is a folder"):
        load_audio(tmp_path)
    with pytest.raises(AudioError, match="cannot read audio from a int"):
        load_audio(42)
    with pytest.raises(AudioError, match="looks like a batch"):
        load_audio(np.zeros((32, 16_000), dtype=np.float32), sampling_rate=16_000)


def test_audio_error_is_a_value_error():
    assert issubclass(AudioError, ValueError)
