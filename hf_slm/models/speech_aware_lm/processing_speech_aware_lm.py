"""Processor of the speech-aware text LM: chat messages with audio in, token ids + audio features out."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict, Unpack

import numpy as np
import torch
from transformers import BatchFeature, ProcessorMixin
from transformers.processing_utils import ProcessingKwargs

from hf_slm.audio import AudioError, load_audio
from hf_slm.models.speech_aware_lm.configuration_speech_aware_lm import audio_output_length
from hf_slm.models.speech_lm.modeling_speech_lm import pad_rows
from hf_slm.models.speech_lm.processing_speech_lm import SpeechAudioKwargs

__all__ = ["CHAT_TEMPLATE", "CHAT_TOKENS", "SpeechAwareLMProcessor", "SpeechAwareLMProcessorKwargs"]

AUDIO_TOKEN, END_TOKEN, ASSISTANT_TOKEN = "<|audio|>", "<|end|>", "<|assistant|>"
CHAT_TOKENS = ("<|user|>", ASSISTANT_TOKEN, "<|system|>", END_TOKEN, AUDIO_TOKEN)

# One `<|role|>` token opens each message and `<|end|>` closes it; an audio item is one `<|audio|>`
# (the processor repeats it once per audio embedding), a text item its text after a space.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{ raise_exception('unknown chat role ' + message['role'] + ': use system, user or assistant') }}"
    "{%- endif -%}"
    "<|{{ message['role'] }}|>"
    "{%- if message['content'] is string %} {{ message['content'] }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'audio' -%}<|audio|>"
    "{%- elif item['type'] == 'text' %} {{ item['text'] }}"
    "{%- else -%}{{ raise_exception('unknown content type ' + item['type'] + ': use text or audio') }}"
    "{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "<|end|>"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)


# transformers' processing kwargs, with the `sampling_rate` checked by `hf_slm.load_audio` (see
# `SpeechAudioKwargs`)
SpeechAwareLMProcessorKwargs = TypedDict(
    "SpeechAwareLMProcessorKwargs",
    {**ProcessingKwargs.__annotations__, "audio_kwargs": SpeechAudioKwargs},
    total=False,
)


class SpeechAwareLMProcessor(ProcessorMixin):
    r"""
    Builds the inputs of [`SpeechAwareLMForConditionalGeneration`]: token ids in which each clip stands
    as exactly as many `<|audio|>` placeholders as the encoder and the adapter make embeddings of it,
    and the clips' features (log-mel frames for Whisper, waveforms for HuBERT-like encoders).

    Two ways to call it:
    - `apply_chat_template(conversation, add_generation_prompt=True, tokenize=True, return_dict=True)`
      with `{"type": "audio", "audio": PATH_OR_ARRAY}` and `{"type": "text", "text": ...}` items,
      several clips per conversation, a list of conversations for a batch. An array is taken at the
      processor's rate unless the item has a `"sampling_rate"` (or `sampling_rate=` is passed).
    - `processor(text=..., audio=..., sampling_rate=...)` with one `<|audio|>` in the text per clip.

    Call-time kwargs are transformers' text kwargs (`padding`, `truncation`, `max_length`,
    `padding_side`, `add_special_tokens`, `return_tensors`, ...), `sampling_rate`,
    `return_text_replacement_offsets` and `return_mm_token_type_ids`, flat or as `text_kwargs={...}` /
    `audio_kwargs={...}`. By default a batch is left-padded (for generation) to its longest row, as
    PyTorch tensors; the clips' features are always padded to the longest clip, with their mask.

    Args:
        feature_extractor: a `WhisperFeatureExtractor` or a `Wav2Vec2FeatureExtractor`.
        tokenizer: the LLM's tokenizer, with the chat tokens (`CHAT_TOKENS`) as special tokens.
        length_ops (`list`): the chain from samples to audio embeddings (`config.audio_length_ops()`).
        max_seconds (`float`, defaults to 30.0): longer clips are refused with a clear error.
        chat_template (`str`, *optional*): defaults to `CHAT_TEMPLATE`.
    """

    valid_processor_kwargs = SpeechAwareLMProcessorKwargs
    audio_token = AUDIO_TOKEN  # one per clip in the text; the processor repeats it per audio embedding
    # defaults that differ from the tokenizer's: a padded batch, left-padded for generation, as tensors,
    # without token type ids (the model takes none)
    text_kwargs = {
        "padding": True,
        "padding_side": "left",
        "return_tensors": "pt",
        "return_token_type_ids": False,
    }

    def __init__(
        self,
        feature_extractor: Any,
        tokenizer: Any,
        length_ops: list | None = None,
        max_seconds: float = 30.0,
        chat_template: str | None = None,
    ) -> None:
        self.length_ops = [list(op) for op in (length_ops or [])]
        self.max_seconds = max_seconds
        super().__init__(feature_extractor, tokenizer, chat_template=chat_template or CHAT_TEMPLATE)
        missing = [t for t in CHAT_TOKENS if t not in tokenizer.get_vocab()]
        if missing:
            raise ValueError(
                f"the tokenizer lacks the chat tokens {missing}: build the processor with "
                "SpeechAwareLMProcessor.for_components(...), which adds them"
            )
        if tokenizer.pad_token is None:
            tokenizer.pad_token = END_TOKEN  # rows are padded with <|end|>, which the mask hides

    @classmethod
    def for_components(
        cls, audio_encoder: Any, text_model: Any, tokenizer: Any = None, **kwargs: Any
    ) -> SpeechAwareLMProcessor:
        """A processor for an encoder and an LLM checkpoint: the encoder's feature extractor (its folder's,
        else the default of its type), the LLM's tokenizer with the chat tokens added where missing."""
        from transformers import (
            AutoConfig,
            AutoFeatureExtractor,
            AutoTokenizer,
            PreTrainedModel,
            Wav2Vec2FeatureExtractor,
            WhisperFeatureExtractor,
        )

        if isinstance(audio_encoder, PreTrainedModel):
            fe, enc_config = None, audio_encoder.config
        else:
            enc_config = AutoConfig.from_pretrained(audio_encoder)
            try:
                fe = AutoFeatureExtractor.from_pretrained(audio_encoder)
            except (OSError, ValueError):
                fe = None
        if fe is None:
            if enc_config.model_type == "whisper":
                fe = WhisperFeatureExtractor(feature_size=enc_config.num_mel_bins)
            else:
                fe = Wav2Vec2FeatureExtractor(
                    feature_size=1, sampling_rate=16_000, padding_value=0.0, return_attention_mask=True,
                    do_normalize=getattr(enc_config, "feat_extract_norm", "layer") == "layer",
                )  # fmt: skip
        if tokenizer is None:
            if isinstance(text_model, PreTrainedModel):
                raise ValueError("give tokenizer= with a text model object (its folder carries it otherwise)")
            tokenizer = AutoTokenizer.from_pretrained(text_model)
        tokenizer = _with_chat_tokens(tokenizer)
        return cls(fe, tokenizer, **kwargs)

    # -- vocabulary --------------------------------------------------------------------------------
    @property
    def sampling_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    @property
    def audio_token_id(self) -> int:
        return int(self.tokenizer.convert_tokens_to_ids(AUDIO_TOKEN))

    @property
    def model_input_names(self) -> list[str]:
        # the clips' features are `input_features` whatever the encoder (log-mel frames or waveforms),
        # with their own mask: `attention_mask` is the tokens'
        return ["input_ids", "attention_mask", "input_features", "feature_attention_mask"]

    @property
    def end_token_id(self) -> int:
        return int(self.tokenizer.convert_tokens_to_ids(END_TOKEN))

    @property
    def is_whisper(self) -> bool:
        return type(self.feature_extractor).__name__.startswith("Whisper")

    def num_audio_tokens(self, num_samples: int) -> int:
        """Placeholders for a clip of `num_samples` samples at the processor's rate."""
        if not self.length_ops:
            raise ValueError(
                "this processor does not know the model's frame rate (length_ops is empty): load it with "
                "AutoProcessor.from_pretrained(model folder) or build it with from_components(..., return_processor=True)"
            )
        return audio_output_length(num_samples, self.length_ops)

    # -- building inputs -------------------------------------------------------------------------------
    def __call__(
        self,
        text: str | list[str] | None = None,
        audio: Any = None,
        **kwargs: Unpack[SpeechAwareLMProcessorKwargs],
    ) -> BatchFeature:
        """Token ids with each `<|audio|>` of the text repeated once per audio embedding of its clip.

        Args:
            text: a prompt or a batch of prompts (usually rendered by `apply_chat_template`), one
                `<|audio|>` per clip.
            audio: the clips of the whole batch in the order of their `<|audio|>` tokens (paths, arrays,
                `{"array", "sampling_rate"}` dicts, `datasets` Audio values).
            sampling_rate (`int`): the rate of the arrays in `audio` (resampled to the processor's rate).

        Returns:
            `BatchFeature` with `input_ids`, `attention_mask` and, with audio, `input_features`
            `(clips, mel_bins, frames)` or `(clips, samples)` and `feature_attention_mask`.
        """
        if text is None:
            raise ValueError(
                "pass text= with one <|audio|> per clip, or use apply_chat_template(conversation) to write it"
            )
        texts = [text] if isinstance(text, str) else list(text)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError("text must be a string or a non-empty list of strings")
        output_kwargs = self._merge_kwargs(
            SpeechAwareLMProcessorKwargs, tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs
        )
        text_kwargs = output_kwargs["text_kwargs"]
        return_tensors = text_kwargs.pop("return_tensors", None)
        return_mm_token_type_ids = text_kwargs.pop(
            "return_mm_token_type_ids", output_kwargs["return_mm_token_type_ids"]
        )
        return_offsets = text_kwargs.pop(
            "return_text_replacement_offsets", output_kwargs["return_text_replacement_offsets"]
        )
        clips = [] if audio is None else (list(audio) if _is_clip_list(audio) else [audio])
        n_slots = sum(t.count(AUDIO_TOKEN) for t in texts)
        if n_slots != len(clips):
            raise ValueError(
                f"The number of {AUDIO_TOKEN} tokens in the prompts should be the same as the number of clips: "
                f"the text has {n_slots} {AUDIO_TOKEN} placeholders but {len(clips)} clips were given. Write one "
                f"{AUDIO_TOKEN} per clip, in order (apply_chat_template writes them from {{'type': 'audio'}} items)"
            )
        sampling_rate = output_kwargs["audio_kwargs"].get("sampling_rate")
        waves = [self._load(c, sampling_rate) for c in clips]
        replacements = [self.replace_audio_token({"waveforms": waves}, i) for i in range(len(waves))]
        texts, offsets = self.get_text_with_replacements(texts, audio_replacements=replacements)
        text_inputs = self.tokenizer(texts, **text_kwargs)
        self._check_special_mm_tokens(texts, text_inputs, modalities=["audio"])
        data = dict(text_inputs)
        if return_offsets:
            data["text_replacement_offsets"] = offsets
        if return_mm_token_type_ids:
            data["mm_token_type_ids"] = self.create_mm_token_type_ids(data["input_ids"])
        if waves:
            data.update(self._audio_features(waves))
        return BatchFeature(
            data, tensor_type=return_tensors, skip_tensor_conversion=self.skip_tensor_conversion
        )

    def replace_audio_token(self, audio_inputs: dict, audio_idx: int, **kwargs: Any) -> str:
        """What stands for clip `audio_idx` of `audio_inputs["waveforms"]` (the loaded clips) in the text:
        one `<|audio|>` per audio embedding the model makes of it."""
        return AUDIO_TOKEN * self.num_audio_tokens(len(audio_inputs["waveforms"][audio_idx]))

    def _load(self, clip: Any, sampling_rate: int | None) -> np.ndarray:
        if clip is None:
            raise AudioError(
                "an audio item has no audio: give a path, bytes or an array (with its sampling_rate)"
            )
        wave = load_audio(
            clip, sampling_rate, target_sampling_rate=self.sampling_rate, max_seconds=self.max_seconds
        )
        if self.num_audio_tokens(len(wave)) < 1:
            raise AudioError(
                f"a clip of {len(wave)} samples ({len(wave) / self.sampling_rate * 1000:.0f} ms) is too short to give "
                "a single audio embedding: pad it with silence or drop it"
            )
        return wave

    def _expand(self, rows: list[list[int]], waves: list[np.ndarray]) -> list[list[int]]:
        audio_id, k, out = self.audio_token_id, 0, []
        for row in rows:
            new = []
            for i in row:
                if i == audio_id:
                    new += [audio_id] * self.num_audio_tokens(len(waves[k]))
                    k += 1
                else:
                    new.append(i)
            out.append(new)
        return out

    def _features(self, wave: np.ndarray) -> np.ndarray:
        """One clip's encoder input, alone (no padding): `(mel_bins, frames)` or `(samples,)`."""
        if self.is_whisper:
            feats = self.feature_extractor(
                wave, sampling_rate=self.sampling_rate, padding="longest", return_tensors="np"
            )["input_features"][0]
            return feats[:, : len(wave) // self.feature_extractor.hop_length]
        return self.feature_extractor(wave, sampling_rate=self.sampling_rate, return_tensors="np")[
            "input_values"
        ][0]

    def _audio_features(self, waves: list[np.ndarray]) -> dict[str, np.ndarray]:
        """The clips' features, padded to the longest, and their mask."""
        feats = [self._features(w).astype(np.float32) for w in waves]
        longest = max(f.shape[-1] for f in feats)
        batch = np.zeros((len(feats), *feats[0].shape[:-1], longest), dtype=np.float32)
        fmask = np.zeros((len(feats), longest), dtype=np.int64)
        for i, f in enumerate(feats):
            batch[i, ..., : f.shape[-1]] = f
            fmask[i, : f.shape[-1]] = 1
        return {"input_features": batch, "feature_attention_mask": fmask}

    # -- chat ------------------------------------------------------------------------------------------
    def _multimodal_inputs_from_conversations(
        self, conversations, audio_loading_params, load_audio_from_video=False
    ):
        # transformers loads each audio item itself (at one rate for all); here each item keeps its own
        # `sampling_rate` and goes through hf_slm.load_audio (validated, resampled) in __call__.
        clips = []
        for conversation in conversations:
            for message in conversation:
                content = message.get("content")
                if not isinstance(content, list):
                    continue
                for item in content:
                    if not isinstance(item, dict) or item.get("type") != "audio":
                        continue
                    value = next((item[k] for k in ("audio", "path", "url") if item.get(k) is not None), None)
                    if value is None:
                        raise AudioError(
                            "an {'type': 'audio'} item has no audio: add 'audio': PATH_OR_ARRAY (with "
                            "'sampling_rate' for an array)"
                        )
                    if isinstance(value, (str, Path, bytes, dict)):
                        clips.append(value)
                    else:
                        clips.append({"array": value, "sampling_rate": item.get("sampling_rate", audio_loading_params["sampling_rate"])})  # fmt: skip
        n = len(conversations)
        return [[] for _ in range(n)], [[] for _ in range(n)], clips, {}

    def training_batch(self, rows: list[dict[str, Any]]) -> BatchFeature:
        """A right-padded training batch from instruction rows (`audio`, `instruction`, `response`): the
        user turn is the clip then the instruction, the labels are the response and its `<|end|>` only."""
        prompts, responses, clips = [], [], []
        for r in rows:
            content = [{"type": "text", "text": r["instruction"]}]
            if r.get("audio") is not None:
                content.insert(0, {"type": "audio"})
                clips.append(r["audio"])
            prompts.append(
                self.apply_chat_template(
                    [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
                )
            )
            responses.append(" " + r["response"].strip() + END_TOKEN)
        waves = [self._load(c, None) for c in clips]
        prompt_rows = self._expand(self.tokenizer(prompts)["input_ids"], waves)
        answer_rows = self.tokenizer(responses, add_special_tokens=False)["input_ids"]
        rows_ids = [p + a for p, a in zip(prompt_rows, answer_rows)]
        ids, mask = pad_rows(
            [torch.tensor(r, dtype=torch.long) for r in rows_ids], self.tokenizer.pad_token_id, "right", "cpu"
        )
        out = BatchFeature({"input_ids": ids, "attention_mask": mask}, tensor_type="pt")
        if waves:
            out.update(BatchFeature(self._audio_features(waves), tensor_type="pt"))
        labels = out["input_ids"].clone().fill_(-100)
        for i, (p, a) in enumerate(zip(prompt_rows, answer_rows)):
            labels[i, len(p) : len(p) + len(a)] = out["input_ids"][i, len(p) : len(p) + len(a)]
        out["labels"] = labels
        return out

    # -- reading answers back ----------------------------------------------------------------------------
    def batch_decode(self, sequences: Any, answer_only: bool = False, **kwargs: Any) -> list[str]:
        """The tokenizer's `batch_decode` (`skip_special_tokens=True` drops the chat and audio tokens).

        With `answer_only=True`, each `generate` output is cut to its answer first: what follows the last
        `<|assistant|>` (not the prompt), up to `<|end|>`, stripped of surrounding spaces."""
        return [self.decode(s, answer_only=answer_only, **kwargs) for s in sequences]

    def decode(self, sequence: Any, answer_only: bool = False, **kwargs: Any) -> str:
        """The tokenizer's `decode`; `answer_only` as in [`~SpeechAwareLMProcessor.batch_decode`]."""
        ids = [int(i) for i in (sequence.tolist() if hasattr(sequence, "tolist") else sequence)]
        if not answer_only:
            return self.tokenizer.decode(ids, **kwargs)
        start = self.tokenizer.convert_tokens_to_ids(ASSISTANT_TOKEN)
        if start in ids:
            ids = ids[len(ids) - ids[::-1].index(start) :]
        if self.end_token_id in ids:
            ids = ids[: ids.index(self.end_token_id)]
        return self.tokenizer.decode(ids, **kwargs).strip()


def _is_clip_list(audio: Any) -> bool:
    if isinstance(audio, (list, tuple)):
        return len(audio) == 0 or not isinstance(audio[0], (int, float, np.floating, np.integer))
    return False


def _with_chat_tokens(tokenizer: Any) -> Any:
    import copy

    missing = [t for t in CHAT_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer = copy.deepcopy(tokenizer)
        tokenizer.add_special_tokens({"additional_special_tokens": missing})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = END_TOKEN
    return tokenizer
