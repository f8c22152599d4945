"""The speech-aware text LM (family 3): audio encoder -> modality adapter -> text LLM -> text.

SALMONN, Qwen-Audio and Ultravox share one layout: an audio encoder (Whisper, HuBERT, ...) turns a
clip into frames, an adapter brings the frames to the LLM's width (and usually a lower frame rate),
and the adapter's outputs are scattered into the LLM's input embeddings at audio placeholder
tokens. The LLM then answers in text. Everything here is transformers' own parts (encoders, LLMs,
the BLIP-2 Q-Former, PEFT LoRA) except the adapters' small glue and Whisper's real-length forward.

Example:
    >>> import torch
    >>> from hf_slm.models.speech_aware_lm import SpeechAwareLMConfig, SpeechAwareLMForConditionalGeneration
    >>> config = SpeechAwareLMConfig(
    ...     audio_config={"model_type": "whisper", "d_model": 32, "encoder_layers": 1, "encoder_attention_heads": 2,
    ...                   "encoder_ffn_dim": 64, "num_mel_bins": 80, "max_source_positions": 1500},
    ...     text_config={"model_type": "llama", "vocab_size": 50, "hidden_size": 32, "intermediate_size": 64,
    ...                  "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2},
    ...     audio_token_id=49,
    ... )
    >>> model = SpeechAwareLMForConditionalGeneration(config)
    >>> model.audio_output_lengths(torch.tensor([16000])).item()  # placeholders for 1 s of audio
    13
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    GenerationConfig,
    GenerationMixin,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.utils import ModelOutput, can_return_tuple, is_torchdynamo_compiling

from hf_slm.audio import AudioError
from hf_slm.models.checks import check_context_length
from hf_slm.models.speech_aware_lm.configuration_speech_aware_lm import (
    SpeechAwareLMConfig,
    audio_output_length,
)

__all__ = [
    "ConvAdapter",
    "LinearAdapter",
    "QFormerAdapter",
    "SpeechAwareLMForConditionalGeneration",
    "SpeechAwareLMOutputWithPast",
    "SpeechAwareLMPreTrainedModel",
    "StackMLPAdapter",
    "build_adapter",
]


@dataclass
class SpeechAwareLMOutputWithPast(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): next-token loss on the `labels` (not -100).
        logits (`torch.FloatTensor` of shape `(batch, tokens, vocab)`): the LLM's next-token scores.
        cache (`Cache`, *optional*): the LLM's key/value cache.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): the LLM's hidden states per layer.
        attentions (`tuple(torch.FloatTensor)`, *optional*): the LLM's attention weights per layer.
        audio_embeds (`torch.FloatTensor` of shape `(audio_tokens, hidden)`, *optional*): the adapter's
            outputs that replaced the audio placeholders, clip after clip.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: Any = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    audio_embeds: torch.FloatTensor | None = None


def _mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """`(batch, width)` boolean mask, True on the first `lengths[i]` positions of row `i`."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


