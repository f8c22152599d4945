"""The speech-aware text LM (family 3): placeholders, chat template, batching, adapters, LoRA, checkpoints."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForSpeechSeq2Seq,
    AutoProcessor,
    HubertConfig,
    HubertForCTC,
    LlamaConfig,
    LlamaForCausalLM,
    WhisperConfig,
    WhisperForConditionalGeneration,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder

import hf_slm
from hf_slm.audio import AudioError
from hf_slm.auto import _TINY_HUBERT, _TINY_WHISPER, _tiny_speech_aware_lm_config
from hf_slm.data.espeak import Espeak
from hf_slm.data.text_corpus import build_subword_tokenizer
from hf_slm.models.speech_aware_lm import (
    ADAPTER_TYPES,
    CHAT_TOKENS,
    SpeechAwareLMConfig,
    SpeechAwareLMForConditionalGeneration,
    SpeechAwareLMProcessor,
)
from hf_slm.models.speech_aware_lm.modeling_speech_aware_lm import _whisper_forward

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SR = 16_000
SENTENCES = [
    "the small dog found a red ball in the garden",
    "my happy sister reads a long book",
    "transcribe the audio what did the speaker say",
    "is the speaker male or female yes no",
]
CASES = [("whisper", a) for a in ADAPTER_TYPES] + [
    ("hubert", "conv"),
    ("hubert-group", "stack_mlp"),
    ("hubert", "qformer"),
]


@pytest.fixture(scope="module")
def tokenizer():
    tok = build_subword_tokenizer(SENTENCES * 5, vocab_size=80)
    tok.add_special_tokens({"additional_special_tokens": list(CHAT_TOKENS)})
    return tok


@pytest.fixture(scope="module")
def speech():
    """Two real utterances (espeak) at 16 kHz and one at 22.05 kHz."""
    tts = Espeak()

    def say(text, voice, rate):
        utt = tts.synthesize(text, voice=voice)
        return hf_slm.load_audio(
            utt.waveform.astype(np.float32) / 32768, utt.sampling_rate, target_sampling_rate=rate
        )

    return (
        say("the small dog found a red ball", "en-us", SR),
        say("my happy sister reads", "en-gb-x-rp", SR),
        say("a long book", "en-us+f2", 22_050),
    )


def _model(tokenizer, encoder="whisper", adapter="stack_mlp", seed=0, **kwargs):
    torch.manual_seed(seed)
    config = _tiny_speech_aware_lm_config(adapter, encoder, **kwargs)
    config.text_config.vocab_size = len(tokenizer)
    config.audio_token_id = tokenizer.convert_tokens_to_ids("<|audio|>")
    config.eos_token_id = tokenizer.convert_tokens_to_ids("<|end|>")
    config = SpeechAwareLMConfig(**config.to_dict())
    return SpeechAwareLMForConditionalGeneration(config).eval()


def _processor(model, tokenizer):
    from transformers import Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

    c = model.config
    if c.encoder_type == "whisper":
        fe = WhisperFeatureExtractor(feature_size=c.audio_config.num_mel_bins)
    else:
        fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, padding_value=0.0, do_normalize=True,
                                      return_attention_mask=True)  # fmt: skip
    return SpeechAwareLMProcessor(
        fe, tokenizer, length_ops=c.audio_length_ops(), max_seconds=model.max_audio_seconds
    )


def _chat(*items, text="transcribe the audio"):
    content = [{"type": "audio", "audio": a, "sampling_rate": sr} for a, sr in items]
    return [{"role": "user", "content": [*content, {"type": "text", "text": text}]}]


def _inputs(processor, conversation, **kwargs):
    return processor.apply_chat_template(
        conversation,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        **kwargs,
    )


# --- placeholders ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoder,adapter", CASES)
def test_placeholder_count_equals_the_embeddings_the_model_makes(tokenizer, encoder, adapter):
    model = _model(tokenizer, encoder, adapter)
    proc = _processor(model, tokenizer)
    lengths = [1601, 3199, 3200, 5000, 8000, 15999, 16000, 16001, 23456, 47999]
    g = np.random.default_rng(0)
    clips = [(0.1 * g.standard_normal(n)).astype(np.float32) for n in lengths]
    conv = [_chat((c, SR)) for c in clips]
    batch = _inputs(proc, conv)
    slots = (batch["input_ids"] == model.config.audio_token_id).sum(1).tolist()
    assert slots == [proc.num_audio_tokens(n) for n in lengths]
    with torch.no_grad():
        _embeds, valid = model.get_audio_embeds(batch["input_features"], batch["feature_attention_mask"])
        out = model(**batch)  # the model checks the count itself
    assert valid.tolist() == slots
    assert out.audio_embeds.shape[0] == sum(slots)
    assert torch.isfinite(out.logits).all()


def test_processor_counts_follow_the_frame_rates(tokenizer):
    model = _model(tokenizer, "whisper", "stack_mlp")
    proc = _processor(model, tokenizer)
    # Whisper: 100 mel frames per second, halved by its second convolution, then stacks of 4
    assert proc.num_audio_tokens(SR) == 13 and proc.num_audio_tokens(2 * SR) == 25
    linear = _processor(_model(tokenizer, "whisper", "linear"), tokenizer)
    assert linear.num_audio_tokens(SR) == 50


# --- chat template ------------------------------------------------------------------------------------------
def test_chat_template_renders_roles_text_and_several_clips(tokenizer, speech):
    proc = _processor(_model(tokenizer), tokenizer)
    conv = [
        {"role": "system", "content": "answer briefly"},
        {"role": "user", "content": [{"type": "audio", "audio": speech[0]}, {"type": "text", "text": "and"},
                                     {"type": "audio", "audio": speech[1]}, {"type": "text", "text": "same?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "no"}]},
        {"role": "user", "content": [{"type": "text", "text": "why"}]},
    ]  # fmt: skip
    text = proc.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|system|> answer briefly<|end|><|user|><|audio|> and<|audio|> same?<|end|>"
        "<|assistant|> no<|end|><|user|> why<|end|><|assistant|>"
    )
    batch = _inputs(proc, conv)
    ids = batch["input_ids"][0].tolist()
    audio_id = proc.audio_token_id
    n0, n1 = proc.num_audio_tokens(len(speech[0])), proc.num_audio_tokens(len(speech[1]))
    assert ids.count(audio_id) == n0 + n1
    first = ids.index(audio_id)
    assert (
        ids[first : first + n0] == [audio_id] * n0 and ids[first + n0] != audio_id
    )  # " and" between the clips
    assert batch["input_features"].shape[0] == 2
    assert batch["feature_attention_mask"].sum(1).tolist() == [len(speech[0]) // 160, len(speech[1]) // 160]


def test_chat_template_refuses_unknown_roles_and_items(tokenizer):
    proc = _processor(_model(tokenizer), tokenizer)
    with pytest.raises(Exception, match="unknown chat role"):
        proc.apply_chat_template([{"role": "robot", "content": "hi"}], tokenize=False)
    with pytest.raises(Exception, match="unknown content type"):
        proc.apply_chat_template(
            [{"role": "user", "content": [{"type": "image", "image": "x.png"}]}], tokenize=False
        )


def test_audio_items_are_resampled_to_the_processor_rate(tokenizer, speech):
    proc = _processor(_model(tokenizer), tokenizer)
    clip_22k = speech[2]
    batch = _inputs(proc, _chat((clip_22k, 22_050)))
    expected = hf_slm.load_audio(clip_22k, 22_050)
    assert batch["feature_attention_mask"].sum().item() == len(expected) // 160
    assert (batch["input_ids"] == proc.audio_token_id).sum().item() == proc.num_audio_tokens(len(expected))


# --- bad input ------------------------------------------------------------------------------------------------
def test_bad_input_gets_clear_errors(tokenizer, speech):
    model = _model(tokenizer)
    proc = _processor(model, tokenizer)
    with pytest.raises(AudioError, match="has no audio"):
        _inputs(proc, [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": "hi"}]}])
    for rate in (0, -16000, 16000.5):
        with pytest.raises(AudioError, match="sampling_rate must be a positive integer"):
            _inputs(proc, _chat((speech[0], rate)))
    long_clip = np.zeros(int(model.max_audio_seconds * SR) + SR, dtype=np.float32)
    with pytest.raises(AudioError, match="over the limit"):
        _inputs(proc, _chat((long_clip, SR)))
    with pytest.raises(AudioError, match="too short"):
        _inputs(proc, _chat((np.zeros(100, dtype=np.float32), SR)))
    with pytest.raises(ValueError, match="2 <\\|audio\\|> placeholders but 1 clips"):
        proc(text="<|user|><|audio|><|audio|> hi<|end|>", audio=[speech[0]], sampling_rate=SR)
    with pytest.raises(AudioError, match="without its sampling rate"):
        proc(text="<|user|><|audio|> hi<|end|>", audio=[speech[0]])
    # the model refuses placeholders with no audio, and counts that do not match the clips
    batch = _inputs(proc, _chat((speech[0], SR)))
    with pytest.raises(ValueError, match="audio placeholders but no audio"):
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    short = batch["feature_attention_mask"].clone()
    short[0, short.sum() // 2 :] = 0
    with pytest.raises(ValueError, match="build the input with this model's processor"):
        model(**{**batch, "feature_attention_mask": short})
    with pytest.raises(ValueError, match="left-padded"):
        right = proc.apply_chat_template([_chat((speech[0], SR)), _chat((speech[1], SR))], add_generation_prompt=True,
                                         tokenize=True, return_dict=True, padding_side="right")  # fmt: skip
        model.generate(**right)


# --- batching ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoder,adapter", CASES)
def test_left_padded_batch_generates_what_each_prompt_alone_does(tokenizer, speech, encoder, adapter):
    model = _model(tokenizer, encoder, adapter, seed=1)
    proc = _processor(model, tokenizer)
    convs = [_chat((speech[0], SR), (speech[1], SR)), _chat((speech[2], 22_050), text="is the speaker male"),
             [{"role": "user", "content": "what did the speaker say"}]]  # fmt: skip
    batch = _inputs(proc, convs)
    out = model.generate(**batch, max_new_tokens=6, min_new_tokens=6)
    width = batch["input_ids"].shape[1]
    assert torch.equal(out[:, :width], batch["input_ids"])
    for i, conv in enumerate(convs):
        alone = _inputs(proc, conv)
        one = model.generate(**alone, max_new_tokens=6, min_new_tokens=6)
        assert torch.equal(one[0, alone["input_ids"].shape[1] :], out[i, width:]), f"row {i}"


@pytest.mark.parametrize("encoder,adapter", CASES)
def test_padded_batch_forward_equals_each_row_alone(tokenizer, speech, encoder, adapter):
    model = _model(tokenizer, encoder, adapter, seed=2)
    proc = _processor(model, tokenizer)
    convs = [_chat((speech[0], SR)), _chat((speech[1], SR), (speech[2], 22_050))]
    batch = _inputs(proc, convs, padding_side="right")
    with torch.no_grad():
        logits = model(**batch).logits
        for i, conv in enumerate(convs):
            alone = _inputs(proc, conv)
            n = alone["input_ids"].shape[1]
            torch.testing.assert_close(model(**alone).logits[0], logits[i, :n], rtol=1e-4, atol=1e-4)


def test_whisper_real_length_forward_matches_transformers_on_full_length_input():
    torch.manual_seed(0)
    config = WhisperConfig(**{k: v for k, v in _TINY_WHISPER.items() if k != "model_type"})
    encoder = WhisperEncoder(config).eval()
    feats = torch.randn(2, config.num_mel_bins, 2 * config.max_source_positions)
    with torch.no_grad():
        ref = encoder(feats).last_hidden_state
        ours, lengths = _whisper_forward(encoder, feats, torch.tensor([feats.shape[-1]] * 2), layer=-1)
    assert lengths.tolist() == [config.max_source_positions] * 2
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


# --- LoRA and freezing -------------------------------------------------------------------------------------------
def _perturb_lora(model):
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))


def test_text_lora_is_active_only_with_audio(tokenizer, speech):
    lora = {"r": 4, "target_modules": ["q_proj", "v_proj"]}
    model = _model(tokenizer, text_lora=lora)
    plain = _model(tokenizer)  # same seed: the same base weights
    proc = _processor(model, tokenizer)
    # an untrained LoRA (B = 0) changes nothing
    audio = _inputs(proc, _chat((speech[0], SR)))
    with torch.no_grad():
        torch.testing.assert_close(model(**audio).logits, plain(**audio).logits)
    _perturb_lora(model)
    text_only = _inputs(proc, [{"role": "user", "content": "what did the speaker say"}])
    with torch.no_grad():
        assert torch.equal(model(**text_only).logits, plain(**text_only).logits)  # the untouched LLM
        assert not torch.allclose(model(**audio).logits, plain(**audio).logits, atol=1e-3)  # LoRA on
    always = _model(tokenizer, text_lora=lora, text_lora_audio_only=False)
    _perturb_lora(always)
    with torch.no_grad():
        assert not torch.allclose(always(**text_only).logits, plain(**text_only).logits, atol=1e-3)
    # generate: the LoRA state of the prefill holds for every decoding step
    gen_text = model.generate(**text_only, max_new_tokens=5, min_new_tokens=5)
    assert torch.equal(gen_text, plain.generate(**text_only, max_new_tokens=5, min_new_tokens=5))


def test_freezing_and_lora_are_set_per_part(tokenizer):
    model = _model(tokenizer)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"adapter"}
    model = _model(tokenizer, text_lora={"r": 2, "target_modules": ["q_proj"]},
                   audio_lora={"r": 2, "target_modules": ["q_proj"]}, freeze_adapter=True)  # fmt: skip
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert any(n.startswith("audio_encoder.") for n in names) and any(
        n.startswith("text_model.") for n in names
    )
    model = _model(tokenizer, freeze_audio_encoder=False, freeze_text_model=False)
    assert all(p.requires_grad for n, p in model.named_parameters() if "embed_positions" not in n)


def test_merge_lora_keeps_the_outputs(tokenizer, speech):
    model = _model(tokenizer, text_lora={"r": 4, "target_modules": ["q_proj", "v_proj"]})
    _perturb_lora(model)
    proc = _processor(model, tokenizer)
    audio = _inputs(proc, _chat((speech[0], SR)))
    with torch.no_grad():
        before = model(**audio).logits
        model.merge_lora()
        after = model(**audio).logits
    assert not any("lora_" in n for n, _ in model.named_parameters()) and model.config.text_lora is None
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


# --- training ----------------------------------------------------------------------------------------------------
def test_training_batch_labels_the_answer_only_and_training_steps_learn(tokenizer, speech):
    # (a random tiny LLM emits near-uniform logits whatever its input: the LLM trains here too)
    model = _model(tokenizer, adapter="linear", freeze_text_model=False)
    proc = _processor(model, tokenizer)
    rows = [
        {"audio": {"array": speech[0], "sampling_rate": SR}, "instruction": "transcribe the audio", "response": "the small dog"},
        {"audio": {"array": speech[1], "sampling_rate": SR}, "instruction": "transcribe the audio", "response": "my happy sister"},
        {"audio": None, "instruction": "is the speaker male", "response": "yes"},
    ]  # fmt: skip
    batch = proc.training_batch(rows)
    for i, r in enumerate(rows):
        labelled = batch["labels"][i][batch["labels"][i] != -100].tolist()
        expected = tokenizer(" " + r["response"] + "<|end|>", add_special_tokens=False)["input_ids"]
        assert labelled == expected
    assert batch["input_features"].shape[0] == 2
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses[::5]


# --- building from checkpoints ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tokenizer):
    """Two tiny checkpoint folders of each kind: a Whisper model, a HuBERT CTC model, a Llama with its tokenizer."""
    root = tmp_path_factory.mktemp("components")
    torch.manual_seed(0)
    WhisperForConditionalGeneration(WhisperConfig(**{k: v for k, v in _TINY_WHISPER.items() if k != "model_type"})).save_pretrained(root / "whisper")  # fmt: skip
    HubertForCTC(HubertConfig(**{k: v for k, v in _TINY_HUBERT.items() if k != "model_type"})).save_pretrained(root / "hubert")  # fmt: skip
    plain = build_subword_tokenizer(SENTENCES * 5, vocab_size=80)  # no chat tokens: from_components adds them
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(plain), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=2, num_key_value_heads=2))  # fmt: skip
    lm.save_pretrained(root / "llm")
    plain.save_pretrained(root / "llm")
    return root


@pytest.mark.parametrize("encoder", ["whisper", "hubert"])
def test_from_components_keeps_the_checkpoints_weights(checkpoints, speech, encoder):
    model, proc = SpeechAwareLMForConditionalGeneration.from_components(
        checkpoints / encoder, checkpoints / "llm", adapter="stack_mlp", return_processor=True
    )
    lm = LlamaForCausalLM.from_pretrained(checkpoints / "llm")
    base = lm.get_input_embeddings().weight
    assert torch.equal(
        model.get_input_embeddings().weight[: base.shape[0]], base
    )  # chat tokens appended after
    assert len(proc.tokenizer) == model.config.text_config.vocab_size == base.shape[0] + len(CHAT_TOKENS)
    src = (WhisperForConditionalGeneration.from_pretrained(checkpoints / "whisper").model.encoder if encoder == "whisper"
           else HubertForCTC.from_pretrained(checkpoints / "hubert").hubert)  # fmt: skip
    for k, v in src.state_dict().items():
        assert torch.equal(model.audio_encoder.state_dict()[k], v), k
    assert model.config.component_sources["text_model"] == str(checkpoints / "llm")
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {"adapter"}
    out = model.generate(**_inputs(proc, _chat((speech[0], SR))), max_new_tokens=3, min_new_tokens=3)
    assert out.shape[1] > 3


def test_slim_checkpoint_round_trip(checkpoints, speech, tmp_path):
    model, proc = SpeechAwareLMForConditionalGeneration.from_components(
        checkpoints / "whisper", checkpoints / "llm", adapter="qformer",
        adapter_config={"hidden_size": 32, "num_heads": 2, "num_layers": 1},
        text_lora={"r": 4, "target_modules": ["q_proj", "v_proj"]}, return_processor=True,
    )  # fmt: skip
    _perturb_lora(model)
    with torch.no_grad():
        model.get_input_embeddings().weight[-3:] += 1.0  # trained rows of the added chat tokens
    model.save_pretrained(tmp_path / "slim", slim=True)
    proc.save_pretrained(tmp_path / "slim")
    model.save_pretrained(tmp_path / "full")
    slim_size = (tmp_path / "slim" / "model.safetensors").stat().st_size
    assert slim_size < 0.5 * (tmp_path / "full" / "model.safetensors").stat().st_size
    loaded = AutoModel.from_pretrained(tmp_path / "slim")
    assert type(loaded) is SpeechAwareLMForConditionalGeneration and not loaded.config.slim_checkpoint
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    proc2 = AutoProcessor.from_pretrained(tmp_path / "slim")
    inputs = _inputs(proc2, _chat((speech[0], SR)))
    model.eval()
    assert torch.equal(
        loaded.generate(**inputs, max_new_tokens=4), model.generate(**inputs, max_new_tokens=4)
    )
    full = AutoModelForSpeechSeq2Seq.from_pretrained(tmp_path / "full")
    assert torch.equal(full.generate(**inputs, max_new_tokens=4), model.generate(**inputs, max_new_tokens=4))


def test_slim_checkpoint_refuses_what_it_cannot_rebuild(checkpoints, tokenizer, tmp_path):
    unfrozen = SpeechAwareLMForConditionalGeneration.from_components(
        checkpoints / "whisper", checkpoints / "llm", freeze_text_model=False
    )
    with pytest.raises(ValueError, match="save a full checkpoint"):
        unfrozen.save_pretrained(tmp_path / "a", slim=True)
    with pytest.raises(ValueError, match="needs the ids of its base encoder and LLM"):
        _model(tokenizer).save_pretrained(tmp_path / "b", slim=True)


def test_config_refuses_unknown_adapters_and_settings():
    with pytest.raises(ValueError, match="unknown adapter_type"):
        _tiny_speech_aware_lm_config("mlp")
    with pytest.raises(ValueError, match="unknown keys \\['stride'\\]"):
        SpeechAwareLMConfig(adapter_type="stack_mlp", adapter_config={"stride": 2})


def test_asr_pipeline_asks_the_model_to_transcribe(checkpoints, speech, tmp_path):
    from transformers import pipeline

    model, proc = SpeechAwareLMForConditionalGeneration.from_components(
        checkpoints / "hubert", checkpoints / "llm", adapter="conv", return_processor=True
    )
    model.save_pretrained(tmp_path / "m")
    proc.save_pretrained(tmp_path / "m")
    asr = pipeline("automatic-speech-recognition", model=str(tmp_path / "m"))
    clip_22k = speech[2]
    got = asr(
        {"raw": clip_22k, "sampling_rate": 22_050}, generate_kwargs={"max_new_tokens": 5, "min_new_tokens": 5}
    )
    inputs = _inputs(proc, _chat((clip_22k, 22_050), text="Transcribe the audio."))
    ids = model.eval().generate(**inputs, max_new_tokens=5, min_new_tokens=5)
    assert got["text"] == proc.batch_decode(ids, skip_special_tokens=True, answer_only=True)[0]
    asked = asr(str(_write_wav(tmp_path / "a.wav", speech[0])), instruction="Is the speaker male or female?",
                generate_kwargs={"max_new_tokens": 3, "min_new_tokens": 3})  # fmt: skip
    ids = model.generate(**_inputs(proc, _chat((speech[0], SR), text="Is the speaker male or female?")),
                         max_new_tokens=3, min_new_tokens=3)  # fmt: skip
    assert asked["text"] == proc.batch_decode(ids, skip_special_tokens=True, answer_only=True)[0]


def _write_wav(path, wave):
    import soundfile as sf

    sf.write(path, wave, SR)
    return path
