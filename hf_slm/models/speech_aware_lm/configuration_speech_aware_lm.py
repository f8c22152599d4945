"""Configuration of the speech-aware text LM (family 3: SALMONN / Qwen-Audio / Ultravox)."""

from __future__ import annotations

import math
from typing import Any

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from hf_slm.models.checks import check_config_dict

__all__ = ["ADAPTER_TYPES", "SpeechAwareLMConfig", "audio_output_length"]

ADAPTER_TYPES = ("linear", "stack_mlp", "conv", "qformer")

# Defaults of each adapter's settings (`adapter_config` overrides any of them).
ADAPTER_DEFAULTS: dict[str, dict[str, Any]] = {
    "linear": {},
    # Ultravox: stack `stack_factor` frames, then RMSNorm -> Linear -> SwiGLU -> RMSNorm -> Linear
    "stack_mlp": {"stack_factor": 4, "hidden_size": None},
    # two strided 1-d convolutions (kernel 3, padding 1): `num_layers` halvings of the frame rate
    "conv": {"num_layers": 2, "kernel_size": 3, "stride": 2, "hidden_size": None},
    # SALMONN: a Q-Former reads each window of `window_size` frames through `num_queries` queries
    "qformer": {"window_size": 8, "num_queries": 2, "num_layers": 2, "num_heads": 4, "hidden_size": 256},
}


