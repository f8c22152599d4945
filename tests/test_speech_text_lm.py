"""The speech+text LM (family 2): processor templates, splicing, modality masks, streaming, pipelines, data."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoProcessor, pipeline

import hf_slm  # noqa: F401  (registers the Auto classes and pipelines)
from hf_slm.audio import AudioError
from hf_slm.data.interleave import KINDS, MixtureConfig, build_mixture, interleave, word_unit_spans
from hf_slm.data.text_corpus import build_subword_tokenizer
from hf_slm.models.speech_text_lm import (
    MARKERS,
    TASKS,
    SpeechTextLMConfig,
    SpeechTextLMForCausalLM,
    SpeechTextLMGenerateOutput,
    SpeechTextLMProcessor,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SR = 16_000
N_UNITS = 16
SENTENCES = [
    "the small dog found a red ball in the garden",
    "my happy sister reads a long book",
    "a tall man sold the old car",
    "the children sing in the park",
]


@pytest.fixture(scope="module")
def text_tokenizer():
    return build_subword_tokenizer(SENTENCES * 5, vocab_size=80)


@pytest.fixture(scope="module")
def processor(text_tokenizer):
    return SpeechTextLMProcessor.from_text_tokenizer(text_tokenizer, N_UNITS, max_length=256)


def _model(text_tokenizer, seed: int = 0) -> SpeechTextLMForCausalLM:
    torch.manual_seed(seed)
    config = SpeechTextLMConfig(
        text_vocab_size=len(text_tokenizer),
        unit_tokenizer_config={"frontend": "mfcc", "n_units": N_UNITS},
        text_config={"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 256},
        vocoder_config={"n_units": N_UNITS, "hidden_size": 32, "intermediate_size": 64, "num_unit_layers": 1,
                        "num_frame_layers": 1},
    )  # fmt: skip
    model = SpeechTextLMForCausalLM(config)
    g = torch.Generator().manual_seed(seed)
    model.unit_tokenizer.centroids.data.copy_(torch.randn(model.unit_tokenizer.centroids.shape, generator=g))
    model.unit_tokenizer.is_fitted.fill_(1)
    return model.eval()


@pytest.fixture(scope="module")
def model(text_tokenizer):
    return _model(text_tokenizer)


def _wave(seconds: float = 0.6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * (200 + 100 * seed) * t) + 0.05 * rng.standard_normal(len(t))).astype(
        np.float32
    )


def _tokens(processor, row) -> list[str]:
    return processor.tokenizer.convert_ids_to_tokens([int(i) for i in row])


# --- processor -----------------------------------------------------------------------------------
def test_markers_and_units_follow_the_text_vocabulary(processor, text_tokenizer, model):
    n = len(text_tokenizer)
    assert [processor.marker_id(m) for m in MARKERS] == list(range(n, n + len(MARKERS)))
    assert processor.unit_offset == model.config.unit_offset == n + len(MARKERS)
    assert len(processor.tokenizer) == model.config.vocab_size
    assert processor.marker_id("[SPEECH]") == model.config.speech_token_id


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_template(processor, task):
    needs, _ = TASKS[task]
    kwargs = {"text": "the dog"} if needs == "text" else {"audio": _wave(), "sampling_rate": SR}
    out = processor(task=task, **kwargs)
    toks = _tokens(processor, out["input_ids"][0])
    words = processor.tokenizer.convert_ids_to_tokens(processor.text_ids("the dog"))
    body = {"text": words, "audio": ["[AUDIO]"]}[needs]
    expected = {
        "asr": ["[ASR]", "[SPEECH]", *body, "[TEXT]"],
        "tts": ["[TTS]", "[TEXT]", *body, "[SPEECH]"],
        "speech_continuation": ["[SPEECH]", *body],
        "text_continuation": ["[TEXT]", *body],
        "speech_to_text": ["[SPEECH]", *body, "[TEXT]"],
        "text_to_speech": ["[TEXT]", *body, "[SPEECH]"],
    }[task]
    assert toks == ["<s>", *expected]
    if needs == "audio":
        assert out["input_values"].shape == (1, len(_wave())) and int(
            out["audio_attention_mask"].sum()
        ) == len(_wave())
    else:
        assert "input_values" not in out


def test_text_alone_is_read_aloud_and_audio_alone_transcribed(processor):
    assert _tokens(processor, processor(text="the dog")["input_ids"][0])[1] == "[TTS]"
    assert _tokens(processor, processor(audio=_wave(), sampling_rate=SR)["input_ids"][0])[1] == "[ASR]"


def test_mixed_segments_in_order_with_markers(processor):
    batch = [
        [
            "the dog",
            {"type": "audio", "audio": _wave(0.5), "sampling_rate": SR},
            "runs",
            {"type": "text", "text": "in"},
        ],
        [
            {"type": "audio", "audio": _wave(0.3, seed=1), "sampling_rate": 8000},
            {"type": "audio", "audio": _wave(0.2, 2)},
        ],
    ]
    out = processor(segments=batch, sampling_rate=SR, next_modality="speech", padding_side="right")
    first = _tokens(processor, out["input_ids"][0][out["attention_mask"][0].bool()])
    pieces = processor.tokenizer.convert_ids_to_tokens
    assert first == ["<s>", "[TEXT]", *pieces(processor.text_ids("the dog")), "[SPEECH]", "[AUDIO]", "[TEXT]",
                     *pieces(processor.text_ids("runs in")), "[SPEECH]"]  # fmt: skip
    second = _tokens(processor, out["input_ids"][1][out["attention_mask"][1].bool()])
    assert second == ["<s>", "[SPEECH]", "[AUDIO]", "[AUDIO]"]  # already in speech: no second marker
    # three clips in placeholder order; the 8 kHz clip was resampled to 16 kHz
    lengths = out["audio_attention_mask"].sum(1).tolist()
    assert lengths == [int(0.5 * SR), int(0.3 * SR) * 2, int(0.2 * SR)]  # 4800 samples at 8 kHz = 0.6 s


def test_left_padding_for_generation(processor):
    out = processor(text=["the small dog found a red ball", "a cat"], task="tts")
    assert out["attention_mask"][1, 0] == 0 and out["attention_mask"][:, -1].all()
    assert (out["input_ids"][:, -1] == processor.marker_id("[SPEECH]")).all()


def test_bad_input_is_refused_with_the_fix(processor):
    with pytest.raises(ValueError, match=r"unknown task 'translate'.*asr"):
        processor(text="the dog", task="translate")
    with pytest.raises(AudioError, match="sampling_rate"):
        processor(audio=_wave(), task="asr")  # an array with no rate
    with pytest.raises(ValueError, match=r"longer than the model's context of 256.*shorten"):
        processor(text=" ".join(["the dog"] * 200), task="tts")
    with pytest.raises(ValueError, match="takes audio only"):
        processor(text="the dog", task="asr")
    with pytest.raises(ValueError, match="segments="):
        processor(text="the dog", audio=_wave(), sampling_rate=SR)
    with pytest.raises(ValueError, match="unknown segment type 'image'"):
        processor(segments=[{"type": "image", "image": None}])
    with pytest.raises(AudioError, match="over the limit of 30 s"):
        processor(audio=np.zeros(31 * SR, dtype=np.float32), sampling_rate=SR, task="asr")


def test_decode_segments_reads_text_and_units_back(processor):
    u = processor.unit_offset
    ids = [1, processor.marker_id("[TEXT]"), *processor.text_ids("the dog"), processor.marker_id("[SPEECH]"),
           u + 3, u + 5, processor.marker_id("[TEXT]"), *processor.text_ids("sings"), 2, u + 1]  # fmt: skip
    assert processor.decode_segments(ids) == [
        {"type": "text", "text": "the dog"},
        {"type": "speech", "units": [3, 5]},
        {"type": "text", "text": "sings"},
    ]
    assert processor.decode(ids, skip_special_tokens=True) == "the dog sings"


# --- model ---------------------------------------------------------------------------------------
def test_placeholders_become_the_clips_units(model, processor):
    waves = [_wave(0.5), _wave(0.3, seed=1)]
    out = processor(segments=[["the dog", {"type": "audio", "audio": waves[0]}], [{"type": "audio", "audio": waves[1]}]],
                    sampling_rate=SR, padding_side="right")  # fmt: skip
    spliced = model.splice_audio(
        **{k: out[k] for k in ("input_ids", "attention_mask", "input_values", "audio_attention_mask")}
    )
    enc = model.unit_tokenizer.encode(waves, sampling_rate=SR)
    for i in range(2):
        row = spliced["input_ids"][i][spliced["attention_mask"][i].bool()]
        units = row[row >= model.config.unit_offset] - model.config.unit_offset
        assert units.tolist() == enc.units[i, : int(enc.lengths[i])].tolist()
    assert spliced["attention_mask"][:, -1].all()  # left-padded (for generation) by default
    with pytest.raises(ValueError, match=r"1 \[AUDIO\] placeholder.*2 clip"):
        model.splice_audio(
            out["input_ids"][:1], out["attention_mask"][:1], out["input_values"], out["audio_attention_mask"]
        )


def test_forward_on_audio_returns_the_loss_of_the_spliced_sequence(model, processor):
    out = processor(audio=_wave(), sampling_rate=SR, task="speech_continuation")
    loss = model(**out).loss
    spliced = model.splice_audio(
        out["input_ids"], out["attention_mask"], out["input_values"], out["audio_attention_mask"], "right"
    )
    ids = spliced["input_ids"]
    assert torch.allclose(loss, model(input_ids=ids, labels=ids).loss)
    with pytest.raises(ValueError, match="placeholders but no input_values"):
        model(input_ids=out["input_ids"])


@pytest.mark.parametrize("modality", ["text", "speech"])
def test_generate_keeps_to_the_output_modality(model, processor, modality):
    inputs = processor(text=["the dog", "a red ball in the park"], task="text_continuation")
    torch.manual_seed(0)
    out = model.generate(
        **inputs,
        output_modality=modality,
        return_audio=False,
        do_sample=True,
        max_new_tokens=12,
        min_new_tokens=12,
    )
    new = out[:, inputs["input_ids"].shape[1] :]
    c = model.config
    if modality == "text":
        assert ((new < c.text_vocab_size) & (new != c.bos_token_id) & (new != c.pad_token_id)).all()
    else:
        assert ((new >= c.unit_offset) | (new == c.eos_token_id) | (new == c.pad_token_id)).all()
        assert (new >= c.unit_offset).any()


def test_speech_output_comes_back_as_audio(model, processor):
    inputs = processor(text="the dog", task="tts")
    out = model.generate(**inputs, max_new_tokens=10, min_new_tokens=10)
    assert isinstance(out, SpeechTextLMGenerateOutput) and out.sampling_rate == SR
    units = torch.tensor(out.units[0])
    assert len(units) == 10
    expected = int(model.mean_durations(units).sum()) * model.vocoder.config.samples_per_unit
    assert out.audio[0].shape == (expected,) and torch.isfinite(out.audio[0]).all()
    # the prompt's [SPEECH] marker chose speech; a [TEXT] marker chooses text (token ids back)
    ids = model.generate(**processor(audio=_wave(), sampling_rate=SR, task="asr"), max_new_tokens=4)
    assert isinstance(ids, torch.Tensor)


def test_streamed_speech_is_the_same_units_in_chunks(model, processor):
    inputs = processor(text="the dog", task="tts")
    full = model.generate(**inputs, max_new_tokens=30, min_new_tokens=30)
    chunks = list(
        model.stream_speech(**inputs, chunk_units=8, context_units=4, max_new_tokens=30, min_new_tokens=30)
    )
    assert len(chunks) == 4  # 8 + 8 + 8 + 6 units
    assert sum(len(c) for c in chunks) == len(full.audio[0])


def test_batched_generation_equals_one_by_one_with_audio(model, processor):
    waves = [_wave(0.6), _wave(0.3, seed=2)]
    batch = model.generate(
        **processor(audio=waves, sampling_rate=SR, task="asr"), max_new_tokens=5, min_new_tokens=5
    )
    for i, w in enumerate(waves):
        alone = model.generate(
            **processor(audio=w, sampling_rate=SR, task="asr"), max_new_tokens=5, min_new_tokens=5
        )
        assert batch[i, -5:].tolist() == alone[0, -5:].tolist()


def test_score_takes_processor_output_and_counts_the_end(model, processor):
    inputs = processor(text=["the dog", "a red ball in the park"], task="text_continuation")
    s = model.score(**inputs)
    s_eos = model.score(**inputs, add_eos=True)
    assert (s_eos.num_tokens == s.num_tokens + 1).all()
    assert s.num_tokens.tolist() == (inputs["attention_mask"].sum(1) - 1).tolist()
    right = processor(
        text=["the dog", "a red ball in the park"], task="text_continuation", padding_side="right"
    )
    torch.testing.assert_close(model.score(**right).sum, s.sum)


def test_save_and_load_with_its_processor(model, processor, tmp_path):
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    proc = AutoProcessor.from_pretrained(tmp_path)
    assert type(loaded) is SpeechTextLMForCausalLM and type(proc) is SpeechTextLMProcessor
    assert proc.context_length == 256 and len(proc.tokenizer) == len(processor.tokenizer)
    assert not any(p.requires_grad for p in loaded.unit_tokenizer.parameters())
    inputs = proc(audio=_wave(), sampling_rate=SR, task="asr")
    assert torch.equal(
        inputs["input_ids"], processor(audio=_wave(), sampling_rate=SR, task="asr")["input_ids"]
    )
    torch.testing.assert_close(loaded.score(**inputs).sum, model.score(**inputs).sum)
    # a processor config saved before `context_length` was renamed from `max_length` loads as it did
    config = json.loads((tmp_path / "processor_config.json").read_text())
    config["max_length"] = config.pop("context_length")
    (tmp_path / "processor_config.json").write_text(json.dumps(config))
    assert AutoProcessor.from_pretrained(tmp_path).context_length == 256


def test_from_components_keeps_the_text_lm(text_tokenizer, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    donor = _model(text_tokenizer, seed=3)
    donor.unit_tokenizer.save_pretrained(tmp_path / "units")
    donor.vocoder.save_pretrained(tmp_path / "vocoder")
    torch.manual_seed(0)
    text_lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(text_tokenizer) + 8, hidden_size=32, intermediate_size=64,
                                           num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))  # fmt: skip
    model = SpeechTextLMForCausalLM.from_components(
        tmp_path / "units", vocoder=tmp_path / "vocoder", text_lm=text_lm, text_tokenizer=text_tokenizer
    )
    n = len(text_tokenizer)
    assert model.config.text_vocab_size == n and model.config.vocab_size == n + len(MARKERS) + N_UNITS
    emb = model.get_input_embeddings().weight
    assert torch.equal(emb[:n], text_lm.get_input_embeddings().weight[:n])
    assert torch.equal(model.get_output_embeddings().weight[:n], text_lm.get_output_embeddings().weight[:n])
    new = emb[n:]
    assert torch.isfinite(new).all() and not torch.equal(new[0], new[1])
    assert abs(float(new.detach().std()) - float(text_lm.get_input_embeddings().weight.detach().std())) < 0.5
    layer = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(model.lm.state_dict()[layer], text_lm.state_dict()[layer])


# --- pipelines -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def folder(model, processor, tmp_path_factory):
    path = tmp_path_factory.mktemp("speech-text-lm")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def test_speech_recognition_pipeline_runs_the_model(folder, model, processor):
    asr = pipeline("automatic-speech-recognition", model=str(folder))
    wave = _wave()
    out = asr({"raw": wave, "sampling_rate": SR}, generate_kwargs={"max_new_tokens": 6})
    ids = model.generate(**processor(audio=wave, sampling_rate=SR, task="asr"), max_new_tokens=6)
    assert out["text"] == processor.batch_decode(ids, skip_special_tokens=True)[0]


def test_speech_recognition_pipeline_is_unchanged_for_ctc_models():
    from transformers.pipelines.automatic_speech_recognition import AutomaticSpeechRecognitionPipeline

    asr = pipeline("automatic-speech-recognition", model="zoo/ctc-phones-tiny")
    assert isinstance(asr, AutomaticSpeechRecognitionPipeline) and asr.type == "ctc"
    assert isinstance(asr({"raw": _wave(), "sampling_rate": SR})["text"], str)


def test_text_to_speech_pipeline_reads_text_aloud(folder):
    tts = pipeline("text-to-speech", model=str(folder))
    out = tts("the dog", generate_kwargs={"max_new_tokens": 8, "min_new_tokens": 8})
    assert out["sampling_rate"] == SR and out["audio"].ndim == 1 and len(out["audio"]) > 0


# --- interleaved data ----------------------------------------------------------------------------
def _corpus_rows(processor, n: int = 12):
    from datasets import Dataset

    rng = random.Random(0)
    rows = {"id": [], "text": [], "words": [], "units": [], "durations": []}
    for i in range(n):
        words = SENTENCES[i % len(SENTENCES)].split()
        t, ws, units, durs = 0.0, [], [], []
        for w in words:
            k = rng.randint(2, 4)  # units per word, 4 frames each (0.08 s)
            ws.append({"word": w, "start": t, "end": t + 0.08 * k, "phonemes": ""})
            units += [rng.randrange(N_UNITS) for _ in range(k)]
            durs += [4] * k
            t += 0.08 * k
        rows["id"].append(f"u{i}")
        rows["text"].append(" ".join(words))
        rows["words"].append(ws)
        rows["units"].append(units)
        rows["durations"].append(durs)
    return Dataset.from_dict(rows)


def test_word_unit_spans_tile_the_units():
    words = [{"start": 0.05}, {"start": 0.20}, {"start": 0.30}]
    durations = [3, 5, 4, 2, 6, 4]  # unit starts (frames): 0 3 8 12 14 20
    spans = word_unit_spans(words, durations, frame_rate=50.0)
    assert spans == [
        (0, 3),
        (3, 5),
        (5, 6),
    ]  # words start at frames 10 and 15: a unit goes where its run starts
    assert word_unit_spans(words[:1], durations, 50.0) == [(0, 6)]  # a leading silence joins the first word


def test_interleaving_switches_at_word_boundaries(processor):
    rng = random.Random(1)
    markers = {m: processor.marker_id(m) for m in ("[TEXT]", "[SPEECH]")}
    word_ids = [[10 + i] for i in range(8)]
    word_units = [[100 + i, 200 + i] for i in range(8)]
    seq = interleave(word_ids, word_units, rng, MixtureConfig(mean_span_words=2), markers)
    # every word appears exactly once, as text or as its units, in order
    words = [x - 10 if x < 100 else x - 100 for x in seq if x not in markers.values() and x < 200]
    assert words == list(range(8))
    assert seq[0] in markers.values() and sum(x in markers.values() for x in seq) >= 2


def test_build_mixture_weights_and_layouts(processor):
    units = _corpus_rows(processor, 40)
    mix = build_mixture(units, processor, MixtureConfig(views=3, seed=0), frame_rate=50.0, progress=False)
    assert len(mix) == 120 and set(mix["kind"]) == set(KINDS)
    m = {k: processor.marker_id(k) for k in ("[TEXT]", "[SPEECH]", "[ASR]", "[TTS]")}
    for row in mix:
        ids = row["input_ids"]
        assert ids[0] == 1 and ids[-1] == 2
        first = {
            "asr": m["[ASR]"],
            "tts": m["[TTS]"],
            "text_only": m["[TEXT]"],
            "speech_only": m["[SPEECH]"],
        }.get(row["kind"])
        if first is not None:
            assert ids[1] == first
        else:
            assert ids[1] in (m["[TEXT]"], m["[SPEECH]"])
    same = build_mixture(units, processor, MixtureConfig(views=3, seed=0), progress=False)
    assert same["input_ids"] == mix["input_ids"]
    none = build_mixture(units, processor, MixtureConfig(interleaved=0, views=3), progress=False)
    assert "interleaved" not in set(none["kind"])
    spans = build_mixture(units, processor, MixtureConfig(asr=1, interleaved=0, tts=0, text_only=0, speech_only=0,
                                                          paired_span_prob=1.0, max_span_words=2), progress=False)  # fmt: skip
    by_id = {r["id"]: r for r in units}
    for row in spans:  # a span of one or two words: its text and exactly the units of those words
        ids, source = row["input_ids"], by_id[row["id"]]
        cut = ids.index(m["[TEXT]"])
        text = processor.tokenizer.decode(ids[cut + 1 : -1])
        assert 1 <= len(text.split()) <= 2 and text in source["text"]
        n_units = len(ids[3:cut])
        words, said = [w["word"] for w in source["words"]], text.split()
        spans_of = word_unit_spans(source["words"], source["durations"], 50.0)
        places = [k for k in range(len(words)) if words[k : k + len(said)] == said]
        assert any(n_units == spans_of[k + len(said) - 1][1] - spans_of[k][0] for k in places)
    with pytest.raises(ValueError, match="unknown mixture settings \\['ratio'\\]"):
        MixtureConfig.from_dict({"ratio": 0.5})
    with pytest.raises(ValueError, match="lacks \\['units'\\]"):
        build_mixture(units.remove_columns("units"), processor, progress=False)
