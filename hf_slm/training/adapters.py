"""PEFT adapters on models that may already carry LoRA layers of their own.

A speech-aware LM with ``text_lora`` holds PEFT LoRA layers inside its LLM as part of its
architecture (switched off for text-only prompts). Fine-tuning it with a new PEFT adapter keeps
training those layers (they are the model's adapter ``default`` too, so PEFT saves them in the
adapter file, and ``load_adapter`` / ``PeftModel`` put them back), and adds LoRA to the layers the
model had none on. PEFT's ``merge_and_unload`` would fold *every* LoRA layer into the base weights,
the built-in ones included, which leaves a checkpoint whose config still asks for them:
[`merge_adapter`] folds in only the layers the new adapter added.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["builtin_lora_layers", "lora_target_modules", "merge_adapter"]


def builtin_lora_layers(model: torch.nn.Module) -> set[str]:
    """Names of the modules of ``model`` that are PEFT tuner layers already (before any new adapter)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {name for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)}


def lora_target_modules(model: torch.nn.Module, scopes: tuple[str, ...]) -> list[str]:
    """The full names of the `nn.Linear` layers under the module prefixes ``scopes`` that are not LoRA
    layers already (nor inside one): what a new LoRA adapter should wrap."""
    builtin = builtin_lora_layers(model)
    inside = tuple(f"{name}." for name in builtin)
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and name.startswith(scopes)
        and name not in builtin
        and not name.startswith(inside)
    ]


def merge_adapter(peft_model: Any) -> torch.nn.Module:
    """The base model of ``peft_model`` with the new adapter folded into its weights.

    Without built-in LoRA layers this is PEFT's ``merge_and_unload()``. With them (recorded by the
    training loop as ``_builtin_lora_layers`` on the base model), only the layers the adapter added are
    merged and replaced by their base layers; the built-in ones stay, with their trained weights, so
    the merged model loads with the base model's own class and config.
    """
    base = peft_model.get_base_model()
    builtin = set(getattr(base, "_builtin_lora_layers", ()) or ())
    if not builtin:
        return peft_model.merge_and_unload()
    from peft.tuners.tuners_utils import BaseTunerLayer

    added = [
        name
        for name, module in base.named_modules()
        if isinstance(module, BaseTunerLayer) and name not in builtin
    ]
    for name in added:
        layer = base.get_submodule(name)
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        setattr(base.get_submodule(parent_name) if parent_name else base, child, layer.get_base_layer())
    return base
