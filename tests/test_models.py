"""Registry-driven model tests (timm style): every class in MODEL_REGISTRY gets these for free."""

from __future__ import annotations

import pytest
import torch
import transformers
from transformers.utils import ModelOutput

from hf_slm.auto import MODEL_REGISTRY

SPECS = sorted(MODEL_REGISTRY)
# every registered class with its tiny config, and each of its variants (e.g. one per adapter)
CASES = SPECS + [f"{t}:{v}" for t in SPECS for v in sorted(MODEL_REGISTRY[t].variants or {})]


def build(case):
    model_type, _, variant = case.partition(":")
    spec = MODEL_REGISTRY[model_type]
    torch.manual_seed(0)
    model = spec.model_class(spec.variants[variant]() if variant else spec.tiny_config())
    if spec.prepare is not None:
        spec.prepare(model)
    return spec, model


def tensors(out: ModelOutput) -> dict[str, torch.Tensor]:
    return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}


def test_registry_is_not_empty():
    assert {"hf_slm_unit_tokenizer", "hf_slm_unit_vocoder"} <= set(MODEL_REGISTRY)


@pytest.mark.parametrize("model_type", CASES)
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


@pytest.mark.parametrize("model_type", CASES)
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


@pytest.mark.parametrize("model_type", CASES)
def test_save_load_round_trip_through_auto_classes(model_type, tmp_path):
    spec, model = build(model_type)
    model.eval()
    inputs = spec.example_inputs(model)
    with torch.no_grad():
        before = tensors(model(**inputs))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin")), "safetensors only"
    config = transformers.AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, spec.config_class) and config.model_type == spec.model_type
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


GENERATIVE = [t for t in CASES if MODEL_REGISTRY[t.partition(":")[0]].generate_inputs is not None]


@pytest.mark.parametrize("model_type", GENERATIVE)
def test_generate_batched_equals_one_by_one(model_type):
    """Greedy continuation of a left-padded batch equals each prompt continued alone."""
    spec, model = build(model_type)
    model.eval()
    prompts = spec.generate_inputs(model)
    batch = model.generate(**prompts, max_new_tokens=6, do_sample=False)
    width = prompts["input_ids"].shape[1]
    assert batch.shape[0] == prompts["input_ids"].shape[0] and batch.shape[1] <= width + 6
    assert torch.equal(batch[:, :width], prompts["input_ids"]), "the prompt is returned first"
    for i in range(len(batch)):
        keep = prompts["attention_mask"][i].bool()
        alone = model.generate(
            input_ids=prompts["input_ids"][i : i + 1, keep], attention_mask=prompts["attention_mask"][i : i + 1, keep],
            max_new_tokens=6, do_sample=False,
        )  # fmt: skip
        new_alone, new_batch = alone[0, int(keep.sum()) :], batch[i, width:]
        n = len(new_alone)
        assert torch.equal(new_batch[:n], new_alone), f"row {i}: {new_batch.tolist()} vs {new_alone.tolist()}"


@pytest.mark.parametrize("model_type", [t for t in SPECS if hasattr(MODEL_REGISTRY[t].model_class, "score")])
def test_score_matches_forward_and_is_batch_invariant(model_type):
    spec, model = build(model_type)
    model.eval()
    inputs = spec.example_inputs(model)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    scores = model.score(input_ids=ids, attention_mask=mask)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
    manual = (logp.gather(-1, ids[:, 1:, None]).squeeze(-1) * mask[:, 1:]).sum(1)
    torch.testing.assert_close(scores.sum, manual, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(scores.mean, manual / mask[:, 1:].sum(1), rtol=1e-5, atol=1e-4)
    assert scores.num_tokens.tolist() == (mask.sum(1) - 1).tolist()
    for i in range(len(ids)):
        n = int(mask[i].sum())
        alone = model.score(input_ids=ids[i : i + 1, :n], attention_mask=mask[i : i + 1, :n])
        torch.testing.assert_close(alone.sum[0], scores.sum[i], rtol=1e-5, atol=1e-4)
    one_at_a_time = model.score(input_ids=ids, attention_mask=mask, batch_size=1)
    torch.testing.assert_close(one_at_a_time.sum, scores.sum, rtol=1e-5, atol=1e-4)
