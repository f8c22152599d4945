"""Every committed zoo folder loads through the Auto classes and runs on a real clip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoProcessor

import hf_slm  # noqa: F401  (registers the Auto classes)
from hf_slm import load_audio
from hf_slm.models.speech_aware_lm import SpeechAwareLMForConditionalGeneration
from hf_slm.models.speech_lm import SpeechLMForCausalLM
from hf_slm.models.speech_text_lm import SpeechTextLMForCausalLM
from hf_slm.units import SpeechUnitTokenizer
from hf_slm.vocoders import UnitVocoder

ZOO = Path(__file__).resolve().parent.parent / "zoo"
FOLDERS = sorted(p for p in ZOO.glob("*") if (p / "config.json").exists())


def test_the_zoo_has_a_tokenizer_and_a_vocoder():
    types = {json.loads((p / "config.json").read_text())["model_type"] for p in FOLDERS}
    assert {"hf_slm_unit_tokenizer", "hf_slm_unit_vocoder"} <= types


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_zoo_folder_is_a_hub_repo(folder):
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size < 20 * 2**20, f"{folder.name} is {size / 2**20:.1f} MB"
    assert (folder / "model.safetensors").exists() and not list(folder.glob("*.bin"))
    card = (folder / "README.md").read_text()
    assert card.startswith("---") and "library_name: transformers" in card and "hf-slm" in card


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_zoo_folder_loads_and_runs(folder, tiny_corpus):
    config = AutoConfig.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    clip = load_audio(tiny_corpus["test"][0]["audio"])
    if isinstance(model, SpeechUnitTokenizer):
        out = model.encode(clip, sampling_rate=16_000)
        assert int(out.lengths[0]) > 10 and (out.units[0, : int(out.lengths[0])] < config.n_units).all()
    elif isinstance(model, UnitVocoder):
        units = torch.randint(0, config.n_units, (1, 50), generator=torch.Generator().manual_seed(0))
        wave = model.generate_speech(units)[0]
        assert (
            len(wave) == 50 * config.samples_per_unit
            and np.isfinite(wave).all()
            and np.abs(wave).max() > 1e-3
        )
    elif isinstance(model, SpeechAwareLMForConditionalGeneration):
        proc = AutoProcessor.from_pretrained(folder)
        silence = (1e-4 * np.random.default_rng(0).standard_normal(32_000)).astype(np.float32)

        def ask(audio, question):
            chat = [{"role": "user", "content": [{"type": "audio", "audio": audio, "sampling_rate": 16_000},
                                                 {"type": "text", "text": question}]}]  # fmt: skip
            inputs = proc.apply_chat_template(
                chat, add_generation_prompt=True, tokenize=True, return_dict=True
            )
            return proc.batch_decode(
                model.generate(**inputs, max_new_tokens=32), skip_special_tokens=True, answer_only=True
            )[0]

        presence = "Is there any speech in this recording?"
        assert ask(clip, presence) == "yes" and ask(silence, presence) == "no"
        row = tiny_corpus["test"][0]
        assert ask(clip, "Is the speaker male or female?") == row["speaker_sex"]
        text = ask(clip, "Transcribe the audio.")
        assert len(set(text.split()) & set(row["text"].lower().split())) >= 1, f"{text!r} vs {row['text']!r}"
    elif isinstance(model, SpeechTextLMForCausalLM):
        proc = AutoProcessor.from_pretrained(folder)
        ids = model.generate(**proc(audio=clip, sampling_rate=16_000, task="asr"))
        text = proc.batch_decode(ids, skip_special_tokens=True)[0]
        reference = set(tiny_corpus["test"][0]["text"].lower().split())
        assert len(set(text.split()) & reference) >= 2, f"{text!r} vs {tiny_corpus['test'][0]['text']!r}"
        spoken = model.generate(**proc(text="the little dog ran to the garden", task="tts"))
        wave = spoken.audio[0].numpy()
        assert len(wave) > 0.5 * 16_000 and np.isfinite(wave).all() and np.abs(wave).max() > 1e-3
        scores = model.score(
            **proc(text=["the dog ran", "dog the ran"], task="text_continuation"), add_eos=True
        )
        assert torch.isfinite(scores.sum).all()
    elif isinstance(model, SpeechLMForCausalLM):
        proc = AutoProcessor.from_pretrained(folder)
        inputs = proc(audio=clip, sampling_rate=16_000)
        scores = model.score(**inputs)
        assert (
            int(scores.num_tokens[0]) > 5 and torch.isfinite(scores.sum).all() and float(scores.mean[0]) < 0
        )
        torch.manual_seed(0)
        ids = model.generate(**inputs, max_new_tokens=20, min_new_tokens=10)
        wave = model.decode_speech(ids[:, inputs_len(model, inputs) :])[0]
        assert len(wave) > 0 and np.isfinite(wave).all() and np.abs(wave).max() > 1e-3
    else:  # an SSL encoder (HuBERT)
        with torch.no_grad():
            hidden = model(torch.from_numpy(clip)[None]).last_hidden_state
        assert hidden.shape[-1] == config.hidden_size and torch.isfinite(hidden).all()


def inputs_len(model, inputs) -> int:
    """Length of the prompt in tokens (begin token + its units), to cut it off `generate`'s output."""
    return model.encode_audio(inputs["input_values"], inputs["attention_mask"], add_eos=False)[
        "input_ids"
    ].shape[1]
