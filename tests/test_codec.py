"""CodecTokenizer: Encodec, Mimi and DAC (tiny random models) behind one encode/decode interface."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import AutoModel, BertConfig, BertModel, DacFeatureExtractor, EncodecFeatureExtractor

from hf_slm.audio import AudioError, load_audio
from hf_slm.units.codec import CodecOutput, CodecTokenizer, tiny_codec_config

KINDS = ["encodec", "mimi", "dac"]
SR_IN = 16_000  # test signals are made at 16 kHz; the tiny codecs work at 24 kHz, so every encode resamples
SR_CODEC = 24_000
# 4000 and 2500 samples at 16 kHz are 6000 and 3750 at 24 kHz: the shorter one ends in a partial frame
LONG, SHORT = 4000, 2500


def speech_like(n: int, f0: float = 120.0, f1: float = 260.0, seed: int = 0) -> np.ndarray:
    """A voiced-speech-like test signal at 16 kHz: a pitch glide with harmonics, syllabic envelope and noise."""
    t = np.arange(n) / SR_IN
    pitch = f0 + (f1 - f0) * t / t[-1]
    phase = 2 * np.pi * np.cumsum(pitch) / SR_IN
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
    noise = np.random.default_rng(seed).normal(0.0, 0.02, n)
    wave = envelope * voiced + noise
    return (0.5 * wave / np.abs(wave).max()).astype(np.float32)


def build_model(kind: str) -> torch.nn.Module:
    """A tiny random codec that gives varied ids (Encodec and Mimi start with all-zero codebooks)."""
    torch.manual_seed(0)
    model = AutoModel.from_config(tiny_codec_config(kind)).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        if kind == "encodec":
            # the first level picks among real latent frames, the next ones among ever smaller offsets
            signal = np.concatenate([speech_like(8000, seed=1), speech_like(8000, 300.0, 90.0, seed=2)])
            latents = model.encoder(torch.from_numpy(signal)[None, None])[0].T
            for level, layer in enumerate(model.quantizer.layers):
                embed = layer.codebook.embed
                if level == 0:
                    picks = torch.randint(len(latents), (embed.shape[0],), generator=generator)
                    embed.copy_(latents[picks])
                else:
                    embed.copy_(torch.randn(embed.shape, generator=generator) * latents.std(0) * 0.5**level)
        elif kind == "dac":
            # DAC initialises its convolutions with std 0.02: too weak for padding to reach the codes. Larger
            # weights make its look-ahead change an item's last frames unless the padding is masked.
            for module in model.encoder.modules():
                if isinstance(module, torch.nn.Conv1d):
                    fan_in = module.in_channels * module.kernel_size[0]
                    module.weight.copy_(torch.randn(module.weight.shape, generator=generator) / fan_in**0.5)
        elif kind == "mimi":
            for module in model.quantizer.modules():
                if hasattr(module, "embed_sum"):
                    module.embed_sum.copy_(torch.randn(module.embed_sum.shape, generator=generator))
                    module._embed = None  # the codebook caches embed_sum / cluster_usage on first use
    return model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the tiny convolutions gain nothing from two, and on a busy 2-core machine the
    threads spin-wait on each other (measured: 6 s of CPU for this file with one thread, 100 s with two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=KINDS)
def kind(request):
    return request.param


@pytest.fixture(scope="module")
def codec(kind):
    return CodecTokenizer(build_model(kind))


@pytest.fixture(scope="module")
def waves():
    return [speech_like(LONG, seed=3), speech_like(SHORT, 200.0, 140.0, seed=4)]


@pytest.fixture(scope="module")
def batch_out(codec, waves):
    return codec.encode(waves, sampling_rate=SR_IN)


def expected_frames(codec: CodecTokenizer, samples_16k: int) -> int:
    return math.ceil(samples_16k * SR_CODEC // SR_IN / codec.samples_per_frame)


def model_encode_alone(codec: CodecTokenizer, wave_16k: np.ndarray) -> torch.Tensor:
    """The model's own `encode` (its default settings) of one item, padded with zeros to whole frames."""
    wave = load_audio(wave_16k, SR_IN, target_sampling_rate=codec.sampling_rate)
    hop = codec.samples_per_frame
    wave = np.pad(wave, (0, -len(wave) % hop))
    with torch.inference_mode():
        codes = codec.model.encode(torch.from_numpy(wave)[None, None], return_dict=True).audio_codes
    return codes[0] if codec.kind == "encodec" else codes  # Encodec adds a leading chunk axis