def audio_output_length(num_samples: int, ops: list[list[Any]]) -> int:
    """Number of audio embeddings (= placeholder tokens) of a clip of `num_samples` samples.

    `ops` is the chain of length changes from the waveform to the adapter's output, as
    [`SpeechAwareLMConfig.audio_length_ops`] gives it: `["hop", h]` (a spectrogram: `n // h` frames),
    `["conv", kernel, stride, padding]` (a 1-d convolution), `["ceil", k]` (groups of `k`, the last
    one partial) and `["mul", q]` (`q` outputs per input).
    """
    n = int(num_samples)
    for op in ops:
        kind = op[0]
        if kind == "hop":
            n = n // int(op[1])
        elif kind == "conv":
            kernel, stride, padding = (int(x) for x in op[1:4])
            n = max((n + 2 * padding - kernel) // stride + 1, 0)
        elif kind == "ceil":
            n = math.ceil(n / int(op[1]))
        elif kind == "mul":
            n = n * int(op[1])
        else:
            raise ValueError(f"unknown length op {op!r}: one of hop, conv, ceil, mul")
    return n


class SpeechAwareLMConfig(PreTrainedConfig):
    r"""
    Configuration of [`SpeechAwareLMForConditionalGeneration`]: an audio encoder, a modality adapter
    and a text LLM, in the layout of `Qwen2AudioConfig` / `LlavaConfig`.

    Args:
        audio_config (`dict` or `PreTrainedConfig`, *optional*):
            The audio encoder: a Whisper config (its encoder runs on the real audio length, not on
            30 s of padding) or any transformers audio encoder loadable with `AutoModel` (HuBERT,
            wav2vec 2.0, WavLM, ...). Defaults to a small Whisper encoder.
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            The text LLM: any `AutoModelForCausalLM` config (Llama by default).
        adapter_type (`str`, defaults to `"stack_mlp"`):
            One of `"linear"`, `"stack_mlp"` (frame stacking + SwiGLU MLP, Ultravox), `"conv"` (strided
            convolutions) and `"qformer"` (window-level Q-Former, SALMONN).
        adapter_config (`dict`, *optional*): the adapter's settings (see `ADAPTER_DEFAULTS`).
        audio_token_id (`int`, *optional*): the id of the audio placeholder token in the LLM's vocabulary.
        audio_layer (`int`, defaults to -1): which encoder hidden state feeds the adapter (-1: the last).
        freeze_audio_encoder / freeze_adapter / freeze_text_model (`bool`): which parts train (LoRA
            weights, when present, train whatever these say of their part).
        audio_lora / text_lora (`dict`, *optional*): `peft.LoraConfig` keyword arguments for LoRA on the
            encoder / on the LLM (e.g. `{"r": 8, "target_modules": ["q_proj", "v_proj"]}`).
        text_lora_audio_only (`bool`, defaults to `True`): the LLM's LoRA is active only when the input
            holds audio, so text-only prompts run on the untouched LLM (Granite Speech's guard
            against forgetting).
        component_sources (`dict`, *optional*): `{"audio_encoder": ID, "text_model": ID}` when the
            checkpoint is slim: the base weights are loaded from these folders / Hub ids, the
            checkpoint holds the adapter and the LoRA weights only.
        slim_checkpoint (`bool`, defaults to `False`): set in the config of a slim checkpoint.
        max_audio_seconds (`float`, defaults to 30.0): longest clip accepted.

    Example:
        >>> from hf_slm.models.speech_aware_lm import SpeechAwareLMConfig
        >>> config = SpeechAwareLMConfig(
        ...     audio_config={"model_type": "whisper", "d_model": 64, "encoder_layers": 2,
        ...                   "encoder_attention_heads": 4, "encoder_ffn_dim": 128, "num_mel_bins": 80},
        ...     text_config={"model_type": "llama", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
        ...                  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4},
        ...     adapter_type="stack_mlp", audio_token_id=99,
        ... )
        >>> config.audio_length_ops()
        [['hop', 160], ['conv', 3, 1, 1], ['conv', 3, 2, 1], ['ceil', 4]]
    """

    model_type = "hf_slm_speech_aware_lm"
    sub_configs_defaults = {
        "audio_config": SubConfigSpec(config_class=AutoConfig, model_type="whisper"),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }

    audio_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    adapter_type: str = "stack_mlp"
    adapter_config: dict | None = None
    audio_token_id: int | None = None
    audio_layer: int = -1
    freeze_audio_encoder: bool = True
    freeze_adapter: bool = False
    freeze_text_model: bool = True
    audio_lora: dict | None = None
    text_lora: dict | None = None
    text_lora_audio_only: bool = True
    component_sources: dict | None = None
    slim_checkpoint: bool = False
    max_audio_seconds: float = 30.0
    tie_word_embeddings: bool = False

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        check_config_dict(cls, config_dict)  # a bare LLM's folder would build a default Whisper + 7B Llama
        return super().from_dict(config_dict, **kwargs)

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.adapter_type not in ADAPTER_TYPES:
            raise ValueError(f"unknown adapter_type {self.adapter_type!r}: one of {ADAPTER_TYPES}")
        allowed = ADAPTER_DEFAULTS[self.adapter_type]
        unknown = sorted(set(self.adapter_config or {}) - set(allowed))
        if unknown:
            raise ValueError(
                f"adapter_config of a {self.adapter_type!r} adapter has unknown keys {unknown}: "
                f"allowed {sorted(allowed)}"
            )
        self.adapter_config = {**allowed, **(self.adapter_config or {})}
        tc = self.text_config
        if self.audio_token_id is not None and not 0 <= self.audio_token_id < tc.vocab_size:
            raise ValueError(
                f"audio_token_id {self.audio_token_id} is outside the LLM's vocabulary ({tc.vocab_size} tokens): "
                "add the placeholder token to the tokenizer and resize the LLM's embeddings"
            )
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            if getattr(self, name, None) is None and getattr(tc, name, None) is not None:
                setattr(self, name, getattr(tc, name))
        self.tie_word_embeddings = bool(getattr(tc, "tie_word_embeddings", False))

    # -- the audio path's lengths -------------------------------------------------------------------
    @property
    def encoder_type(self) -> str:
        """`"whisper"` (log-mel input, our real-length forward) or `"waveform"` (raw audio input)."""
        return "whisper" if self.audio_config.model_type == "whisper" else "waveform"

    @property
    def audio_hidden_size(self) -> int:
        ac = self.audio_config
        return int(getattr(ac, "d_model", None) or ac.hidden_size)

    @property
    def sampling_rate(self) -> int:
        return 16_000

    def encoder_length_ops(self) -> list[list[Any]]:
        """Length changes from samples to encoder frames."""
        ac = self.audio_config
        if self.encoder_type == "whisper":
            return [["hop", 160], ["conv", 3, 1, 1], ["conv", 3, 2, 1]]
        if not hasattr(ac, "conv_kernel"):
            raise ValueError(
                f"cannot tell the frame rate of a {ac.model_type!r} encoder (no conv_kernel / conv_stride): "
                "use a Whisper, HuBERT, wav2vec 2.0 or WavLM encoder"
            )
        return [["conv", int(k), int(s), 0] for k, s in zip(ac.conv_kernel, ac.conv_stride)]

    def adapter_length_ops(self) -> list[list[Any]]:
        """Length changes from encoder frames to audio embeddings."""
        a = self.adapter_config
        if self.adapter_type == "stack_mlp":
            return [["ceil", a["stack_factor"]]]
        if self.adapter_type == "conv":
            k = a["kernel_size"]
            return [["conv", k, a["stride"], (k - 1) // 2] for _ in range(a["num_layers"])]
        if self.adapter_type == "qformer":
            return [["ceil", a["window_size"]], ["mul", a["num_queries"]]]
        return []

    def audio_length_ops(self) -> list[list[Any]]:
        """The whole chain, samples -> audio embeddings (what the processor needs to count placeholders)."""
        return self.encoder_length_ops() + self.adapter_length_ops()

    @property
    def max_encoder_frames(self) -> int | None:
        """Whisper's positional table bounds the frames it can read; other encoders have no bound."""
        if self.encoder_type == "whisper":
            return int(self.audio_config.max_source_positions)
        return None
