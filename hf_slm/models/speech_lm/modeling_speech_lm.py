"""The pure speech LM (family 1): a causal LM over discrete speech units, with its tokenizer and vocoder.

GSLM (Lakhotia et al. 2021) showed the recipe: audio -> de-duplicated units -> a unit LM -> units ->
a unit vocoder. TWIST (Hassid et al. 2023) starts the unit LM from a text LM's weights. Here the three
components are one `PreTrainedModel`, so that one `from_pretrained` brings the tokenizer, the LM and the
vocoder back together, and the LM is any `AutoModelForCausalLM` (Llama, Qwen2, GPT-2, ...).

Example:
    >>> import torch
    >>> from hf_slm.models.speech_lm import SpeechLMConfig, SpeechLMForCausalLM
    >>> config = SpeechLMConfig(
    ...     unit_tokenizer_config={"n_units": 16},
    ...     text_config={"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
    ...                  "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2},
    ... )
    >>> model = SpeechLMForCausalLM(config)
    >>> ids = model.units_to_ids([[3, 3, 7, 1], [5, 2]])
    >>> model.score(**ids).num_tokens.tolist()  # units + end of utterance
    [5, 3]
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoModelForCausalLM, GenerationConfig, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.utils import ModelOutput

from hf_slm.audio import AudioError
from hf_slm.models.checks import check_context_length
from hf_slm.models.speech_lm.coarse_to_fine import CoarseToFineDecoder
from hf_slm.models.speech_lm.configuration_speech_lm import SpeechLMConfig
from hf_slm.units.modeling_unit_tokenizer import SpeechUnitTokenizer
from hf_slm.vocoders.modeling_unit_vocoder import UnitVocoder

__all__ = ["SpeechLMForCausalLM", "SpeechLMPreTrainedModel", "SpeechLMScoreOutput"]


@dataclass
class SpeechLMScoreOutput(ModelOutput):
    """
    Args:
        sum (`torch.FloatTensor` of shape `(batch,)`):
            Log-likelihood of each utterance: the sum of the log-probabilities of its unit tokens and
            of its end-of-utterance token, each given the tokens before it.
        mean (`torch.FloatTensor` of shape `(batch,)`): `sum / num_tokens`.
        num_tokens (`torch.LongTensor` of shape `(batch,)`): tokens scored per utterance.
    """

    sum: torch.FloatTensor | None = None
    mean: torch.FloatTensor | None = None
    num_tokens: torch.LongTensor | None = None


def pad_rows(rows: list[torch.Tensor], pad: int, side: str, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows of different lengths as one padded batch (padding on ``side``) and its attention mask."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(width - len(r), width) if side == "left" else slice(0, len(r))
        ids[i, span], mask[i, span] = r.cpu(), 1
    return ids.to(device), mask.to(device)


class SpeechLMPreTrainedModel(PreTrainedModel):
    config_class = SpeechLMConfig
    # the backbone is the base model (as `model` is in transformers' LMs): a checkpoint of the bare
    # causal LM loads into it
    base_model_prefix = "lm"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = []
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    def _init_weights(self, module: nn.Module) -> None:
        # Each component initialises itself (the backbone, the tokenizer and the vocoder are
        # `PreTrainedModel`s with their own `_init_weights`); the model's own buffer starts at one frame.
        if isinstance(module, SpeechLMForCausalLM):
            init.ones_(module.unit_durations)


class SpeechLMForCausalLM(SpeechLMPreTrainedModel, GenerationMixin):
    """A unit tokenizer (frozen), a causal LM over its units, and a unit vocoder.

    Token ids: `0` pad, `1` begin, `2` end of utterance, unit `u` is `u + config.unit_offset`.
    """

    # speech LMs are sampled: greedy unit decoding loops
    _default_generation: dict[str, Any] = {
        "do_sample": True,
        "temperature": 0.9,
        "top_k": 50,
        "max_new_tokens": 150,
    }

    def __init__(self, config: SpeechLMConfig) -> None:
        super().__init__(config)
        self.unit_tokenizer = SpeechUnitTokenizer(config.unit_tokenizer_config)
        self.unit_tokenizer.requires_grad_(False)
        self.lm = AutoModelForCausalLM.from_config(config.text_config)
        self.vocoder = UnitVocoder(config.vocoder_config) if config.vocoder_config is not None else None
        self.acoustic_decoder = (
            CoarseToFineDecoder(config.acoustic_config) if config.acoustic_config else None
        )
        self._freeze_components()
        # Mean run length (frames) of each unit in the training data: the durations used to voice
        # generated de-duplicated units (GSLM predicts them with a model; the mean is its floor).
        self.register_buffer("unit_durations", torch.ones(config.n_units))
        self.post_init()
        if self.generation_config is not None and not self.generation_config.do_sample:
            # a saved generation_config overrides these defaults
            self.generation_config.update(**self._default_generation)

    def _freeze_components(self) -> None:
        # The tokenizer is fitted and the vocoder trained on their own (`hf-slm units fit`, `hf-slm
        # vocoder train`): training the speech LM trains its backbone only.
        self.unit_tokenizer.requires_grad_(False)
        for part in (self.vocoder, self.acoustic_decoder):
            if part is not None:
                part.requires_grad_(False)

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model._freeze_components()  # loading rebuilds parameters, which come back trainable
        return loaded

    # -- the backbone's embeddings are the model's -------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.lm.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.lm.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm.set_output_embeddings(value)

    def resize_token_embeddings(self, *args: Any, **kwargs: Any) -> nn.Embedding:
        embeddings = super().resize_token_embeddings(*args, **kwargs)
        self.config.vocab_size = self.config.text_config.vocab_size  # saved, so that it loads back
        return embeddings

    def train(self, mode: bool = True) -> SpeechLMForCausalLM:
        super().train(mode)
        self.unit_tokenizer.eval()  # frozen: the same audio always gives the same units
        for part in (self.vocoder, self.acoustic_decoder):
            if part is not None:
                part.eval()
        return self

    # -- building -----------------------------------------------------------------------------------
    @classmethod
    def from_components(
        cls,
        unit_tokenizer: str | Path | SpeechUnitTokenizer,
        vocoder: str | Path | UnitVocoder | None = None,
        text_config: dict | Any | None = None,
        text_lm: str | Path | PreTrainedModel | None = None,
        **config_kwargs: Any,
    ) -> SpeechLMForCausalLM:
        """Assemble a speech LM from a fitted unit tokenizer, a vocoder and a backbone.

        Args:
            unit_tokenizer: a fitted `SpeechUnitTokenizer` or its folder / Hub id.
            vocoder: a `UnitVocoder` trained on that tokenizer's units, its folder, or None.
            text_config: the backbone's config (a dict with `model_type`, or a config) for a model
                trained from scratch.
            text_lm: TWIST warm start: a text LM (`AutoModelForCausalLM` folder, Hub id or model)
                whose weights start the backbone. Its token embeddings and output layer are
                replaced by new unit embeddings drawn from the statistics of the text embeddings.
        """
        if (text_config is None) == (text_lm is None):
            raise ValueError("give exactly one of text_config (train from scratch) or text_lm (warm start)")
        if not isinstance(unit_tokenizer, SpeechUnitTokenizer):
            unit_tokenizer = SpeechUnitTokenizer.from_pretrained(unit_tokenizer)
        if not bool(unit_tokenizer.is_fitted):
            raise ValueError("the unit tokenizer has no centroids: fit it first (`hf-slm units fit`)")
        if vocoder is not None and not isinstance(vocoder, UnitVocoder):
            vocoder = UnitVocoder.from_pretrained(vocoder)
        if text_lm is not None and not isinstance(text_lm, PreTrainedModel):
            text_lm = AutoModelForCausalLM.from_pretrained(text_lm)
        if text_lm is not None:
            text_config = text_lm.config.to_dict()
        elif not isinstance(text_config, dict):
            text_config = text_config.to_dict()
        text_config = {k: v for k, v in text_config.items() if not k.startswith("_")}
        config = cls.config_class(
            unit_tokenizer_config=unit_tokenizer.config.to_dict(),
            text_config=text_config,
            vocoder_config=vocoder.config.to_dict() if vocoder is not None else None,
            **config_kwargs,
        )
        model = cls(config)
        model.unit_tokenizer.load_state_dict(unit_tokenizer.state_dict())
        if vocoder is not None:
            model.vocoder.load_state_dict(vocoder.state_dict())
        if text_lm is not None:
            model._warm_start(text_lm)
        return model

    def set_vocoder(self, vocoder: str | Path | UnitVocoder | None) -> None:
        """Attach (or swap, or with None remove) the vocoder; it must speak this tokenizer's units."""
        if vocoder is not None and not isinstance(vocoder, UnitVocoder):
            vocoder = UnitVocoder.from_pretrained(vocoder)
        if vocoder is not None and vocoder.config.n_units != self.config.n_units:
            raise ValueError(
                f"the vocoder speaks {vocoder.config.n_units} units but the tokenizer makes {self.config.n_units}: "
                "pair a vocoder with the tokenizer it was trained on"
            )
        self.vocoder = vocoder.to(self.device) if vocoder is not None else None
        self.config.vocoder_config = vocoder.config if vocoder is not None else None
        self._freeze_components()

    def set_acoustic_decoder(self, decoder: str | Path | CoarseToFineDecoder | None) -> None:
        """Attach (or remove) the coarse-to-fine second stage, trained on this tokenizer's units."""
        if decoder is not None and not isinstance(decoder, CoarseToFineDecoder):
            decoder = CoarseToFineDecoder.from_pretrained(decoder)
        if decoder is not None and decoder.config.stage.n_semantic_units != self.config.n_units:
            raise ValueError(
                f"the acoustic stage was trained on {decoder.config.stage.n_semantic_units} units but this tokenizer "
                f"makes {self.config.n_units}: train it on this tokenizer's units"
            )
        self.acoustic_decoder = decoder.to(self.device) if decoder is not None else None
        self.config.acoustic_config = decoder.config.to_dict() if decoder is not None else None
        self._freeze_components()

    @torch.no_grad()
    def _warm_start(self, text_lm: PreTrainedModel) -> None:
        state = text_lm.state_dict()
        emb_in = text_lm.get_input_embeddings().weight
        emb_out = text_lm.get_output_embeddings()
        skip = {
            k
            for k, v in state.items()
            if any(v.data_ptr() == p.data_ptr() for p in (emb_in, getattr(emb_out, "weight", emb_in)))
        }
        kept = {k: v for k, v in state.items() if k not in skip}
        missing, unexpected = self.lm.load_state_dict(kept, strict=False)
        missing = [k for k in missing if k not in skip]
        if unexpected or missing:
            raise ValueError(
                f"the text LM's weights do not fit its own config: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        g = torch.Generator().manual_seed(0)
        for new, old in ((self.lm.get_input_embeddings().weight, emb_in), (getattr(self.lm.get_output_embeddings(), "weight", None), getattr(emb_out, "weight", None))):  # fmt: skip
            if new is None or old is None:
                continue
            mean, std = old.float().mean(0), old.float().std(0)
            new.copy_(mean + std * torch.randn(new.shape, generator=g))

    # -- units <-> token ids ---------------------------------------------------------------------
    def units_to_ids(
        self,
        units: Any,
        add_bos: bool = True,
        add_eos: bool = True,
        padding_side: str = "right",
    ) -> dict[str, torch.Tensor]:
        """Token ids and attention mask for a batch of unit sequences (lists, arrays or -1-padded rows)."""
        rows = []
        for row in units:
            row = torch.as_tensor(row, dtype=torch.long).flatten()
            row = row[row >= 0]
            if row.numel() and int(row.max()) >= self.config.n_units:
                raise ValueError(
                    f"unit id {int(row.max())} is outside this model's {self.config.n_units} units"
                )
            parts = [row + self.config.unit_offset]
            if add_bos:
                parts.insert(0, torch.tensor([self.config.bos_token_id]))
            if add_eos:
                parts.append(torch.tensor([self.config.eos_token_id]))
            rows.append(torch.cat(parts))
        ids, mask = pad_rows(rows, self.config.pad_token_id, padding_side, self.device)
        return {"input_ids": ids, "attention_mask": mask}

    def ids_to_units(self, sequences: Any) -> list[torch.Tensor]:
        """The unit ids of token sequences (e.g. `generate` output): specials dropped, cut at the end token."""
        out = []
        for row in sequences:
            row = torch.as_tensor(row, dtype=torch.long).flatten().cpu()
            ends = (row == self.config.eos_token_id).nonzero()
            if len(ends):
                row = row[: int(ends[0])]
            offset = self.config.unit_offset
            row = row[(row >= offset) & (row < offset + self.config.n_units)]
            out.append(row - offset)
        return out

    @torch.no_grad()
    def encode_audio(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        add_eos: bool = True,
        padding_side: str = "right",
    ) -> dict[str, torch.Tensor]:
        """Token ids of a batch of waveforms at `config.sampling_rate` (what the processor returns)."""
        limit = int(self.config.max_audio_seconds * self.config.sampling_rate)
        if input_values.shape[-1] > limit:
            raise AudioError(
                f"audio of {input_values.shape[-1] / self.config.sampling_rate:.1f} s is longer than this model's "
                f"max_audio_seconds ({self.config.max_audio_seconds:.0f} s): cut it into shorter clips"
            )
        out = self.unit_tokenizer(input_values.to(self.device), attention_mask)
        units = [out.units[i, : int(n)] for i, n in enumerate(out.lengths)]
        ids = self.units_to_ids(units, add_eos=add_eos, padding_side=padding_side)
        if out.durations is not None:
            ids["durations"] = [out.durations[i, : int(n)] for i, n in enumerate(out.lengths)]
        return ids

    # -- forward ------------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        input_values: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch, tokens)`, *optional*):
                Token ids (see [`~SpeechLMForCausalLM.units_to_ids`]).
            attention_mask (`torch.LongTensor`, *optional*):
                With `input_ids`: 1 for real tokens. With `input_values`: 1 for real samples.
            input_values (`torch.FloatTensor` of shape `(batch, samples)`, *optional*):
                Waveforms at `config.sampling_rate` (from the processor). They are tokenised with the
                frozen unit tokenizer and the next-unit loss is returned.
            labels (`torch.LongTensor` of shape `(batch, tokens)`, *optional*):
                Next-token targets (the inputs, -100 where ignored); shifted inside the backbone.
            kwargs: passed to the backbone (cache, `use_cache`, `logits_to_keep`, ...).
        """
        if input_values is not None:
            if input_ids is not None or inputs_embeds is not None:
                raise ValueError("pass audio (input_values) or token ids (input_ids), not both")
            enc = self.encode_audio(input_values, attention_mask)
            input_ids, attention_mask = enc["input_ids"], enc["attention_mask"]
            labels = input_ids.masked_fill(attention_mask == 0, -100)
        return self.lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            labels=labels,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )

    # -- likelihoods --------------------------------------------------------------------------------
    @torch.no_grad()
    def score(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        input_values: torch.FloatTensor | None = None,
        batch_size: int = 8,
    ) -> SpeechLMScoreOutput:
        """Log-likelihood of each utterance (sum and per-token mean), `batch_size` rows at a time.

        Give audio (`input_values` + `attention_mask` from the processor) or token ids with a
        begin token (from [`~SpeechLMForCausalLM.units_to_ids`]). Rows are scored longest first in
        batches of `batch_size` (8 measured fastest on a 2-core CPU: larger batches pad more).
        """
        if input_values is not None:
            enc = self.encode_audio(input_values, attention_mask)
            input_ids, attention_mask = enc["input_ids"], enc["attention_mask"]
        if input_ids is None:
            raise ValueError("score needs input_values (audio) or input_ids")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if bool((attention_mask[:, 0] == 0).any()):
            raise ValueError(
                "score needs right-padded rows that start with the begin token (units_to_ids does this)"
            )
        lengths = attention_mask.sum(1)
        order = torch.argsort(lengths.cpu(), descending=True)  # similar lengths together: little padding
        total = torch.zeros(len(input_ids), device=self.device)
        n = torch.zeros(len(input_ids), dtype=torch.long, device=self.device)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size].to(input_ids.device)
            width = int(lengths[idx].max())
            ids = input_ids[idx, :width].to(self.device)
            mask = attention_mask[idx, :width].to(self.device)
            # Rows are right-padded and attention is causal, so no real token ever attends to padding:
            # the mask can be left out, which keeps attention on its fast causal path (exact same scores).
            logits = self.lm(input_ids=ids).logits[:, :-1].float()
            logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
            valid = mask[:, 1:].to(logp.dtype)
            total[idx.to(self.device)] = (logp * valid).sum(1)
            n[idx.to(self.device)] = valid.sum(1).long()
        return SpeechLMScoreOutput(sum=total, mean=total / n.clamp_min(1), num_tokens=n)

    # -- generation -----------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        input_values: torch.FloatTensor | None = None,
        generation_config: GenerationConfig | None = None,
        **kwargs: Any,
    ) -> torch.LongTensor | ModelOutput:
        """Continue audio prompts (or token-id prompts) in units; returns token ids like any causal LM.

        Audio prompts are tokenised and left-padded. With no prompt at all, generation starts from
        the begin token; `inputs_embeds` may stand in for the prompt's ids (only the new tokens come
        back, as from any causal LM). Turn the result into audio with [`~SpeechLMForCausalLM.decode_speech`].
        """
        inputs_embeds = kwargs.get("inputs_embeds")
        if input_values is not None:
            enc = self.encode_audio(input_values, attention_mask, add_eos=False, padding_side="left")
            input_ids, attention_mask = enc["input_ids"], enc["attention_mask"]
        elif input_ids is None and inputs_embeds is None:
            n = int(kwargs.pop("num_return_sequences", 1))
            input_ids = torch.full((n, 1), self.config.bos_token_id, dtype=torch.long, device=self.device)
            attention_mask = torch.ones_like(input_ids)
        elif attention_mask is not None and bool((attention_mask[:, -1] == 0).any()):
            raise ValueError("generate needs left-padded prompts: build them with padding_side='left'")
        generation_config = copy.deepcopy(generation_config or self.generation_config)
        model_kwargs = generation_config.update(**kwargs)  # returns what is not a generation setting
        prompt = input_ids if input_ids is not None else inputs_embeds
        check_context_length(self.config, prompt.shape[1], generation_config.max_new_tokens)
        return self.lm.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=generation_config,
            **model_kwargs,
        )

    # -- audio out ------------------------------------------------------------------------------------
    @torch.no_grad()
    def decode_speech(
        self,
        sequences: Any,
        durations: Any = None,
        speaker: str | int | None = None,
        prompt_audio: Any = None,
        prompt_durations: Any = None,
    ) -> list[np.ndarray]:
        """Waveforms (float32 numpy at `config.sampling_rate`) of token sequences or unit rows.

        Args:
            sequences: `generate` output (token ids) or lists of unit ids.
            durations: run lengths (frames) per unit; by default each unit's mean run length in
                the training data (`unit_durations`).
            speaker: a speaker name the vocoder knows, an id, or None (its unknown speaker).
            prompt_audio: with a coarse-to-fine stage (`acoustic_decoder`), the prompt's audio (16 kHz
                array) whose units open each sequence: the continuation is voiced in the prompt's voice
                by the second stage instead of by the vocoder.
            prompt_durations: the true run lengths of the prompt's units (`encode_audio(...)["durations"]`).
        """
        if prompt_audio is not None:
            return self._decode_coarse_to_fine(sequences, prompt_audio, prompt_durations)
        if self.vocoder is None:
            raise ValueError(
                "this speech LM has no vocoder: build it with from_components(..., vocoder=PATH)"
            )
        units = self._unit_rows(sequences)
        if durations is None:
            durations = [self.mean_durations(u) for u in units]
        waves = []
        for u, d in zip(units, durations):
            if len(u) == 0:
                waves.append(np.zeros(0, dtype=np.float32))
                continue
            waves.append(self.vocoder.generate_speech(u[None], torch.as_tensor(d)[None], speaker=speaker)[0])
        return waves

    def _unit_rows(self, sequences: Any) -> list[torch.Tensor]:
        """Unit rows of `generate` output (token ids, one or more rows) or of lists of unit ids."""
        if isinstance(sequences, torch.Tensor):
            return self.ids_to_units(sequences[None] if sequences.ndim == 1 else sequences)
        return [torch.as_tensor(u, dtype=torch.long) for u in sequences]

    def mean_durations(self, units: torch.Tensor) -> torch.LongTensor:
        """Run lengths (frames) to voice generated units with: each unit's mean in the training data
        (`unit_durations`), rounded, at least 1; all 1 when the tokenizer does not de-duplicate."""
        units = torch.as_tensor(units, dtype=torch.long)
        if not self.config.unit_tokenizer_config.deduplicate:
            return torch.ones_like(units)
        return self.unit_durations[units.to(self.device)].round().clamp_min(1).long().cpu()

    def _decode_coarse_to_fine(
        self, sequences: Any, prompt_audio: Any, prompt_durations: Any
    ) -> list[np.ndarray]:
        if self.acoustic_decoder is None:
            raise ValueError(
                "this speech LM has no coarse-to-fine stage: attach one with set_acoustic_decoder(PATH)"
            )
        if prompt_durations is None:
            raise ValueError(
                "pass prompt_durations: the prompt units' run lengths, from encode_audio(...)['durations']"
            )
        units = self._unit_rows(sequences)
        waves = []
        for u in units:
            d_prompt = torch.as_tensor(prompt_durations, dtype=torch.long).cpu()
            n = len(d_prompt)
            d_new = self.mean_durations(u[n:])
            waves += self.acoustic_decoder.generate_speech(
                [u],
                [torch.cat([d_prompt, d_new])],
                prompt_audio=prompt_audio,
                sampling_rate=self.config.sampling_rate,
            )
        return waves

    @torch.no_grad()
    def set_unit_durations(self, units: list[Any], durations: list[Any]) -> None:
        """Set each unit's mean run length from de-duplicated training units and their durations."""
        u = torch.cat([torch.as_tensor(x, dtype=torch.long).flatten() for x in units])
        d = torch.cat([torch.as_tensor(x, dtype=torch.float).flatten() for x in durations])
        total = torch.zeros(self.config.n_units).index_add_(0, u, d)
        count = torch.zeros(self.config.n_units).index_add_(0, u, torch.ones_like(d))
        mean = torch.where(count > 0, total / count.clamp_min(1), d.mean() if len(d) else torch.tensor(1.0))
        self.unit_durations.copy_(mean.to(self.unit_durations))

    # -- data for the training loop -------------------------------------------------------------------
    def encode_dataset(
        self, dataset: Any, num_proc: int | None = None, audio_column: str = "audio", batch_size: int = 16
    ) -> Any:
        """A `datasets.Dataset` with the de-duplicated `units` of each clip and their `durations` (frames).

        Runs through `datasets.map` (cached by the dataset's and this tokenizer's fingerprints, with
        `num_proc` workers), so a corpus is tokenised once and trained on many times. The other
        columns are kept.
        """
        import hashlib

        from hf_slm.audio import load_audio

        if audio_column not in dataset.column_names:
            raise ValueError(
                f"the dataset has no {audio_column!r} column (it has {dataset.column_names}): "
                "pass audio_column= or a dataset with input_ids"
            )
        sr = self.config.sampling_rate
        tok = self.unit_tokenizer
        state = b"".join(v.detach().cpu().numpy().tobytes() for v in tok.state_dict().values())
        fingerprint = hashlib.sha256(state + str(tok.config.to_dict()).encode()).hexdigest()[:16]
        if num_proc and num_proc > 1:
            tok = _picklable(tok)  # the workers get a copy of the tokenizer by pickle

        def encode(batch: dict[str, list]) -> dict[str, list]:
            if num_proc and num_proc > 1:
                # a forked worker must not enter the parent's OpenMP thread pool (it hangs): one thread each
                torch.set_num_threads(1)
            waves = [load_audio(a, target_sampling_rate=sr) for a in batch[audio_column]]
            out = tok.encode(waves, sampling_rate=sr)
            units, durs = [], []
            for i in range(len(waves)):
                n = int(out.lengths[i])
                units.append(out.units[i, :n].tolist())
                durs.append(out.durations[i, :n].tolist() if out.durations is not None else [1] * n)
            return {"units": units, "durations": durs}

        keep = [c for c in dataset.column_names if c != audio_column]
        return dataset.map(
            encode,
            batched=True,
            batch_size=batch_size,
            num_proc=num_proc,
            remove_columns=[audio_column],
            new_fingerprint=f"{getattr(dataset, '_fingerprint', 'ds')}-rawunits-{fingerprint}"[:64],
            desc="speech -> units",
        ).select_columns([*keep, "units", "durations"])

    def prepare_training_dataset(
        self, dataset: Any, num_proc: int | None = None, audio_column: str = "audio", batch_size: int = 16
    ) -> Any:
        """A `datasets.Dataset` with `input_ids` (begin, units, end) and `durations`, from its audio
        (through [`~SpeechLMForCausalLM.encode_dataset`], so cached and parallel)."""
        units = self.encode_dataset(
            dataset, num_proc=num_proc, audio_column=audio_column, batch_size=batch_size
        )
        offset, bos, eos = self.config.unit_offset, self.config.bos_token_id, self.config.eos_token_id

        def to_ids(batch: dict[str, list]) -> dict[str, list]:
            return {"input_ids": [[bos, *(u + offset for u in row), eos] for row in batch["units"]]}

        return units.map(to_ids, batched=True, remove_columns=["units"], desc="units -> token ids")


def _picklable(module: nn.Module) -> nn.Module:
    """A copy of ``module`` that pickles: torch refuses to pickle parametrized modules (the weight norm
    of HuBERT / wav2vec 2.0 positional convolutions), so the copy holds their computed weights instead.
    The outputs are the same."""
    import torch.nn.utils.parametrize as parametrize

    module = copy.deepcopy(module)
    for sub in module.modules():
        if parametrize.is_parametrized(sub):
            for name in list(sub.parametrizations.keys()):
                parametrize.remove_parametrizations(sub, name, leave_parametrized=True)
    return module