# --- properties and construction -----------------------------------------------------------------
def test_properties(codec, kind):
    spf = {"encodec": 32, "mimi": 64, "dac": 32}[kind]
    assert codec.kind == kind
    assert codec.sampling_rate == SR_CODEC
    assert codec.samples_per_frame == spf
    assert codec.frame_rate == SR_CODEC / spf
    assert codec.codebook_size == 64
    # defaults are the codec's own: Encodec's smallest bandwidth (2 levels), every level of Mimi and DAC
    assert codec.num_codebooks == {"encodec": 2, "mimi": 4, "dac": 4}[kind]
    assert codec.max_num_codebooks == {"encodec": 8, "mimi": 4, "dac": 4}[kind]
    expected_fe = DacFeatureExtractor if kind == "dac" else EncodecFeatureExtractor
    assert type(codec.feature_extractor) is expected_fe
    assert codec.feature_extractor.sampling_rate == SR_CODEC
    assert not codec.model.training
    assert kind in repr(codec)


def test_tiny_configs_build_fast():
    import time

    for kind in KINDS:
        start = time.perf_counter()
        CodecTokenizer(AutoModel.from_config(tiny_codec_config(kind)))
        assert time.perf_counter() - start < 1.0
    with pytest.raises(ValueError, match="encodec"):
        tiny_codec_config("wavtokenizer")


def test_rejects_models_it_cannot_wrap():
    bert = BertModel(
        BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8)
    )
    with pytest.raises(ValueError, match="EncodecModel, MimiModel or DacModel"):
        CodecTokenizer(bert)
    chunked = tiny_codec_config("encodec")
    chunked.chunk_length_s, chunked.overlap, chunked.normalize = 0.1, 0.01, True
    with pytest.raises(ValueError, match="chunk"):
        CodecTokenizer(AutoModel.from_config(chunked))
    model = AutoModel.from_config(tiny_codec_config("dac"))
    with pytest.raises(ValueError, match="16000 Hz"):
        CodecTokenizer(model, DacFeatureExtractor(sampling_rate=16_000))
    for bad in (0, 5, 2.0):
        with pytest.raises(ValueError, match="num_codebooks"):
            CodecTokenizer(model, num_codebooks=bad)


# --- encoding ------------------------------------------------------------------------------------
def test_encode_batch_shapes_lengths_and_padding(codec, batch_out):
    out = batch_out
    assert isinstance(out, CodecOutput)
    long_frames, short_frames = expected_frames(codec, LONG), expected_frames(codec, SHORT)
    assert short_frames * codec.samples_per_frame != SHORT * SR_CODEC // SR_IN  # a partial last frame
    assert out.codes.shape == (2, codec.num_codebooks, long_frames)
    assert out.codes.dtype == torch.long and out.lengths.dtype == torch.long
    assert out.lengths.tolist() == [long_frames, short_frames]
    assert out.attention_mask.shape == (2, long_frames)
    assert out.attention_mask.sum(-1).tolist() == [long_frames, short_frames]
    assert out.attention_mask[1, :short_frames].all() and not out.attention_mask[1, short_frames:].any()
    # padding is -1, everything else a real id; the codes are normal tensors that can be edited in place
    assert (out.codes[1, :, short_frames:] == -1).all()
    valid = out.codes[out.attention_mask[:, None, :].expand_as(out.codes).bool()]
    assert ((valid >= 0) & (valid < codec.codebook_size)).all()
    assert not out.codes.is_inference()
    # the tiny random codec is not degenerate: each level uses many ids
    for item, frames in enumerate(out.lengths.tolist()):
        for level in range(codec.num_codebooks):
            assert len(set(out.codes[item, level, :frames].tolist())) >= 3


