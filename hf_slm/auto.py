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
from transformers import AutoConfig, AutoModelForCausalLM, AutoProcessor

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
    prepare: Callable[[Any], None] | None = None  # makes a fresh tiny model usable (e.g. sets centroids)
    trainable: bool = True  # whether forward is differentiable in some parameters
    generate_inputs: Callable[[Any], dict[str, Any]] | None = None  # model -> kwargs for generate/score
    # more tiny configs of the same class (name -> builder), each tested like `tiny_config` (timm's
    # variants of one architecture: e.g. every adapter of the speech-aware LM)
    variants: dict[str, Callable[[], Any]] | None = None

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


# --- the registrations ---------------------------------------------------------------------------
def _tiny_waves(model: Any) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(0)
    waves = 0.1 * torch.randn(2, 8000, generator=g)
    mask = torch.ones(2, 8000, dtype=torch.long)
    mask[1, 6000:] = 0
    return {"input_values": waves * mask, "attention_mask": mask}


def _random_centroids(model: Any) -> None:
    import torch

    g = torch.Generator().manual_seed(0)
    model.centroids.data.copy_(torch.randn(model.centroids.shape, generator=g))
    model.is_fitted.fill_(1)


def _tiny_units(model: Any) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(0)
    units = torch.randint(0, model.config.n_units, (2, 12), generator=g)
    units[1, 9:] = -1
    target = 0.1 * torch.randn(2, 12 * model.config.samples_per_unit, generator=g)
    return {"units": units, "speaker_ids": torch.tensor([0, 1]), "target_values": target}


# the components of the tiny speech LMs of both families: MFCC units, a 2-layer Llama, a small vocoder
_TINY_COMPONENTS = {
    "unit_tokenizer_config": {"frontend": "mfcc", "n_units": 16},
    "text_config": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                    "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 256},
    "vocoder_config": {"n_units": 16, "hidden_size": 32, "intermediate_size": 64, "num_unit_layers": 1,
                       "num_frame_layers": 1},
}  # fmt: skip


def _tiny_speech_lm_config() -> Any:
    import copy

    from hf_slm.models.speech_lm import SpeechLMConfig

    return SpeechLMConfig(**copy.deepcopy(_TINY_COMPONENTS))


def _tiny_unit_ids(model: Any) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(0)
    units = [torch.randint(0, model.config.n_units, (n,), generator=g) for n in (10, 6)]
    ids = model.units_to_ids(units)
    ids["labels"] = ids["input_ids"].masked_fill(ids["attention_mask"] == 0, -100)
    return ids


def _tiny_prompts(model: Any) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(1)
    units = [torch.randint(0, model.config.n_units, (n,), generator=g) for n in (7, 4, 5)]
    return model.units_to_ids(units, add_eos=False, padding_side="left")


def _tiny_speech_text_lm_config() -> Any:
    import copy

    from hf_slm.models.speech_text_lm import SpeechTextLMConfig

    return SpeechTextLMConfig(text_vocab_size=40, **copy.deepcopy(_TINY_COMPONENTS))


def _tiny_mixed_ids(model: Any, padding_side: str = "right", end: str = "eos") -> dict[str, Any]:
    """Text and unit spans with their markers: [bos, TEXT, text.., SPEECH, units.., (TEXT.., eos)]."""
    import torch

    c = model.config
    g = torch.Generator().manual_seed(0 if end == "eos" else 1)
    rows = []
    for n_text, n_units in ((5, 7), (3, 4), (2, 9))[: 2 if end == "eos" else 3]:
        text = torch.randint(3, c.text_vocab_size, (n_text,), generator=g)
        units = torch.randint(0, c.n_units, (n_units,), generator=g) + c.unit_offset
        row = [
            torch.tensor([c.bos_token_id, c.text_token_id]),
            text,
            torch.tensor([c.speech_token_id]),
            units,
        ]
        row.append(torch.tensor([c.eos_token_id] if end == "eos" else [c.text_token_id]))
        rows.append(torch.cat(row))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), c.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        span = slice(width - len(r), width) if padding_side == "left" else slice(0, len(r))
        ids[i, span], mask[i, span] = r, 1
    out = {"input_ids": ids, "attention_mask": mask}
    if end == "eos":
        out["labels"] = ids.masked_fill(mask == 0, -100)
    return out