# --- adapters -----------------------------------------------------------------------------------------
# Each adapter maps encoder frames `(batch, frames, audio_hidden)` and their valid lengths to LLM-width
# embeddings `(batch, positions, text_hidden)`; their output lengths follow `config.adapter_length_ops()`,
# which the processor uses to write exactly as many placeholders.
class LinearAdapter(nn.Module):
    """One linear map per frame (no change of frame rate)."""

    def __init__(self, config: SpeechAwareLMConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(config.audio_hidden_size, config.text_config.hidden_size)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.proj(frames)


class StackMLPAdapter(nn.Module):
    """Ultravox's projector: stack `stack_factor` consecutive frames, then RMSNorm, a SwiGLU MLP, RMSNorm
    and a linear map. The last stack is zero-padded."""

    def __init__(self, config: SpeechAwareLMConfig) -> None:
        super().__init__()
        a = config.adapter_config
        self.stack_factor = int(a["stack_factor"])
        d_in = config.audio_hidden_size * self.stack_factor
        d_out = config.text_config.hidden_size
        hidden = int(a["hidden_size"] or 2 * d_out)
        self.norm_in = nn.RMSNorm(d_in)
        self.gate_up = nn.Linear(d_in, 2 * hidden, bias=False)
        self.norm_mid = nn.RMSNorm(hidden)
        self.proj = nn.Linear(hidden, d_out, bias=False)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b, t, d = frames.shape
        k = self.stack_factor
        frames = frames * _mask(lengths, t)[..., None].to(frames.dtype)  # zeros, as in a clip alone
        pad = (-t) % k
        if pad:
            frames = nn.functional.pad(frames, (0, 0, 0, pad))
        x = self.norm_in(frames.reshape(b, (t + pad) // k, k * d))
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.proj(self.norm_mid(nn.functional.silu(gate) * up))


class ConvAdapter(nn.Module):
    """Strided 1-d convolutions (GELU between), then a linear map to the LLM's width."""

    def __init__(self, config: SpeechAwareLMConfig) -> None:
        super().__init__()
        a = config.adapter_config
        d_out = config.text_config.hidden_size
        hidden = int(a["hidden_size"] or d_out)
        k, s = int(a["kernel_size"]), int(a["stride"])
        self.ops = config.adapter_length_ops()
        self.convs = nn.ModuleList(
            nn.Conv1d(
                config.audio_hidden_size if i == 0 else hidden, hidden, k, stride=s, padding=(k - 1) // 2
            )
            for i in range(int(a["num_layers"]))
        )
        self.proj = nn.Linear(hidden, d_out)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = frames.transpose(1, 2)
        for conv, op in zip(self.convs, self.ops):
            # zero what lies past each clip, so a padded batch computes what each clip alone would
            x = x * _mask(lengths, x.shape[-1])[:, None, :].to(x.dtype)
            x = nn.functional.gelu(conv(x))
            lengths = torch.clamp((lengths + 2 * op[3] - op[1]) // op[2] + 1, min=0)
        return self.proj(x.transpose(1, 2))


class QFormerAdapter(nn.Module):
    """SALMONN's window-level Q-Former: each window of `window_size` frames is read by `num_queries`
    learned queries through transformers' BLIP-2 Q-Former (cross-attention to the window), then mapped
    to the LLM's width."""

    def __init__(self, config: SpeechAwareLMConfig) -> None:
        super().__init__()
        from transformers import Blip2QFormerConfig, Blip2QFormerModel

        a = config.adapter_config
        self.window_size, self.num_queries = int(a["window_size"]), int(a["num_queries"])
        hidden = int(a["hidden_size"])
        qconfig = Blip2QFormerConfig(
            hidden_size=hidden,
            num_hidden_layers=int(a["num_layers"]),
            num_attention_heads=int(a["num_heads"]),
            intermediate_size=4 * hidden,
            encoder_hidden_size=config.audio_hidden_size,
            cross_attention_frequency=1,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        self.qformer = Blip2QFormerModel(qconfig)
        self.queries = nn.Parameter(torch.empty(1, self.num_queries, hidden).normal_(std=0.02))
        self.proj = nn.Linear(hidden, config.text_config.hidden_size)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b, t, d = frames.shape
        w = self.window_size
        pad = (-t) % w
        frames = nn.functional.pad(frames, (0, 0, 0, pad))
        n_win = (t + pad) // w
        mask = _mask(lengths, t + pad).reshape(b * n_win, w)
        mask[:, 0] = True  # a window wholly past its clip reads its padding (its output is dropped)
        out = self.qformer(
            query_embeds=self.queries.expand(b * n_win, -1, -1),
            encoder_hidden_states=frames.reshape(b * n_win, w, d),
            encoder_attention_mask=mask.long(),
        ).last_hidden_state
        return self.proj(out.reshape(b, n_win * self.num_queries, -1))


ADAPTERS = {
    "linear": LinearAdapter,
    "stack_mlp": StackMLPAdapter,
    "conv": ConvAdapter,
    "qformer": QFormerAdapter,
}


def build_adapter(config: SpeechAwareLMConfig) -> nn.Module:
    """The adapter `config.adapter_type` names, with `config.adapter_config`."""
    return ADAPTERS[config.adapter_type](config)


# --- the audio encoder ------------------------------------------------------------------------------
def _build_encoder(config: SpeechAwareLMConfig) -> nn.Module:
    if config.encoder_type == "whisper":
        return _whisper_encoder_class()(config.audio_config)
    return AutoModel.from_config(config.audio_config)


@functools.cache
def _whisper_encoder_class() -> type:
    from transformers.models.whisper.modeling_whisper import WhisperEncoder, sinusoids

    class SinusoidWhisperEncoder(WhisperEncoder):
        """transformers' `WhisperEncoder` (same modules and weights), whose positional table is initialised
        where it lives. `WhisperPreTrainedModel._init_weights` sets the sinusoids from the encoder module,
        which transformers has already marked initialised when the encoder was built inside our model: missing
        from a checkpoint (meta-device init), the table came back as a random embedding."""

        def _init_weights(self, module: nn.Module) -> None:
            super()._init_weights(module)
            if module is getattr(self, "embed_positions", None):
                init.copy_(module.weight, sinusoids(*module.weight.shape).to(module.weight))

    return SinusoidWhisperEncoder


def _whisper_forward(encoder: nn.Module, features: torch.Tensor, mel_lengths: torch.Tensor, layer: int):
    """Whisper's encoder on the real length of each clip.

    transformers' `WhisperEncoder.forward` insists on 30 s of (padded) log-mel frames, the input length
    Whisper was trained on; attending over 3,000 frames of padding for a 3-s clip costs ~10x the compute.
    Ultravox runs the encoder on the real length instead (the positional table is sliced), which is
    what this does, with the same modules and weights. Padded frames of a batch are zeroed between the
    two convolutions and masked out of attention, so a batch gives what each clip alone gives.
    """
    x = nn.functional.gelu(encoder.conv1(features))
    x = x * _mask(mel_lengths, x.shape[-1])[:, None, :].to(x.dtype)
    x = nn.functional.gelu(encoder.conv2(x))
    lengths = encoder._get_feat_extract_output_lengths(mel_lengths)
    t = x.shape[-1]
    if t > encoder.max_source_positions:
        raise AudioError(
            f"{t} encoder frames exceed this Whisper encoder's {encoder.max_source_positions} positions "
            f"({encoder.max_source_positions * 2 * 160 / 16000:.0f} s of audio): cut the audio into shorter clips"
        )
    # the positional table is called as a module, not read as `.weight`: with `device_map` offloading,
    # accelerate's hooks bring the weight in on the module's forward only
    positions = encoder.embed_positions(torch.arange(t, device=x.device))
    x = x.transpose(1, 2) + positions.to(device=x.device, dtype=x.dtype)
    x = nn.functional.dropout(x, p=encoder.dropout, training=encoder.training)
    valid = _mask(lengths, t)
    bias = None
    if not bool(valid.all()):
        bias = torch.zeros(valid.shape, dtype=x.dtype, device=x.device)
        bias = bias.masked_fill(~valid, torch.finfo(x.dtype).min)[:, None, None, :]
    last = len(encoder.layers) if layer == -1 else layer
    for block in encoder.layers[:last]:
        x = block(x, bias)
    if layer == -1:
        x = encoder.layer_norm(x)
    return x, lengths


def _text_lora_switch(module: nn.Module, active: bool) -> list[tuple[nn.Module, bool]]:
    """Turn the LoRA layers of `module` on or off for the forward pass; returns what to restore.

    peft's own switch (`enable_adapters`) also changes `requires_grad` of the LoRA weights, which must
    not change mid-training when a text-only batch comes by: only the forward path is switched here.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    saved = []
    for m in module.modules():
        if isinstance(m, BaseTunerLayer):
            saved.append((m, m._disable_adapters))
            m._disable_adapters = not active
    return saved


def _inject_lora(module: nn.Module, settings: dict[str, Any]) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    try:
        inject_adapter_in_model(LoraConfig(**settings), module)
    except (TypeError, ValueError) as err:
        raise ValueError(f"LoRA settings {settings}: {err}") from None


def _load_base_weights(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load a plain checkpoint's weights into `module`, even with LoRA layers injected in it (peft renames
    an adapted layer's own weights `<name>.base_layer.<param>`)."""
    own = module.state_dict()
    mapped = {}
    for key, value in state.items():
        if key in own:
            mapped[key] = value
            continue
        head, _, tail = key.rpartition(".")
        alt = f"{head}.base_layer.{tail}"
        if alt not in own:
            raise ValueError(
                f"the {what}'s weight {key!r} has no place in the model: is it the same architecture?"
            )
        mapped[alt] = value
    missing = [k for k in own if k not in mapped and "lora_" not in k]
    if missing:
        raise ValueError(f"the {what}'s checkpoint lacks {missing[:5]} ({len(missing)} weights)")
    module.load_state_dict(mapped, strict=False)


def _load_part(kind: str, source: Any) -> PreTrainedModel:
    """An audio encoder or a text LLM from a folder / Hub id (or as given)."""
    if isinstance(source, PreTrainedModel):
        return source
    if kind == "text":
        return AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    config = AutoConfig.from_pretrained(source)
    if config.model_type == "whisper":  # a WhisperForConditionalGeneration checkpoint: take its encoder
        from transformers import WhisperModel

        return WhisperModel.from_pretrained(source, dtype=torch.float32).get_encoder()
    return AutoModel.from_pretrained(source, dtype=torch.float32)  # e.g. HubertModel from a HubertForCTC


# --- the model ----------------------------------------------------------------------------------------
class SpeechAwareLMPreTrainedModel(PreTrainedModel):
    config_class = SpeechAwareLMConfig
    # the LLM is the base model (as `model` is in transformers' LMs)
    base_model_prefix = "text_model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = []
    _supports_sdpa = True
    _supports_attention_backend = True

    def _init_weights(self, module: nn.Module) -> None:
        # The encoder, the LLM and the Q-Former are `PreTrainedModel`s that initialise themselves. The
        # adapters' own layers get PyTorch's default initialisation (what they were trained from), through
        # transformers' guarded functions, so that weights loaded from a checkpoint are never drawn again.
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.RMSNorm) and module.weight is not None:
            init.ones_(module.weight)
        elif isinstance(module, QFormerAdapter):
            init.normal_(module.queries, std=0.02)


class SpeechAwareLMForConditionalGeneration(SpeechAwareLMPreTrainedModel, GenerationMixin):
    """An audio encoder, a modality adapter and a text LLM; audio + text in, text out.

    Token ids are the LLM's; `config.audio_token_id` marks where audio embeddings go (one placeholder
    per embedding: [`SpeechAwareLMProcessor`] writes exactly as many as the clip gives).
    """

    _default_generation: dict[str, Any] = {"do_sample": False, "max_new_tokens": 64}
    # `hf-slm train` keeps the rows (audio, instruction, response) and batches them with the processor
    trains_on_rows = True

    def __init__(self, config: SpeechAwareLMConfig) -> None:
        super().__init__(config)
        self.audio_encoder = _build_encoder(config)
        self.adapter = build_adapter(config)
        self.text_model = AutoModelForCausalLM.from_config(config.text_config)
        # while `generate` runs: whether its prompt holds audio (the decoding steps' own inputs do not)
        self._audio_prompt: bool | None = None
        self.post_init()
        # LoRA goes in after post_init: initialising the LLM's linear layers would also draw its
        # zero-initialised B matrices, and an untrained LoRA must leave the model unchanged.
        if config.audio_lora:
            _inject_lora(self.audio_encoder, config.audio_lora)
        if config.text_lora:
            _inject_lora(self.text_model, config.text_lora)
        self.apply_freezing()
        if self.generation_config is not None:
            self.generation_config.update(**self._default_generation)

    # -- parts and what trains -----------------------------------------------------------------------
    def apply_freezing(self) -> None:
        """Set `requires_grad` from the config: each part frozen or not, LoRA weights always trainable."""
        c = self.config
        for part, frozen in ((self.audio_encoder, c.freeze_audio_encoder), (self.adapter, c.freeze_adapter),
                             (self.text_model, c.freeze_text_model)):  # fmt: skip
            for name, p in part.named_parameters():
                p.requires_grad_("lora_" in name or not frozen)
        if hasattr(self.audio_encoder, "embed_positions"):
            self.audio_encoder.embed_positions.requires_grad_(False)  # Whisper's fixed sinusoids

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any) -> Any:
        config = kwargs.get("config")
        if not isinstance(config, SpeechAwareLMConfig):
            config_kwargs = {
                k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs
            }
            config = SpeechAwareLMConfig.from_pretrained(pretrained_model_name_or_path, **config_kwargs)
        if getattr(config, "slim_checkpoint", False):
            return cls._from_slim(pretrained_model_name_or_path, config, kwargs)
        kwargs["config"] = config  # read once: transformers would read config.json again
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs
        )
        model._reset_missing_lora(info["missing_keys"])
        model.apply_freezing()  # loading rebuilds parameters, which come back trainable
        return (model, info) if want_info else model

    def _reset_missing_lora(self, missing: Any) -> None:
        """LoRA weights missing from a checkpoint start as peft starts them (B = 0: the layer is its base), not
        as the LLM's or encoder's `_init_weights` would draw a plain linear layer."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        missing = set(missing)
        if not missing:
            return
        for name, module in self.named_modules():
            if isinstance(module, BaseTunerLayer) and any(k.startswith(f"{name}.lora_") for k in missing):
                for adapter in module.active_adapters:
                    module.reset_lora_parameters(adapter, True)

    def train(self, mode: bool = True) -> SpeechAwareLMForConditionalGeneration:
        super().train(mode)
        if self.config.freeze_audio_encoder and not self.config.audio_lora:
            self.audio_encoder.eval()  # a frozen encoder gives the same frames (no SpecAugment, no dropout)
        return self

    def get_input_embeddings(self) -> nn.Module:
        return self.text_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.text_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.text_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.text_model.set_output_embeddings(value)

    # -- building from checkpoints ----------------------------------------------------------------------
    @classmethod
    def from_components(
        cls,
        audio_encoder: str | Path | PreTrainedModel,
        text_model: str | Path | PreTrainedModel,
        adapter: str = "stack_mlp",
        adapter_config: dict | None = None,
        tokenizer: Any = None,
        config: SpeechAwareLMConfig | None = None,
        return_processor: bool = False,
        **config_kwargs: Any,
    ) -> Any:
        """Compose a model from an existing audio encoder and text LLM (folders, Hub ids or models).

        The LLM's tokenizer (its folder's, or `tokenizer=`) gets the chat tokens of
        [`SpeechAwareLMProcessor`] (`<|audio|>` among them) when it lacks them, and the LLM's embeddings
        grow to match. The adapter is new (trained by `hf-slm train` stage 2).

        Args:
            audio_encoder: a Whisper checkpoint (its encoder is taken) or any `AutoModel` audio encoder
                (HuBERT, wav2vec 2.0, WavLM; a `...ForCTC` checkpoint gives its encoder).
            text_model: an `AutoModelForCausalLM` checkpoint.
            adapter: `"linear"`, `"stack_mlp"`, `"conv"` or `"qformer"`; `adapter_config` its settings.
            config: build with this config (what a slim checkpoint does) instead of a new one.
            return_processor: also return the matching [`SpeechAwareLMProcessor`].
            config_kwargs: other [`SpeechAwareLMConfig`] fields (freezing, LoRA, ...).

        Returns:
            The model, or `(model, processor)` with `return_processor=True`.
        """
        from hf_slm.models.speech_aware_lm.processing_speech_aware_lm import SpeechAwareLMProcessor

        sources = {
            name: str(src) for name, src in (("audio_encoder", audio_encoder), ("text_model", text_model))
            if isinstance(src, (str, Path))
        }  # fmt: skip
        encoder = _load_part("audio", audio_encoder)
        lm = _load_part("text", text_model)
        base_vocab = lm.get_input_embeddings().num_embeddings
        if sources:
            sources["base_vocab_size"] = base_vocab
        processor = None
        if config is None or return_processor:
            processor = SpeechAwareLMProcessor.for_components(audio_encoder, text_model, tokenizer=tokenizer)
            if len(processor.tokenizer) > lm.get_input_embeddings().num_embeddings:
                _grow_embeddings(lm, len(processor.tokenizer))
        if config is None:
            config = cls.config_class(
                audio_config=encoder.config.to_dict(),
                text_config=lm.config.to_dict(),
                adapter_type=adapter,
                adapter_config=adapter_config,
                audio_token_id=processor.audio_token_id,
                pad_token_id=processor.tokenizer.pad_token_id,
                bos_token_id=processor.tokenizer.bos_token_id,
                eos_token_id=processor.end_token_id,
                component_sources=sources or None,
                **config_kwargs,
            )
        else:
            config = copy.deepcopy(config)
            if config.text_config.vocab_size > base_vocab:  # chat tokens added when the model was built
                _grow_embeddings(lm, config.text_config.vocab_size)
        model = cls(config)
        _load_base_weights(model.audio_encoder, encoder.state_dict(), "audio encoder")
        _load_base_weights(model.text_model, lm.state_dict(), "text model")
        model.apply_freezing()
        if return_processor:
            processor.length_ops = model.config.audio_length_ops()
            processor.max_seconds = model.max_audio_seconds
            return model, processor
        return model

    @property
    def max_audio_seconds(self) -> float:
        limit = self.config.max_audio_seconds
        if self.config.max_encoder_frames is not None:  # Whisper: 2 mel frames of 10 ms per position
            limit = min(limit, self.config.max_encoder_frames * 2 * 160 / self.config.sampling_rate)
        return limit

    # -- slim checkpoints ------------------------------------------------------------------------------------
    def slim_state_dict(self) -> dict[str, torch.Tensor]:
        """What a slim checkpoint holds: the adapter and every LoRA weight (the rest comes from the bases)."""
        c = self.config
        trained_in_full = [n for n, f in (("audio encoder", c.freeze_audio_encoder), ("text model", c.freeze_text_model)) if not f]  # fmt: skip
        if trained_in_full:
            raise ValueError(
                f"the {' and '.join(trained_in_full)} train in full (freeze_* is False), so their weights are not "
                "the base checkpoint's: save a full checkpoint (slim=False)"
            )
        state = {k: v for k, v in self.state_dict().items() if k.startswith("adapter.") or "lora_" in k}
        # the rows of tokens added to the base LLM's vocabulary (chat tokens) were made here, not loaded
        base = int((c.component_sources or {}).get("base_vocab_size") or 0)
        if base and self.config.text_config.vocab_size > base:
            state["added_embeddings.input"] = self.get_input_embeddings().weight[base:]
            out = self.get_output_embeddings()
            if out is not None and out.weight.data_ptr() != self.get_input_embeddings().weight.data_ptr():
                state["added_embeddings.output"] = out.weight[base:]
        return {k: v.detach().clone().contiguous() for k, v in state.items()}

    def save_pretrained(
        self, save_directory: str | Path, *args: Any, slim: bool = False, **kwargs: Any
    ) -> None:
        """Save a full checkpoint, or with `slim=True` only the adapter and LoRA weights plus the ids of the
        base encoder and LLM (`config.component_sources`), which `from_pretrained` loads back the same."""
        if not slim:
            self.config.slim_checkpoint = False
            return super().save_pretrained(save_directory, *args, **kwargs)
        sources = self.config.component_sources or {}
        if not {"audio_encoder", "text_model"} <= set(sources):
            raise ValueError(
                "a slim checkpoint needs the ids of its base encoder and LLM: build the model with "
                "from_components(audio_encoder=PATH_OR_ID, text_model=PATH_OR_ID), or save it in full (slim=False)"
            )
        state = self.slim_state_dict()
        self.config.slim_checkpoint = True
        try:
            super().save_pretrained(save_directory, *args, state_dict=state, **kwargs)
        finally:
            self.config.slim_checkpoint = False

    @classmethod
    def _from_slim(cls, path: Any, config: SpeechAwareLMConfig, kwargs: dict[str, Any]) -> Any:
        from safetensors.torch import load_file
        from transformers.utils import cached_file

        sources = config.component_sources
        config.slim_checkpoint = False
        model = cls.from_components(sources["audio_encoder"], sources["text_model"], config=config)
        lookup = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs}
        state = load_file(cached_file(str(path), "model.safetensors", **lookup))
        expected = set(model.slim_state_dict())
        missing, unexpected = expected - set(state), set(state) - expected
        if missing or unexpected:
            raise ValueError(
                f"the slim checkpoint {path} does not fit its config: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}"
            )
        base = int(sources.get("base_vocab_size") or 0)
        with torch.no_grad():
            for key, emb in (("added_embeddings.input", model.get_input_embeddings()),
                             ("added_embeddings.output", model.get_output_embeddings())):  # fmt: skip
                if key in state:
                    emb.weight[base:] = state.pop(key)
        model.load_state_dict(state, strict=False)
        with contextlib.suppress(OSError):
            model.generation_config = GenerationConfig.from_pretrained(str(path), **lookup)
        model.apply_freezing()
        model.eval()
        return model

    def add_lora(
        self,
        text: dict[str, Any] | None = None,
        audio: dict[str, Any] | None = None,
        audio_only: bool | None = None,
    ) -> SpeechAwareLMForConditionalGeneration:
        """Put new LoRA layers on the LLM (`text`) and / or the encoder (`audio`): `peft.LoraConfig` keyword
        arguments, e.g. `{"r": 8, "target_modules": ["q_proj", "v_proj"]}`. They start as the identity
        (B = 0) and are trainable; the rest keeps its freezing. `audio_only` sets `text_lora_audio_only`."""
        for part, settings, field in (
            (self.text_model, text, "text_lora"),
            (self.audio_encoder, audio, "audio_lora"),
        ):
            if settings is None:
                continue
            if getattr(self.config, field):
                raise ValueError(
                    f"the model already has {field} {getattr(self.config, field)}: merge_lora() it first"
                )
            _inject_lora(part, dict(settings))
            setattr(self.config, field, dict(settings))
        if audio_only is not None:
            self.config.text_lora_audio_only = bool(audio_only)
        self.apply_freezing()
        return self

    def merge_lora(self) -> SpeechAwareLMForConditionalGeneration:
        """Fold the LoRA weights into the encoder / LLM (a plain model, no LoRA layers, same outputs
        on audio inputs). With `text_lora_audio_only`, text-only prompts then also see the merged LLM."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        for part in (self.audio_encoder, self.text_model):
            for name, module in list(part.named_modules()):
                if isinstance(module, BaseTunerLayer):
                    module.merge()
                    parent_name, _, child = name.rpartition(".")
                    parent = part.get_submodule(parent_name) if parent_name else part
                    setattr(parent, child, module.get_base_layer())
        self.config.audio_lora = self.config.text_lora = None
        self.apply_freezing()
        return self

    # -- audio -> embeddings -------------------------------------------------------------------------------
    def audio_output_lengths(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Audio embeddings (= placeholders) per clip of `num_samples` samples."""
        ops = self.config.audio_length_ops()
        return torch.tensor([audio_output_length(int(n), ops) for n in num_samples], dtype=torch.long)

    def _encoder_frames(
        self, features: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder hidden states `(clips, frames, hidden)` and each clip's number of valid frames."""
        c = self.config
        lengths = mask.sum(-1).long()
        if c.encoder_type == "whisper":
            return _whisper_forward(self.audio_encoder, features, lengths, c.audio_layer)
        enc = self.audio_encoder
        want_layer = c.audio_layer != -1
        if getattr(enc.config, "feat_extract_norm", "layer") == "layer":
            out = enc(features, attention_mask=mask, output_hidden_states=want_layer)
            frames = out.hidden_states[c.audio_layer] if want_layer else out.last_hidden_state
        else:
            # group-normalised feature encoders (HuBERT base, wav2vec 2.0 base) normalise over the
            # whole input, padding included, and take no attention mask: one clip at a time
            rows = []
            for x, n in zip(features, lengths):
                out = enc(x[None, : int(n)], output_hidden_states=want_layer)
                rows.append((out.hidden_states[c.audio_layer] if want_layer else out.last_hidden_state)[0])
            frames = nn.utils.rnn.pad_sequence(rows, batch_first=True)
        frame_lengths = enc._get_feat_extract_output_lengths(lengths).long()
        return frames, frame_lengths

    def get_audio_embeds(
        self, input_features: torch.FloatTensor, feature_attention_mask: torch.LongTensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The adapter's outputs for a batch of clips: `(clips, positions, hidden)` and valid positions per clip."""
        if feature_attention_mask is None:
            feature_attention_mask = torch.ones(
                input_features.shape[0], input_features.shape[-1], dtype=torch.long
            )
        mask = feature_attention_mask.to(input_features.device)
        features = input_features.to(self.dtype)
        encoder_trains = any(p.requires_grad for p in self.audio_encoder.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and encoder_trains):
            frames, frame_lengths = self._encoder_frames(features, mask)
        embeds = self.adapter(frames, frame_lengths)
        ops = self.config.adapter_length_ops()
        lengths = torch.tensor([audio_output_length(int(n), ops) for n in frame_lengths])
        return embeds, lengths

    def _merge_audio(
        self,
        input_ids: torch.LongTensor | None,
        input_features: torch.FloatTensor | None,
        feature_attention_mask: torch.LongTensor | None,
        audio_in_cache: bool = False,
        inputs_embeds: torch.FloatTensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token embeddings (`inputs_embeds`, or those of `input_ids`) with the audio embeddings scattered in
        at the placeholders.

        Without `input_ids`, the placeholders are the positions of `inputs_embeds` that hold the audio
        token's own embedding. With `audio_in_cache` (a generation continued from a cache that holds the
        prompt), clips whose placeholders are all in the cache are not encoded again."""
        audio_id = self.config.audio_token_id
        if input_ids is not None:
            placeholders = (
                input_ids == audio_id
                if audio_id is not None
                else torch.zeros_like(input_ids, dtype=torch.bool)
            )
        elif audio_id is not None:
            own = self.get_input_embeddings()(torch.tensor(audio_id, device=inputs_embeds.device))
            placeholders = (inputs_embeds == own.to(inputs_embeds.dtype)).all(-1)
        else:
            placeholders = torch.zeros(inputs_embeds.shape[:2], dtype=torch.bool, device=inputs_embeds.device)
        given = inputs_embeds is not None  # ready-made embeddings may already hold the audio
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids.masked_fill(placeholders, 0))
        embeds = inputs_embeds
        if input_features is None:
            # decoding from a cache: a placeholder id among new tokens (prompt-lookup candidates copy the prompt's)
            # is no clip; it is never chosen (generate suppresses it), so its embedding does not matter
            if given or audio_in_cache or is_torchdynamo_compiling():  # no data-dependent check when traced
                return embeds, None
            n_slots = int(placeholders.sum())
            if n_slots:
                raise ValueError(
                    f"the input has {n_slots} audio placeholders but no audio: pass the processor's input_features "
                    "and feature_attention_mask along with input_ids"
                )
            return embeds, None
        n_slots = int(placeholders.sum())
        if audio_in_cache and not n_slots:
            return embeds, None
        audio, lengths = self.get_audio_embeds(input_features, feature_attention_mask)
        flat = torch.cat([audio[i, : int(n)] for i, n in enumerate(lengths)])
        if flat.shape[0] != n_slots:
            raise ValueError(
                f"the clips give {flat.shape[0]} audio embeddings ({lengths.tolist()} per clip) but the input has "
                f"{n_slots} audio placeholders: build the input with this model's processor (it writes one "
                "placeholder per embedding)"
            )
        embeds = embeds.masked_scatter(placeholders[..., None].to(embeds.device), flat.to(embeds.dtype))
        return embeds, flat

    @contextlib.contextmanager
    def _text_lora(self, has_audio: bool):
        """With `text_lora_audio_only`, the LLM's LoRA is on only when the input holds audio."""
        if not (self.config.text_lora and self.config.text_lora_audio_only):
            yield
            return
        saved = _text_lora_switch(self.text_model, has_audio)
        try:
            yield
        finally:
            for m, flag in saved:
                m._disable_adapters = flag

    # -- forward ----------------------------------------------------------------------------------------
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        input_features: torch.FloatTensor | None = None,
        feature_attention_mask: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        **kwargs: Any,
    ) -> SpeechAwareLMOutputWithPast:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch, tokens)`):
                Token ids from [`SpeechAwareLMProcessor`], with one `config.audio_token_id` per audio embedding.
            attention_mask (`torch.LongTensor` of shape `(batch, tokens)`, *optional*): 1 on real tokens.
            input_features (`torch.FloatTensor` of shape `(clips, mel_bins, frames)` or `(clips, samples)`, *optional*):
                The clips of the batch, in the order of their placeholders: log-mel frames for a Whisper
                encoder, waveforms for the others.
            feature_attention_mask (`torch.LongTensor` of shape `(clips, frames)` or `(clips, samples)`, *optional*):
                1 on the real frames / samples of each clip.
            labels (`torch.LongTensor` of shape `(batch, tokens)`, *optional*):
                Next-token targets (-100 where ignored: prompt, audio, padding); shifted inside the LLM.
            inputs_embeds (`torch.FloatTensor` of shape `(batch, tokens, hidden)`, *optional*):
                Ready-made LLM input embeddings (instead of `input_ids`). With `input_features`, the clips'
                embeddings replace the positions of the audio placeholders (found in `input_ids` if given,
                else where `inputs_embeds` hold the audio token's own embedding).
            kwargs: passed to the LLM (`cache`, `use_cache`, `logits_to_keep`, ...).
        """
        if inputs_embeds is None and input_ids is None:
            raise ValueError("pass input_ids (from the processor) or inputs_embeds")
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        in_cache = cache is not None and cache.get_seq_length() > 0
        inputs_embeds, audio_embeds = self._merge_audio(
            input_ids,
            input_features,
            feature_attention_mask,
            audio_in_cache=in_cache,
            inputs_embeds=inputs_embeds,
        )
        # With `text_lora_audio_only`, each call decides from its own input; `generate` holds the prompt's
        # choice for every decoding step (the new tokens of those steps carry no audio themselves).
        has_audio = audio_embeds is not None if self._audio_prompt is None else self._audio_prompt
        with self._text_lora(has_audio):
            out = self.text_model(
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                labels=labels,
                return_dict=True,
                **kwargs,
            )
        return SpeechAwareLMOutputWithPast(
            loss=out.loss,
            logits=out.logits,
            cache=getattr(out, "cache", None),
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            audio_embeds=audio_embeds,
        )

    # -- generation ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        input_features: torch.FloatTensor | None = None,
        feature_attention_mask: torch.LongTensor | None = None,
        generation_config: GenerationConfig | None = None,
        **kwargs: Any,
    ) -> torch.LongTensor | ModelOutput:
        """Answer left-padded prompts from the processor; returns the prompt ids followed by the new tokens,
        like any decoder-only model (decode with `processor.batch_decode(..., skip_special_tokens=True, answer_only=True)`,
        which keeps the answer alone, or slice off `input_ids.shape[1]` first).

        transformers' own `generate` runs the loop (every decoding strategy, streaming, assisted decoding,
        continuing from a returned `past_key_values` / `cache`): the audio goes through the encoder and the
        adapter in the prefill only (`input_features` are dropped after it), so decoding costs what the bare
        LLM's does. `inputs_embeds` (ready-made LLM input embeddings) may stand in for `input_ids`.
        """
        inputs_embeds = kwargs.get("inputs_embeds")
        if input_ids is None and inputs_embeds is None:
            raise ValueError("generate needs input_ids from the processor (apply_chat_template or __call__)")
        if attention_mask is not None and bool((attention_mask[:, -1] == 0).any()):
            raise ValueError(
                "generate needs left-padded prompts: build them with padding_side='left' (the default)"
            )
        generation_config = copy.deepcopy(generation_config or self.generation_config)
        model_kwargs = generation_config.update(**kwargs)  # returns what is not a generation setting
        prompt = input_ids if input_ids is not None else inputs_embeds
        check_context_length(
            self.config,
            prompt.shape[1],
            generation_config.max_new_tokens,
            "the prompt (text and audio embeddings)",
        )
        has_audio = input_features is not None or (
            input_ids is not None
            and self.config.audio_token_id is not None
            and bool((input_ids == self.config.audio_token_id).any())
        )
        if self.config.audio_token_id is not None:  # the placeholder is never an answer
            suppressed = set(generation_config.suppress_tokens or [])
            generation_config.suppress_tokens = sorted(suppressed | {self.config.audio_token_id})
        self._audio_prompt = has_audio
        try:
            return super().generate(
                input_ids,
                attention_mask=attention_mask,
                input_features=input_features,
                feature_attention_mask=feature_attention_mask,
                generation_config=generation_config,
                **model_kwargs,
            )
        finally:
            self._audio_prompt = None

    def _expand_inputs_for_generation(
        self,
        expand_size: int = 1,
        is_encoder_decoder: bool = False,
        input_ids: torch.LongTensor | None = None,
        **model_kwargs: Any,
    ) -> tuple[torch.LongTensor, dict[str, Any]]:
        """transformers' expansion for beam search / `num_return_sequences`, with the clips copied per row.

        transformers repeats every tensor row by row; the clips are not rows (a row may hold several, or
        none), so `repeat_interleave` would put a row's first clip twice before its second. Here each row's
        clips are repeated as a group, in the order of the repeated rows' placeholders."""
        if model_kwargs.get("input_features") is None or input_ids is None or expand_size == 1:
            return super()._expand_inputs_for_generation(
                expand_size, is_encoder_decoder, input_ids, **model_kwargs
            )
        features = model_kwargs.pop("input_features")
        feature_mask = model_kwargs.pop("feature_attention_mask", None)
        groups = self._clips_of_rows(input_ids, feature_mask, features)
        order = torch.cat([group.repeat(expand_size) for group in groups])
        features = features[order.to(features.device)]
        feature_mask = feature_mask[order.to(feature_mask.device)] if feature_mask is not None else None
        input_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size, is_encoder_decoder, input_ids, **model_kwargs
        )
        model_kwargs["input_features"], model_kwargs["feature_attention_mask"] = features, feature_mask
        return input_ids, model_kwargs

    def _clips_of_rows(
        self, input_ids: torch.LongTensor, feature_mask: torch.LongTensor | None, features: torch.FloatTensor
    ) -> list[torch.LongTensor]:
        """The indices of the clips that belong to each row (clips in placeholder order, consumed row by row)."""
        if feature_mask is None:
            feature_mask = torch.ones(features.shape[0], features.shape[-1], dtype=torch.long)
        frames = self.audio_encoder._get_feat_extract_output_lengths(feature_mask.sum(-1).long().cpu())
        ops = self.config.adapter_length_ops()
        per_clip = [audio_output_length(int(n), ops) for n in frames]  # as get_audio_embeds counts them
        slots = (input_ids == self.config.audio_token_id).sum(-1).tolist()
        groups, clip = [], 0
        for row, n in enumerate(slots):
            start = clip
            while n > 0 and clip < len(per_clip):
                n -= per_clip[clip]
                clip += 1
            if n != 0:
                raise ValueError(
                    f"row {row}'s audio placeholders do not match its clips' embeddings: build the input with "
                    "this model's processor (it writes one placeholder per embedding)"
                )
            groups.append(torch.arange(start, clip, dtype=torch.long))
        return groups

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        cache: Any = None,
        input_features: torch.FloatTensor | None = None,
        feature_attention_mask: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """transformers' step inputs, with the clips in the forward that runs on an empty cache only.

        transformers passes audio only to the first forward of the main model; an assistant model of the
        same kind (assisted decoding) never gets it. What decides here is the cache: the clips are encoded
        in the forward that writes the prompt's placeholders into it, and never again.
        """
        cache = cache if cache is not None else kwargs.pop("past_key_values", None)  # the older name
        inputs = super().prepare_inputs_for_generation(
            input_ids, cache=cache, inputs_embeds=inputs_embeds, **kwargs
        )
        if input_features is not None and (cache is None or cache.get_seq_length() == 0):
            inputs["input_features"] = input_features
            inputs["feature_attention_mask"] = feature_attention_mask
        return inputs

    # -- training data ------------------------------------------------------------------------------------
    def prepare_training_dataset(self, dataset: Any, num_proc: int | None = None) -> Any:
        """Instruction rows (`audio`, `instruction`, `response`) keep their columns; a `length` column (the
        clip's duration in embeddings plus the words) lets the trainer batch similar lengths. Batches are
        built by [`SpeechAwareLMProcessor.training_batch`] from the rows as they come."""
        needed = {"audio", "instruction", "response"}
        if not needed <= set(dataset.column_names):
            raise ValueError(
                f"a speech-aware LM trains on rows with {sorted(needed)} (see `hf-slm data instructions`); "
                f"got columns {dataset.column_names}"
            )
        ops = self.config.audio_length_ops()
        rate = self.config.sampling_rate

        def measure(batch):
            durations = batch.get("duration") or [None] * len(batch["instruction"])
            out = []
            for d, ins, res in zip(durations, batch["instruction"], batch["response"]):
                n_audio = audio_output_length(int((d or 0) * rate), ops)
                out.append(n_audio + len(ins.split()) + len(res.split()) + 8)
            return {"length": out}

        columns = [c for c in ("duration", "instruction", "response") if c in dataset.column_names]
        lengths = dataset.select_columns(columns).map(measure, batched=True, remove_columns=columns)
        return dataset.add_column("length", lengths["length"])


def _grow_embeddings(lm: PreTrainedModel, size: int) -> None:
    """Grow the LLM's vocabulary to `size` for new (chat / audio) tokens: new rows drawn from the
    statistics of the old ones, so they start as plausible tokens."""
    old = lm.get_input_embeddings().weight.detach().clone()
    lm.resize_token_embeddings(size, mean_resizing=False)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for emb in (lm.get_input_embeddings(), lm.get_output_embeddings()):
            if emb is None:
                continue
            w = emb.weight
            n_old = old.shape[0]
            if w.shape[0] > n_old:
                mean, std = old.float().mean(0), old.float().std(0)
                w[n_old:] = (mean + std * torch.randn(w.shape[0] - n_old, w.shape[1], generator=g)).to(
                    w.dtype
                )