def test_batched_codes_equal_the_model_encoding_each_item_alone(codec, waves, batch_out):
    # coarse level first, same levels and ids as the model's own encode of the item alone: the padding of a
    # shorter item (and, for DAC, its look-ahead convolutions) changes none of its frames
    for item, wave in enumerate(waves):
        frames = int(batch_out.lengths[item])
        alone = model_encode_alone(codec, wave)
        assert alone.shape == (1, codec.num_codebooks, frames)
        assert torch.equal(batch_out.codes[item, :, :frames], alone[0])
        assert torch.equal(batch_out.codes[item, :, :frames], codec.encode(wave, SR_IN).codes[0])


def test_single_waveform_and_other_inputs(codec, waves, batch_out, tmp_path):
    one = codec.encode(waves[0], sampling_rate=SR_IN)
    assert one.codes.shape == (1, codec.num_codebooks, int(batch_out.lengths[0]))
    assert torch.equal(one.codes[0], batch_out.codes[0])
    path = tmp_path / "long.wav"
    sf.write(path, waves[0], SR_IN, subtype="FLOAT")
    from_file = codec.encode([str(path), torch.from_numpy(waves[1])], sampling_rate=SR_IN)
    assert torch.equal(from_file.codes, batch_out.codes)


def test_num_codebooks_selection(codec, waves):
    top = codec.max_num_codebooks
    full = codec.encode(waves, SR_IN, num_codebooks=top).codes
    assert full.shape[1] == top
    for count in sorted({1, 3, top - 1}):  # Encodec: 3 lies between two bandwidths (2 and 4 codebooks)
        # each level only depends on the ones before it, so fewer levels are a prefix of more
        assert torch.equal(codec.encode(waves, SR_IN, num_codebooks=count).codes, full[:, :count])
    chosen = CodecTokenizer(codec.model, codec.feature_extractor, num_codebooks=top - 1)
    assert chosen.num_codebooks == top - 1
    assert torch.equal(chosen.encode(waves, SR_IN).codes, full[:, : top - 1])
    for bad in (0, top + 1):
        with pytest.raises(ValueError, match=f"between 1 and {top}"):
            codec.encode(waves, SR_IN, num_codebooks=bad)


def test_encodec_bandwidths_map_to_codebook_counts():
    codec = CodecTokenizer(build_model("encodec"))
    wave = load_audio(speech_like(LONG), SR_IN, target_sampling_rate=SR_CODEC)
    wave = torch.from_numpy(np.pad(wave, (0, -len(wave) % 32)))[None, None]
    for bandwidth, count in [(9.0, 2), (18.0, 4), (36.0, 8)]:
        with torch.inference_mode():
            ref = codec.model.encode(wave, bandwidth=bandwidth, return_dict=True).audio_codes[0]
        assert ref.shape[1] == count
        assert torch.equal(codec.encode(speech_like(LONG), SR_IN, num_codebooks=count).codes, ref)


# --- decoding ------------------------------------------------------------------------------------
def test_decode_lengths_and_values(codec, waves, batch_out):
    decoded = codec.decode(batch_out.codes, batch_out.lengths)
    assert isinstance(decoded, list) and len(decoded) == 2
    for wave, frames in zip(decoded, batch_out.lengths.tolist()):
        assert wave.dtype == np.float32 and wave.ndim == 1
        assert wave.shape == (frames * codec.samples_per_frame,)
        assert np.isfinite(wave).all() and wave.std() > 0
    # lengths default to the frames before the -1 padding
    for a, b in zip(decoded, codec.decode(batch_out.codes)):
        np.testing.assert_array_equal(a, b)
    # one item as (codebooks, frames) decodes as in the batch, the padded one included
    short = int(batch_out.lengths[1])
    (alone,) = codec.decode(batch_out.codes[1, :, :short])
    np.testing.assert_allclose(alone, decoded[1], rtol=1e-4, atol=1e-5)
    # fewer codebooks decode too (coarser), and numpy codes are accepted
    (coarse,) = codec.decode(batch_out.codes[0, :1].numpy())
    assert coarse.shape == decoded[0].shape and np.isfinite(coarse).all()


