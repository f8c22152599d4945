"""Every Auto-class registration of hf-slm, in one place.

``import hf_slm`` runs this module, so that ``AutoConfig``, ``AutoModel``,
``AutoModelForCausalLM`` and ``AutoProcessor`` resolve our ``model_type`` values (all of which
start with ``hf_slm_``) from a plain folder, without ``trust_remote_code``.

``MODEL_REGISTRY`` is also what drives the model tests (timm-style): every entry gets
forward, save/load and Auto-loading tests from ``tests/test_models.py`` without anyone writing
them again. An entry says how to build a tiny instance and example inputs for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import transformers
from transformers import AutoConfig, AutoProcessor

__all__ = ["MODEL_REGISTRY", "ModelSpec", "register_model"]


@dataclass(frozen=True)
class ModelSpec:
    """How one model class of ours is registered, and how the tests build a tiny one."""

    config_class: type
    model_class: type
    auto_classes: tuple[str, ...]  # names of transformers Auto classes, e.g. ("AutoModel",)
    tiny_config: Callable[[], Any]  # a small config for tests (seconds on a CPU)
    example_inputs: Callable[[Any], dict[str, Any]]  # model -> kwargs for forward
    processor_class: type | None = None

    @property
    def model_type(self) -> str:
        return self.config_class.model_type


MODEL_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Register a model family with the transformers Auto classes and with ``MODEL_REGISTRY``."""
    if not spec.model_type.startswith("hf_slm_"):
        raise ValueError(f"model_type {spec.model_type!r} must start with 'hf_slm_'")
    AutoConfig.register(spec.model_type, spec.config_class, exist_ok=True)
    for name in spec.auto_classes:
        getattr(transformers, name).register(spec.config_class, spec.model_class, exist_ok=True)
    if spec.processor_class is not None:
        AutoProcessor.register(spec.config_class, spec.processor_class, exist_ok=True)
    MODEL_REGISTRY[spec.model_type] = spec
    return spec