# family 3: tiny audio encoders (Whisper, HuBERT with layer or group norm) + the same Llama
_TINY_WHISPER = {"model_type": "whisper", "d_model": 32, "encoder_layers": 2, "encoder_attention_heads": 2,
                 "encoder_ffn_dim": 64, "num_mel_bins": 80, "max_source_positions": 200, "vocab_size": 64,
                 "decoder_layers": 1, "decoder_attention_heads": 2, "decoder_ffn_dim": 64,
                 "decoder_start_token_id": 1, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}  # fmt: skip
_TINY_HUBERT = {"model_type": "hubert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                "intermediate_size": 64, "conv_dim": [16, 16, 16], "conv_kernel": [10, 4, 4], "conv_stride": [5, 4, 4],
                "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4, "feat_extract_norm": "layer",
                "do_stable_layer_norm": True, "vocab_size": 8}  # fmt: skip


def _tiny_speech_aware_lm_config(adapter: str = "stack_mlp", encoder: str = "whisper", **kwargs: Any) -> Any:
    import copy

    from hf_slm.models.speech_aware_lm import SpeechAwareLMConfig

    audio = copy.deepcopy(_TINY_WHISPER if encoder == "whisper" else _TINY_HUBERT)
    if encoder == "hubert-group":
        audio.update(feat_extract_norm="group", do_stable_layer_norm=False)
    text = {**copy.deepcopy(_TINY_COMPONENTS["text_config"]), "vocab_size": 64}
    adapter_config = {"hidden_size": 32, "num_heads": 2, "num_layers": 1} if adapter == "qformer" else None
    return SpeechAwareLMConfig(
        audio_config=audio, text_config=text, adapter_type=adapter, adapter_config=adapter_config,
        audio_token_id=63, pad_token_id=0, bos_token_id=1, eos_token_id=2, **kwargs,
    )  # fmt: skip