def test_decode_rejects_bad_codes(codec, batch_out):
    codes = batch_out.codes
    with pytest.raises(ValueError, match="shape"):
        codec.decode(codes[0, 0])
    with pytest.raises(ValueError, match="shape"):
        codec.decode(codes[None])
    with pytest.raises(ValueError, match="integer"):
        codec.decode(codes.float())
    too_many = codes[:, :1].repeat(1, codec.max_num_codebooks + 1, 1)
    with pytest.raises(ValueError, match=f"has {codec.max_num_codebooks}"):
        codec.decode(too_many)
    for bad_id in (codec.codebook_size, -2):
        bad = codes.clone()
        bad[0, 0, 3] = bad_id
        with pytest.raises(ValueError, match=rf"code {bad_id} \(item 0, codebook 0, frame 3\)"):
            codec.decode(bad)
    padded_inside = codes.clone()
    padded_inside[0, -1, 2] = -1
    with pytest.raises(ValueError, match="outside"):
        codec.decode(padded_inside, batch_out.lengths)
    with pytest.raises(ValueError, match="lengths"):
        codec.decode(codes, [1])
    with pytest.raises(ValueError, match="lengths"):
        codec.decode(codes, [codes.shape[-1] + 1, 1])


# --- bad audio -----------------------------------------------------------------------------------
def test_bad_audio(codec, waves):
    with pytest.raises(AudioError, match="empty"):
        codec.encode(np.zeros(0, dtype=np.float32), sampling_rate=SR_IN)
    with pytest.raises(AudioError, match="empty"):
        codec.encode([])
    nan = waves[0].copy()
    nan[100] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        codec.encode([waves[1], nan], sampling_rate=SR_IN)
    with pytest.raises(AudioError, match="without its sampling rate"):
        codec.encode(waves[0])
    hop = codec.samples_per_frame
    with pytest.raises(AudioError, match=rf"at least {hop} samples \({1000 * hop / SR_CODEC:.1f} ms\)"):
        codec.encode(np.full(hop - 1, 0.1, dtype=np.float32), sampling_rate=SR_CODEC)
    with pytest.raises(AudioError, match=r"audio item 1 .* at least"):
        codec.encode([waves[0], waves[1][:10]], sampling_rate=SR_IN)
    # exactly one frame is enough
    out = codec.encode(np.full(hop, 0.1, dtype=np.float32), sampling_rate=SR_CODEC)
    assert out.lengths.tolist() == [1]


# --- saving --------------------------------------------------------------------------------------
def test_save_and_load_round_trip(codec, kind, waves, batch_out, tmp_path):
    chosen = CodecTokenizer(codec.model, codec.feature_extractor, num_codebooks=codec.max_num_codebooks - 1)
    chosen.save_pretrained(tmp_path)
    assert {"config.json", "preprocessor_config.json", "codec_tokenizer_config.json"} <= {
        p.name for p in tmp_path.iterdir()
    }
    loaded = CodecTokenizer.from_pretrained(tmp_path)
    assert loaded.kind == kind
    assert loaded.num_codebooks == chosen.num_codebooks
    assert type(loaded.feature_extractor) is type(codec.feature_extractor)
    assert loaded.sampling_rate == codec.sampling_rate and loaded.frame_rate == codec.frame_rate
    assert torch.equal(loaded.encode(waves, SR_IN).codes, chosen.encode(waves, SR_IN).codes)
    assert torch.equal(loaded.encode(waves, SR_IN, num_codebooks=codec.num_codebooks).codes, batch_out.codes)
    for a, b in zip(loaded.decode(batch_out.codes), codec.decode(batch_out.codes)):
        np.testing.assert_array_equal(a, b)
    # an explicit num_codebooks wins over the saved one
    assert CodecTokenizer.from_pretrained(tmp_path, num_codebooks=1).num_codebooks == 1
