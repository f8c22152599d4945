"""Registry-driven model tests (timm style): every class in MODEL_REGISTRY gets these for free."""

from __future__ import annotations

import pytest
import torch
import transformers
from transformers.utils import ModelOutput

from hf_slm.auto import MODEL_REGISTRY

SPECS = sorted(MODEL_REGISTRY)


def build(model_type):
    spec = MODEL_REGISTRY[model_type]
    torch.manual_seed(0)
    model = spec.model_class(spec.tiny_config())
    if spec.prepare is not None:
        spec.prepare(model)
    return spec, model


def tensors(out: ModelOutput) -> dict[str, torch.Tensor]:
    return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}


def test_registry_is_not_empty():
    assert {"hf_slm_unit_tokenizer", "hf_slm_unit_vocoder"} <= set(MODEL_REGISTRY)


@pytest.mark.parametrize("model_type", SPECS)
def test_forward_returns_model_output(model_type):
    spec, model = build(model_type)
    model.eval()
    with torch.no_grad():
        out = model(**spec.example_inputs(model))
    assert isinstance(out, ModelOutput)
    assert tensors(out), "forward returned no tensors"
    for name, t in tensors(out).items():
        if t.is_floating_point():
            assert torch.isfinite(t).all(), name


@pytest.mark.parametrize("model_type", SPECS)
def test_backward_reaches_every_trainable_parameter(model_type):
    spec, model = build(model_type)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if not spec.trainable:
        assert not trainable, f"{model_type} is registered as not trainable but has trainable {trainable[:3]}"
        return
    model.train()
    out = model(**spec.example_inputs(model))
    loss = out.loss if out.get("loss") is not None else sum(t.float().mean() for t in tensors(out).values())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reached {missing[:5]}"


@pytest.mark.parametrize("model_type", SPECS)
def test_save_load_round_trip_through_auto_classes(model_type, tmp_path):
    spec, model = build(model_type)
    model.eval()
    inputs = spec.example_inputs(model)
    with torch.no_grad():
        before = tensors(model(**inputs))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin")), "safetensors only"
    config = transformers.AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, spec.config_class) and config.model_type == model_type
    for auto in spec.auto_classes:
        loaded = getattr(transformers, auto).from_pretrained(tmp_path)
        assert type(loaded) is spec.model_class
        sd_a, sd_b = model.state_dict(), loaded.state_dict()
        assert sd_a.keys() == sd_b.keys()
        for k in sd_a:
            assert torch.equal(sd_a[k], sd_b[k]), k
        loaded.eval()
        with torch.no_grad():
            after = tensors(loaded(**inputs))
        for k, v in before.items():
            assert torch.equal(v, after[k]), k