def _tiny_audio_chat(model: Any, padding_side: str = "right") -> dict[str, Any]:
    """Two rows: [bos, 5 text, clip of 0.5 s, 3 text, clip of 0.3 s, 2 text] and [bos, 4 text, clip of 0.4 s, 3 text],
    with the exact number of placeholders per clip and the clips' features (log-mel or waveform)."""
    import torch

    c = model.config
    g = torch.Generator().manual_seed(0)
    samples = [8000, 4800, 6400]
    counts = model.audio_output_lengths(torch.tensor(samples)).tolist()
    text = lambda n: torch.randint(3, 60, (n,), generator=g)  # noqa: E731
    slot = lambda i: torch.full((counts[i],), c.audio_token_id)  # noqa: E731
    rows = [
        torch.cat([torch.tensor([1]), text(5), slot(0), text(3), slot(1), text(2)]),
        torch.cat([torch.tensor([1]), text(4), slot(2), text(3)]),
    ]
    width = max(len(r) for r in rows)
    ids = torch.zeros((2, width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        span = slice(width - len(r), width) if padding_side == "left" else slice(0, len(r))
        ids[i, span], mask[i, span] = r, 1
    if c.encoder_type == "whisper":
        frames = [n // 160 for n in samples]
        feats = torch.zeros(3, c.audio_config.num_mel_bins, max(frames))
        fmask = torch.zeros(3, max(frames), dtype=torch.long)
        for i, n in enumerate(frames):
            feats[i, :, :n], fmask[i, :n] = torch.randn(c.audio_config.num_mel_bins, n, generator=g), 1
    else:
        feats = torch.zeros(3, max(samples))
        fmask = torch.zeros(3, max(samples), dtype=torch.long)
        for i, n in enumerate(samples):
            feats[i, :n], fmask[i, :n] = 0.1 * torch.randn(n, generator=g), 1
    out = {"input_ids": ids, "attention_mask": mask, "input_features": feats, "feature_attention_mask": fmask}
    if padding_side == "right":
        out["labels"] = ids.masked_fill((mask == 0) | (ids == c.audio_token_id), -100)
    return out


def _register_all() -> None:
    from transformers import AutoModelForSpeechSeq2Seq
    from transformers.pipelines import PIPELINE_REGISTRY, SUPPORTED_TASKS

    from hf_slm.models.speech_aware_lm import (
        SpeechAwareLMConfig,
        SpeechAwareLMForConditionalGeneration,
        SpeechAwareLMProcessor,
    )
    from hf_slm.models.speech_lm import SpeechLMConfig, SpeechLMForCausalLM, SpeechLMProcessor
    from hf_slm.models.speech_text_lm import (
        SpeechTextLMConfig,
        SpeechTextLMForCausalLM,
        SpeechTextLMProcessor,
    )
    from hf_slm.pipelines import SpeechContinuationPipeline, SpeechRecognitionPipeline
    from hf_slm.units import SpeechUnitTokenizer, SpeechUnitTokenizerConfig
    from hf_slm.vocoders import UnitVocoder, UnitVocoderConfig

    register_model(
        ModelSpec(
            SpeechUnitTokenizerConfig,
            SpeechUnitTokenizer,
            ("AutoModel",),
            tiny_config=lambda: SpeechUnitTokenizerConfig(frontend="mfcc", n_units=16),
            example_inputs=_tiny_waves,
            prepare=_random_centroids,
            trainable=False,
        )
    )
    register_model(
        ModelSpec(
            UnitVocoderConfig,
            UnitVocoder,
            ("AutoModel",),
            tiny_config=lambda: UnitVocoderConfig(
                n_units=16,
                hidden_size=32,
                intermediate_size=64,
                num_unit_layers=1,
                num_frame_layers=1,
                speakers=["a"],
            ),
            example_inputs=_tiny_units,
        )
    )
    register_model(
        ModelSpec(
            SpeechLMConfig,
            SpeechLMForCausalLM,
            ("AutoModel", "AutoModelForCausalLM"),
            tiny_config=_tiny_speech_lm_config,
            example_inputs=_tiny_unit_ids,
            processor_class=SpeechLMProcessor,
            prepare=lambda m: _random_centroids(m.unit_tokenizer),
            generate_inputs=_tiny_prompts,
        )
    )
    # family 2 also loads as a speech-to-text model (as Qwen2-Audio does) and a text-to-waveform model,
    # so that transformers' speech-recognition and text-to-speech pipelines take it
    register_model(
        ModelSpec(
            SpeechTextLMConfig,
            SpeechTextLMForCausalLM,
            ("AutoModel", "AutoModelForCausalLM", "AutoModelForSpeechSeq2Seq", "AutoModelForTextToWaveform"),
            tiny_config=_tiny_speech_text_lm_config,
            example_inputs=_tiny_mixed_ids,
            processor_class=SpeechTextLMProcessor,
            prepare=lambda m: _random_centroids(m.unit_tokenizer),
            generate_inputs=lambda m: _tiny_mixed_ids(m, padding_side="left", end="text"),
        )
    )
    # family 3 loads as a speech-to-text model, as Qwen2-Audio, Voxtral and Granite Speech do; one
    # variant per adapter and encoder kind, and one with LoRA on the LLM (active only with audio)
    register_model(
        ModelSpec(
            SpeechAwareLMConfig,
            SpeechAwareLMForConditionalGeneration,
            ("AutoModel", "AutoModelForSpeechSeq2Seq"),
            tiny_config=_tiny_speech_aware_lm_config,
            example_inputs=_tiny_audio_chat,
            processor_class=SpeechAwareLMProcessor,
            variants={
                "linear-whisper": lambda: _tiny_speech_aware_lm_config("linear"),
                "conv-hubert": lambda: _tiny_speech_aware_lm_config("conv", "hubert"),
                "qformer-hubert-group-norm": lambda: _tiny_speech_aware_lm_config("qformer", "hubert-group"),
                "stack-mlp-lora": lambda: _tiny_speech_aware_lm_config(
                    text_lora={"r": 4, "target_modules": ["q_proj", "v_proj"]},
                    audio_lora={"r": 2, "target_modules": ["q_proj", "v_proj"]},
                ),
            },
        )
    )
    PIPELINE_REGISTRY.register_pipeline(
        "speech-continuation", pipeline_class=SpeechContinuationPipeline, pt_model=AutoModelForCausalLM
    )
    # transformers' own speech-recognition task, with the one path it lacks for decoder-only LMs added
    # (every other model runs transformers' code unchanged)
    # The entry keeps its model classes (AutoModelForSpeechSeq2Seq among them) and its default; only the
    # class changes, in place (register_pipeline would log an "overwriting" warning on every import).
    asr = SUPPORTED_TASKS["automatic-speech-recognition"]
    if AutoModelForSpeechSeq2Seq not in asr["pt"]:
        raise RuntimeError("transformers' speech-recognition pipeline no longer loads seq2seq models")
    asr["impl"] = SpeechRecognitionPipeline


_register_all()
