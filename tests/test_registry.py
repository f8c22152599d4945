"""`import hf_slm` registers our classes with the transformers Auto classes, from one registry."""

from __future__ import annotations

import pytest
import transformers
from transformers import AutoConfig, PreTrainedConfig, PreTrainedModel

import hf_slm
from hf_slm.auto import MODEL_REGISTRY, ModelSpec, register_model


def test_registration_refuses_foreign_model_types():
    class OtherConfig(PreTrainedConfig):
        model_type = "not_ours"

    class OtherModel(PreTrainedModel):
        config_class = OtherConfig

    spec = ModelSpec(
        OtherConfig, OtherModel, ("AutoModel",), tiny_config=OtherConfig, example_inputs=lambda m: {}
    )
    with pytest.raises(ValueError, match="must start with 'hf_slm_'"):
        register_model(spec)
    assert "not_ours" not in MODEL_REGISTRY


@pytest.mark.parametrize("model_type", sorted(MODEL_REGISTRY))
def test_every_registered_type_resolves_through_auto_classes(model_type):
    spec = MODEL_REGISTRY[model_type]
    assert model_type.startswith("hf_slm_")
    config = spec.tiny_config()
    assert isinstance(AutoConfig.for_model(model_type), spec.config_class)
    for name in spec.auto_classes:
        model = getattr(transformers, name).from_config(config)
        assert isinstance(model, spec.model_class)


def test_public_api():
    assert hf_slm.__version__
    for name in hf_slm.__all__:
        assert hasattr(hf_slm, name), name
