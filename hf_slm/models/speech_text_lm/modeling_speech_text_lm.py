"""The speech+text LM (family 2): one causal LM over text tokens and speech units.

Spirit LM (Nguyen et al. 2024) extends a text LM's vocabulary with speech units and markers and
trains it on sequences that switch between text and speech at word boundaries; SpeechGPT and
VoxtLM add task prompts (ASR, TTS). Here the text LM is any `AutoModelForCausalLM`; the unit
tokenizer and vocoder of the discrete speech layer ride along, so one `from_pretrained` brings back
all that turns audio into units, units into audio, and either modality into the other.

Example:
    >>> from transformers import AutoModelForCausalLM, AutoProcessor
    >>> model = AutoModelForCausalLM.from_pretrained("zoo/speech-text-lm-tiny")  # doctest: +SKIP
    >>> proc = AutoProcessor.from_pretrained("zoo/speech-text-lm-tiny")  # doctest: +SKIP
    >>> ids = model.generate(**proc(audio="clip.wav", task="asr"), output_modality="text")  # doctest: +SKIP
    >>> proc.batch_decode(ids, skip_special_tokens=True)  # doctest: +SKIP
    >>> out = model.generate(**proc(text="the dog runs", task="tts"))  # doctest: +SKIP
    >>> out.audio[0].shape, out.sampling_rate  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import GenerationConfig, PreTrainedModel
from transformers.generation.logits_process import LogitsProcessor
from transformers.generation.streamers import BaseStreamer
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.utils import ModelOutput, is_torchdynamo_compiling

from hf_slm.audio import AudioError
from hf_slm.models.checks import check_context_length
from hf_slm.models.speech_lm.modeling_speech_lm import SpeechLMForCausalLM, SpeechLMScoreOutput, pad_rows
from hf_slm.models.speech_text_lm.configuration_speech_text_lm import SpeechTextLMConfig

__all__ = ["MODALITIES", "SpeechTextLMForCausalLM", "SpeechTextLMGenerateOutput"]

MODALITIES = ("text", "speech", "any")


@dataclass
class SpeechTextLMGenerateOutput(ModelOutput):
    """
    What `generate(..., output_modality="speech")` returns.

    Args:
        sequences (`torch.LongTensor` of shape `(batch, tokens)`): prompt + generated token ids.
        audio (`list[torch.FloatTensor]`): one waveform per row, the generated speech only.
        sampling_rate (`int`): the waveforms' rate.
        units (`list[list[int]]`): the generated speech units of each row.
    """

    sequences: torch.LongTensor | None = None
    audio: list[torch.FloatTensor] | None = None
    sampling_rate: int | None = None
    units: list[list[int]] | None = None


class SpeechTextLMForCausalLM(SpeechLMForCausalLM):
    """A text LM whose vocabulary also holds speech units and modality markers, with the frozen unit
    tokenizer (audio -> units) and vocoder (units -> audio) of the discrete speech layer.

    Inputs come from [`SpeechTextLMProcessor`]: token ids in which every clip is one `[AUDIO]`
    placeholder, plus the clips (`input_values`, `audio_attention_mask`). The model replaces each
    placeholder by the clip's units before its backbone sees the sequence.
    """

    config_class = SpeechTextLMConfig
    # Transcripts and read-aloud speech are decoded greedily; pass do_sample=True to continue freely.
    _default_generation: dict[str, Any] = {"max_new_tokens": 200}

    # -- building -----------------------------------------------------------------------------------
    @classmethod
    def from_components(
        cls,
        unit_tokenizer: Any,
        vocoder: Any = None,
        text_config: dict | Any | None = None,
        text_lm: str | Path | PreTrainedModel | None = None,
        text_tokenizer: Any = None,
        **config_kwargs: Any,
    ) -> SpeechTextLMForCausalLM:
        """Assemble a speech+text LM from a fitted unit tokenizer, a vocoder and a text LM.

        Args:
            unit_tokenizer, vocoder: as in [`SpeechLMForCausalLM.from_components`].
            text_lm: the text LM whose weights start the model (folder, Hub id or model). Its text
                token embeddings are kept; the markers' and units' new embeddings are drawn from the
                mean and spread of the text embeddings.
            text_config: instead of `text_lm`, a backbone config to train from scratch.
            text_tokenizer: the text LM's tokenizer (or its folder): its size and its pad / begin /
                end ids set the vocabulary layout. Without it, the text LM's `vocab_size` is used.
        """
        if text_tokenizer is not None and not hasattr(text_tokenizer, "convert_tokens_to_ids"):
            from transformers import AutoTokenizer

            text_tokenizer = AutoTokenizer.from_pretrained(text_tokenizer)
        if text_tokenizer is not None:
            config_kwargs.setdefault("text_vocab_size", len(text_tokenizer))
            for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
                value = getattr(text_tokenizer, name)
                if value is None:
                    raise ValueError(
                        f"the text tokenizer has no {name[:-3]}: give it one (the model needs it)"
                    )
                config_kwargs.setdefault(name, value)
        elif text_lm is not None:
            if not isinstance(text_lm, PreTrainedModel):
                from transformers import AutoModelForCausalLM

                text_lm = AutoModelForCausalLM.from_pretrained(text_lm)
            config_kwargs.setdefault("text_vocab_size", text_lm.config.vocab_size)
        return super().from_components(
            unit_tokenizer, vocoder=vocoder, text_config=text_config, text_lm=text_lm, **config_kwargs
        )

    @torch.no_grad()
    def _warm_start(self, text_lm: PreTrainedModel) -> None:
        n_text = self.config.text_vocab_size
        if text_lm.config.vocab_size < n_text:
            raise ValueError(
                f"the text LM has {text_lm.config.vocab_size} token embeddings but the tokenizer {n_text} tokens: "
                "give the text LM's own tokenizer"
            )
        super()._warm_start(text_lm)  # the body; every embedding row drawn from the text rows' statistics
        old_in = text_lm.get_input_embeddings().weight
        self.get_input_embeddings().weight[:n_text] = old_in[:n_text]
        old_out, new_out = text_lm.get_output_embeddings(), self.get_output_embeddings()
        if (
            new_out is not None
            and new_out.weight is not self.get_input_embeddings().weight
            and old_out is not None
        ):
            new_out.weight[:n_text] = old_out.weight[:n_text]

    def prepare_training_dataset(self, dataset: Any, **kwargs: Any) -> Any:
        raise ValueError(
            "a speech+text LM trains on mixed sequences, which need the text tokenizer: build them with "
            "`hf-slm speech-text-lm init` (or hf_slm.data.interleave.build_mixture) and train on that dataset"
        )

    # -- placeholders -> units ------------------------------------------------------------------------
    @torch.no_grad()
    def splice_audio(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None,
        input_values: torch.FloatTensor | None,
        audio_attention_mask: torch.LongTensor | None = None,
        padding_side: str = "left",
    ) -> dict[str, Any]:
        """Token ids with each `[AUDIO]` placeholder replaced by its clip's units (clips in row order).

        Returns `input_ids`, `attention_mask` (re-padded on `padding_side`) and `durations` (the units'
        run lengths, per clip).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        placeholder = self.config.audio_token_id
        n_slots = int((input_ids[attention_mask.bool()] == placeholder).sum())
        n_clips = 0 if input_values is None else int(input_values.shape[0])
        if n_slots != n_clips:
            raise ValueError(
                f"the token ids hold {n_slots} [AUDIO] placeholder(s) but {n_clips} clip(s) were given: "
                "pass the processor's input_ids together with its input_values"
            )
        units, durations = [], []
        if n_clips:
            limit = int(self.config.max_audio_seconds * self.config.sampling_rate)
            if input_values.shape[-1] > limit:
                raise AudioError(
                    f"audio of {input_values.shape[-1] / self.config.sampling_rate:.1f} s is longer than this "
                    f"model's max_audio_seconds ({self.config.max_audio_seconds:.0f} s): cut it into shorter clips"
                )
            out = self.unit_tokenizer(input_values.to(self.device), audio_attention_mask)
            for i, n in enumerate(out.lengths):
                units.append(out.units[i, : int(n)].cpu() + self.config.unit_offset)
                durations.append(
                    out.durations[i, : int(n)].cpu()
                    if out.durations is not None
                    else torch.ones(int(n), dtype=torch.long)
                )
        rows, k = [], 0
        for ids, mask in zip(input_ids.cpu(), attention_mask.cpu()):
            ids = ids[mask.bool()]
            parts, start = [], 0
            for pos in (ids == placeholder).nonzero().flatten().tolist():
                parts += [ids[start:pos], units[k]]
                k, start = k + 1, pos + 1
            parts.append(ids[start:])
            rows.append(torch.cat(parts))
        check_context_length(
            self.config, max(len(r) for r in rows), what="with its audio as units, a sequence"
        )
        ids, mask = pad_rows(rows, self.config.pad_token_id, padding_side, self.device)
        return {"input_ids": ids, "attention_mask": mask, "durations": durations}

    # -- forward ------------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        input_values: torch.FloatTensor | None = None,
        audio_attention_mask: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch, tokens)`): text tokens, markers, units, and
                one `[AUDIO]` placeholder per clip of `input_values`.
            attention_mask (`torch.LongTensor`, *optional*): 1 for real tokens.
            input_values (`torch.FloatTensor` of shape `(clips, samples)`, *optional*): the clips, in
                the order of their placeholders, at `config.sampling_rate`. With them the sequences are
                spliced (right-padded) and the next-token loss over every real token is returned.
            audio_attention_mask (`torch.LongTensor`, *optional*): 1 for real samples of the clips.
            labels (`torch.LongTensor`, *optional*): next-token targets (-100 where ignored), for ids
                without placeholders.
            kwargs: passed to the backbone (cache, `use_cache`, `logits_to_keep`, ...).
        """
        if input_values is not None:
            if labels is not None:
                raise ValueError(
                    "labels cannot be given with audio inputs (their positions change when the clips become "
                    "units): the loss over all real tokens is returned"
                )
            spliced = self.splice_audio(
                input_ids, attention_mask, input_values, audio_attention_mask, "right"
            )
            input_ids, attention_mask = spliced["input_ids"], spliced["attention_mask"]
            labels = input_ids.masked_fill(attention_mask == 0, -100)
        elif (
            input_ids is not None
            and not is_torchdynamo_compiling()  # a data-dependent branch: no check inside torch.export / compile
            and bool((input_ids == self.config.audio_token_id).any())
        ):
            raise ValueError(
                "input_ids hold [AUDIO] placeholders but no input_values: pass the processor's clips too"
            )
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
        audio_attention_mask: torch.LongTensor | None = None,
        batch_size: int = 8,
        add_eos: bool = False,
    ) -> SpeechLMScoreOutput:
        """Log-likelihood of each sequence after its begin token (sum, per-token mean, count).

        Takes the processor's output as it is (left or right padded, with clips); `add_eos=True`
        scores the end token after each sequence too (the end of an utterance, as the pure speech LM
        does).
        """
        if input_ids is None:
            raise ValueError("score needs input_ids (from the processor, e.g. task='text_continuation')")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if input_values is not None:
            spliced = self.splice_audio(
                input_ids, attention_mask, input_values, audio_attention_mask, "right"
            )
            rows = [r[m.bool()] for r, m in zip(spliced["input_ids"], spliced["attention_mask"])]
        else:
            if bool((input_ids == self.config.audio_token_id).any()):
                raise ValueError(
                    "input_ids hold [AUDIO] placeholders but no input_values: pass the clips too"
                )
            rows = [r[m.bool()] for r, m in zip(input_ids, attention_mask)]
        if add_eos:
            eos = torch.tensor([self.config.eos_token_id], device=rows[0].device)
            rows = [torch.cat([r, eos]) for r in rows]
        ids, mask = pad_rows(rows, self.config.pad_token_id, "right", self.device)
        return super().score(input_ids=ids, attention_mask=mask, batch_size=batch_size)

    # -- generation -----------------------------------------------------------------------------------
    def allowed_token_ids(self, output_modality: str) -> torch.LongTensor:
        """The token ids `generate` may produce for an output modality (the end token always)."""
        if output_modality not in MODALITIES:
            raise ValueError(f"output_modality must be one of {MODALITIES}, got {output_modality!r}")
        c = self.config
        text = [i for i in range(c.text_vocab_size) if i not in (c.pad_token_id, c.bos_token_id)]
        units = list(range(c.unit_offset, c.unit_offset + c.n_units))
        allowed = {"text": text, "speech": units + [c.eos_token_id]}[output_modality] if output_modality != "any" else (
            text + units + [c.text_token_id, c.speech_token_id]
        )  # fmt: skip
        return torch.tensor(sorted(set(allowed)), dtype=torch.long)

    def infer_output_modality(self, input_ids: torch.LongTensor) -> str:
        """The modality a prompt asks for: its last token's marker (`[TEXT]` -> text, `[SPEECH]` ->
        speech) when all rows agree, else "any"."""
        last = input_ids[:, -1]
        if bool((last == self.config.speech_token_id).all()):
            return "speech"
        if bool((last == self.config.text_token_id).all()):
            return "text"
        return "any"

    def _prompt(
        self,
        input_ids: torch.LongTensor | None,
        attention_mask: torch.LongTensor | None,
        input_values: torch.FloatTensor | None,
        audio_attention_mask: torch.LongTensor | None,
        inputs_embeds: torch.FloatTensor | None = None,
    ) -> tuple[torch.LongTensor | None, torch.LongTensor | None]:
        c = self.config
        if input_ids is None and input_values is None and inputs_embeds is not None:
            return (
                None,
                attention_mask,
            )  # ready-made embeddings: the backbone's generate takes them as they are
        if input_ids is None and input_values is not None:
            # audio alone (what transformers' speech-recognition pipeline passes): transcribe it
            audio_attention_mask = (
                audio_attention_mask if audio_attention_mask is not None else attention_mask
            )
            n = input_values.shape[0]
            template = [c.bos_token_id, c.asr_token_id, c.speech_token_id, c.audio_token_id, c.text_token_id]
            input_ids = torch.tensor([template] * n, device=self.device)
            attention_mask = torch.ones_like(input_ids)
        elif input_ids is None:
            input_ids = torch.full((1, 1), c.bos_token_id, dtype=torch.long, device=self.device)
            attention_mask = torch.ones_like(input_ids)
        if attention_mask is not None and bool((attention_mask[:, -1] == 0).any()):
            raise ValueError(
                "generate needs left-padded prompts: call the processor with padding_side='left'"
            )
        if input_values is not None or bool((input_ids == c.audio_token_id).any()):
            spliced = self.splice_audio(input_ids, attention_mask, input_values, audio_attention_mask, "left")
            input_ids, attention_mask = spliced["input_ids"], spliced["attention_mask"]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return input_ids.to(self.device), attention_mask.to(self.device)

    def _generation_setup(
        self, input_ids: torch.LongTensor, output_modality: str | None, generation_config: Any, kwargs: dict
    ) -> tuple[str, GenerationConfig, dict]:
        from transformers import LogitsProcessorList

        modality = output_modality or (
            self.infer_output_modality(input_ids) if input_ids is not None else "any"
        )
        generation_config = copy.deepcopy(generation_config or self.generation_config)
        model_kwargs = generation_config.update(**kwargs)  # returns what is not a generation setting
        processors = LogitsProcessorList(model_kwargs.pop("logits_processor", None) or [])
        processors.append(
            _ModalityMask(self.allowed_token_ids(modality), self.config.vocab_size, self.device)
        )
        model_kwargs["logits_processor"] = processors
        return modality, generation_config, model_kwargs

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        input_values: torch.FloatTensor | None = None,
        audio_attention_mask: torch.LongTensor | None = None,
        output_modality: str | None = None,
        return_audio: bool | None = None,
        speaker: str | int | None = None,
        generation_config: GenerationConfig | None = None,
        **kwargs: Any,
    ) -> torch.LongTensor | ModelOutput:
        """Continue prompts in text, in speech, or in either.

        Args:
            input_ids, attention_mask, input_values, audio_attention_mask: the processor's output
                (left-padded). Audio alone (no ids) is transcribed; nothing at all starts from the
                begin token.
            output_modality (`str`, *optional*): `"text"`, `"speech"` or `"any"`; the other modality's
                tokens are masked out of the logits (a logits processor added to any you pass). By default the prompt's last marker decides
                (`task="asr"` ends in `[TEXT]`, `task="tts"` in `[SPEECH]`).
            return_audio (`bool`, *optional*): for speech output, voice the new units with the vocoder
                and return a [`SpeechTextLMGenerateOutput`] (default when the model has a vocoder).
                Otherwise token ids come back, like any causal LM.
            speaker: the vocoder's speaker (name or id) for the audio; None is its unknown speaker.
            kwargs: generation settings (`max_new_tokens`, `do_sample`, `streamer`, ...).
        """
        input_ids, attention_mask = self._prompt(
            input_ids, attention_mask, input_values, audio_attention_mask, kwargs.get("inputs_embeds")
        )
        modality, generation_config, model_kwargs = self._generation_setup(
            input_ids, output_modality, generation_config, kwargs
        )
        prompt = input_ids if input_ids is not None else kwargs["inputs_embeds"]
        check_context_length(
            self.config,
            prompt.shape[1],
            generation_config.max_new_tokens,
            "the prompt (text and speech units)",
        )
        out = self.lm.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=generation_config,
            **model_kwargs,
        )
        if return_audio is None:
            return_audio = modality == "speech" and self.vocoder is not None
        if not return_audio:
            return out
        if self.vocoder is None:
            raise ValueError(
                "this model has no vocoder to voice speech with: pass return_audio=False for unit ids"
            )
        sequences = out if isinstance(out, torch.Tensor) else out.sequences
        units = self.ids_to_units(sequences[:, input_ids.shape[1] if input_ids is not None else 0 :])
        audio = [torch.from_numpy(w) for w in self.decode_speech(units, speaker=speaker)]
        return SpeechTextLMGenerateOutput(
            sequences=sequences,
            audio=audio,
            sampling_rate=self.config.sampling_rate,
            units=[u.tolist() for u in units],
        )

    # -- streaming speech -----------------------------------------------------------------------------
    def stream_speech(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        input_values: torch.FloatTensor | None = None,
        audio_attention_mask: torch.LongTensor | None = None,
        chunk_units: int = 20,
        context_units: int = 8,
        speaker: str | int | None = None,
        **kwargs: Any,
    ) -> Iterator[np.ndarray]:
        """Generate speech for one prompt and yield its audio in chunks while generation goes on.

        Every `chunk_units` new units are voiced with `context_units` units before them as context
        (whose samples are dropped), so the first audio comes after `chunk_units` units instead of
        after the whole utterance. Concatenated, the chunks are the utterance's audio.
        """
        if self.vocoder is None:
            raise ValueError("this model has no vocoder: build it with from_components(..., vocoder=PATH)")
        input_ids, attention_mask = self._prompt(
            input_ids, attention_mask, input_values, audio_attention_mask
        )
        if input_ids.shape[0] != 1:
            raise ValueError(f"stream_speech takes one prompt, got {input_ids.shape[0]}: loop over them")
        _, generation_config, model_kwargs = self._generation_setup(input_ids, "speech", None, kwargs)
        streamer = _TokenQueue()
        error: list[BaseException] = []

        def run() -> None:
            try:
                self.lm.generate(
                    input_ids=input_ids, attention_mask=attention_mask, generation_config=generation_config,
                    streamer=streamer, **model_kwargs,
                )  # fmt: skip
            except BaseException as err:  # surfaced in the caller's thread
                error.append(err)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        offset, eos = self.config.unit_offset, self.config.eos_token_id
        units: list[int] = []
        done_upto = 0
        for tokens in streamer:
            for t in tokens:
                if t == eos:
                    break
                if offset <= t < offset + self.config.n_units:
                    units.append(t - offset)
            if len(units) - done_upto >= chunk_units:
                yield self._voice_chunk(units, done_upto, len(units), context_units, speaker)
                done_upto = len(units)
        thread.join()
        if error:
            raise error[0]
        if len(units) > done_upto:
            yield self._voice_chunk(units, done_upto, len(units), context_units, speaker)

    def _voice_chunk(self, units: list[int], start: int, end: int, context: int, speaker: Any) -> np.ndarray:
        first = max(0, start - context)
        u = torch.tensor(units[first:end], dtype=torch.long)
        d = self.mean_durations(u)
        wave = self.vocoder.generate_speech(u[None], d[None], speaker=speaker)[0]
        skip = int(d[: start - first].sum()) * self.vocoder.config.samples_per_unit
        return wave[skip:]


class _ModalityMask(LogitsProcessor):
    """Masks every token outside one modality (the other modality's logits go to -inf).

    transformers' `SuppressTokensLogitsProcessor` does the same from a list of ~1,000 suppressed ids,
    but rebuilds its mask with `torch.isin` at every step: 7-9% slower generation of this model
    (`benchmarks/bench_speech_text_lm.py`). This one builds its additive mask once.
    """

    def __init__(self, allowed: torch.LongTensor, vocab_size: int, device: Any) -> None:
        self.bias = torch.full((vocab_size,), float("-inf"), device=device)
        self.bias[allowed.to(device)] = 0.0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return scores + self.bias.to(scores.dtype)[: scores.shape[-1]]


class _TokenQueue(BaseStreamer):
    """A streamer that hands the generated tokens to another thread (the prompt is skipped)."""

    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue()
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.queue.put(value.flatten().tolist())

    def end(self) -> None:
        self.queue.put(None)

    def __iter__(self) -> Iterator[list[int]]:
        while (item := self.queue.get()) is not None:
            yield item
