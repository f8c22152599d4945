"""What a user of transformers expects of our classes, beyond transformers' common tests: a resized
vocabulary survives save and load, `device_map` offloading to disk, and a clear error for a prompt past
the model's context in the Spaces too."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM

from hf_slm.auto import MODEL_REGISTRY


def _tiny(model_type: str):
    spec = MODEL_REGISTRY[model_type]
    torch.manual_seed(0)
    model = spec.model_class(spec.tiny_config()).eval()
    if spec.prepare is not None:
        spec.prepare(model)
    return model


@pytest.mark.parametrize("model_type", ["hf_slm_speech_lm", "hf_slm_speech_text_lm"])
def test_resized_vocabulary_saves_and_loads(tmp_path, model_type):
    model = _tiny(model_type)
    old = model.config.vocab_size
    model.resize_token_embeddings(old + 7)
    assert model.config.vocab_size == model.config.text_config.vocab_size == old + 7
    model.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert again.config.vocab_size == again.config.text_config.vocab_size == old + 7
    assert torch.equal(again.get_input_embeddings().weight, model.get_input_embeddings().weight)
    ids = torch.tensor([[model.config.bos_token_id, old + 3, old + 6]])  # the new tokens are read
    torch.testing.assert_close(again(input_ids=ids).logits, model(input_ids=ids).logits)


def test_speech_aware_lm_offloads_to_disk_with_device_map(tmp_path):
    model = _tiny("hf_slm_speech_aware_lm")
    model.save_pretrained(tmp_path / "model")
    inputs = MODEL_REGISTRY["hf_slm_speech_aware_lm"].example_inputs(model)
    inputs.pop("labels")
    with torch.no_grad():
        want = model(**inputs).logits
    # Whisper's positional table and the LLM on disk, the rest in memory: accelerate loads each offloaded
    # module's weights when that module's forward runs (never for a weight read past it)
    device_map = {"audio_encoder.conv1": "cpu", "audio_encoder.conv2": "cpu", "audio_encoder.embed_positions": "disk",
                  "audio_encoder.layers": "cpu", "audio_encoder.layer_norm": "cpu", "adapter": "cpu",
                  "text_model": "disk"}  # fmt: skip
    offloaded = AutoModel.from_pretrained(
        tmp_path / "model", device_map=device_map, offload_folder=tmp_path / "offload"
    ).eval()
    assert offloaded.audio_encoder.embed_positions.weight.device.type == "meta"  # not in memory
    with torch.no_grad():
        got = offloaded(**inputs).logits
    torch.testing.assert_close(got, want)


@pytest.mark.slow
def test_space_names_the_context_limit(monkeypatch):
    from hf_slm.spaces import runtime

    loaded = runtime.load_model("zoo/speech-text-lm-tiny")
    limit = loaded.model.config.text_config.max_position_embeddings
    with pytest.raises(ValueError, match=rf"context of {limit} tokens.*max_new_tokens=\d+"):
        runtime.continue_text(
            loaded, "the little dog found a red ball", max_new_tokens=limit + 10, temperature=0
        )


def test_beam_search_copies_each_rows_clips_together():
    from hf_slm.auto import _tiny_audio_chat

    model = _tiny("hf_slm_speech_aware_lm")
    inputs = _tiny_audio_chat(model, padding_side="left")  # row 0 holds clips 0 and 1, row 1 holds clip 2
    ids, features = inputs["input_ids"], inputs["input_features"]
    expanded_ids, kwargs = model._expand_inputs_for_generation(
        expand_size=2, input_ids=ids, input_features=features,
        feature_attention_mask=inputs["feature_attention_mask"], attention_mask=inputs["attention_mask"],
    )  # fmt: skip
    # the placeholders of rows 0, 0, 1, 1 read clips 0, 1, 0, 1, 2, 2 (transformers' own expansion: 0, 0, 1, 1, 2, 2)
    assert expanded_ids.shape[0] == 4
    assert torch.equal(kwargs["input_features"], features[[0, 1, 0, 1, 2, 2]])
    assert torch.equal(kwargs["feature_attention_mask"], inputs["feature_attention_mask"][[0, 1, 0, 1, 2, 2]])
    # beam search and several answers per prompt run on such a batch, and each row's best beam is the answer it
    # gets alone (beam search on one row at a time)
    settings = {
        "num_beams": 2,
        "num_return_sequences": 2,
        "max_new_tokens": 3,
        "min_new_tokens": 3,
        "do_sample": False,
    }
    out = model.generate(**inputs, **settings)
    assert out.shape == (4, ids.shape[1] + 3)
    row1 = {k: v[1:] if k in ("input_ids", "attention_mask") else v[2:] for k, v in inputs.items()}
    alone = model.generate(**row1, **settings)
    assert torch.equal(out[2:, -3:], alone[:, -3:])
