"""Processor of the speech+text LM: text and audio segments in, one marked token sequence out."""

from __future__ import annotations

from typing import Any, TypedDict, Unpack

from transformers import BatchFeature, ProcessorMixin, Wav2Vec2FeatureExtractor
from transformers.processing_utils import ProcessingKwargs

from hf_slm.audio import AudioError, load_audio
from hf_slm.models.speech_lm.processing_speech_lm import SpeechAudioKwargs, _is_batch
from hf_slm.models.speech_text_lm.configuration_speech_text_lm import MARKERS, unit_token

__all__ = ["TASKS", "SpeechTextLMProcessor", "SpeechTextLMProcessorKwargs"]

# transformers' processing kwargs, with a `sampling_rate` that may give one rate per clip (see
# `SpeechAudioKwargs`)
SpeechTextLMProcessorKwargs = TypedDict(
    "SpeechTextLMProcessorKwargs",
    {**ProcessingKwargs.__annotations__, "audio_kwargs": SpeechAudioKwargs},
    total=False,
)

_TEXT, _AUDIO = object(), object()  # where a template puts the text / the clip

# task -> (the input it takes, its prompt after the begin token). Training data uses the same layouts
# (`hf_slm.data.interleave`), so each prompt ends where the model learned to answer.
TASKS: dict[str, tuple[str, tuple]] = {
    "asr": ("audio", ("[ASR]", "[SPEECH]", _AUDIO, "[TEXT]")),
    "tts": ("text", ("[TTS]", "[TEXT]", _TEXT, "[SPEECH]")),
    "speech_continuation": ("audio", ("[SPEECH]", _AUDIO)),
    "text_continuation": ("text", ("[TEXT]", _TEXT)),
    "speech_to_text": ("audio", ("[SPEECH]", _AUDIO, "[TEXT]")),  # cross-modal continuation
    "text_to_speech": ("text", ("[TEXT]", _TEXT, "[SPEECH]")),  # cross-modal continuation
}


class SpeechTextLMProcessor(ProcessorMixin):
    r"""
    Builds the token sequences of [`SpeechTextLMForCausalLM`] from text and audio.

    Text is tokenised by the text LM's own tokenizer; each clip goes through [`hf_slm.load_audio`]
    (mono, resampled, validated) and stands in the sequence as one `[AUDIO]` placeholder, which the
    model replaces by the clip's speech units. A `[TEXT]` or `[SPEECH]` marker opens every segment.

    Four ways to call it:
    - `task=` a prompt template: `"asr"` (audio -> its transcript), `"tts"` (text -> it, spoken),
      `"speech_continuation"`, `"text_continuation"`, and the cross-modal continuations
      `"speech_to_text"` and `"text_to_speech"`.
    - `text=` or `audio=` alone with no task: text is read aloud (`"tts"`), audio transcribed
      (`"asr"`): what the text-to-speech and speech-recognition pipelines ask of it.
    - `segments=`: any mix of text and audio, in order (strings, or `{"type": "text", "text": ...}` /
      `{"type": "audio", "audio": CLIP, "sampling_rate": SR}` items); `next_modality=` adds the
      marker of the modality the model should continue in.
    - `text=` holding one `[AUDIO]` per clip of `audio=` (transformers' placeholder convention): the
      prompt as written, markers included (e.g. `"[TEXT] the dog [SPEECH][AUDIO]"`), tokenised as is.

    Call-time kwargs are transformers' text kwargs (`padding`, `max_length`, `pad_to_multiple_of`,
    `padding_side`, `return_tensors`; `truncation` and `add_special_tokens` for written prompts) and
    `sampling_rate`, flat or as `text_kwargs={...}` / `audio_kwargs={...}`. By default the batch is
    left-padded (for generation) to its longest row, as PyTorch tensors; the clips are always padded
    to the longest clip, with their mask.

    Args:
        feature_extractor (`Wav2Vec2FeatureExtractor`): pads raw waveforms at its `sampling_rate`.
        tokenizer: the text tokenizer, with the markers and unit tokens added (see `from_text_tokenizer`).
        max_seconds (`float`, defaults to 30.0): longer clips are refused with a clear error.
        context_length (`int`, *optional*): the model's context; longer token sequences are refused.
            (Called `max_length` in processor configs saved before it was renamed: they still load.)

    Example:
        >>> proc = SpeechTextLMProcessor.from_text_tokenizer(tokenizer, n_units=87)  # doctest: +SKIP
        >>> proc(text="the dog runs", task="tts")["input_ids"]  # doctest: +SKIP
    """

    valid_processor_kwargs = SpeechTextLMProcessorKwargs
    audio_token = "[AUDIO]"  # the placeholder of a clip in a written prompt
    # defaults that differ from the tokenizer's: a padded batch, left-padded for generation, as tensors
    text_kwargs = {"padding": True, "padding_side": "left", "return_tensors": "pt"}

    def __init__(
        self,
        feature_extractor: Wav2Vec2FeatureExtractor,
        tokenizer: Any,
        max_seconds: float = 30.0,
        context_length: int | None = None,
    ) -> None:
        self.max_seconds = max_seconds
        self.context_length = context_length
        super().__init__(feature_extractor, tokenizer)

    @classmethod
    def from_dict(cls, processor_dict: dict[str, Any], **kwargs: Any) -> SpeechTextLMProcessor:
        # `context_length` was saved as `max_length`, a name transformers keeps for a call-time text kwarg
        if "max_length" in processor_dict and "context_length" not in processor_dict:
            processor_dict = dict(processor_dict)
            processor_dict["context_length"] = processor_dict.pop("max_length")
        return super().from_dict(processor_dict, **kwargs)

    @classmethod
    def from_text_tokenizer(
        cls,
        tokenizer: Any,
        n_units: int,
        sampling_rate: int = 16_000,
        max_seconds: float = 30.0,
        max_length: int | None = None,
    ) -> SpeechTextLMProcessor:
        """Add the markers and `n_units` unit tokens (as special tokens) to a text tokenizer, in
        the model's order: ids `len(tokenizer) ..` are the markers, then the units. `max_length` is
        the model's context (the processor's `context_length`)."""
        import copy

        tokenizer = copy.deepcopy(tokenizer)
        text_vocab_size = len(tokenizer)
        new = [*MARKERS, *(unit_token(u) for u in range(n_units))]
        clash = [t for t in new if t in tokenizer.get_vocab()]
        if clash:
            raise ValueError(
                f"the text tokenizer already has the tokens {clash[:3]}: give it a plain text tokenizer"
            )
        tokenizer.add_special_tokens({"additional_special_tokens": new})
        if tokenizer.convert_tokens_to_ids(unit_token(n_units - 1)) != text_vocab_size + len(new) - 1:
            raise ValueError("the added tokens did not get consecutive ids after the text vocabulary")
        fe = Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=sampling_rate, padding_value=0.0, do_normalize=False,
            return_attention_mask=True,
        )  # fmt: skip
        return cls(fe, tokenizer, max_seconds=max_seconds, context_length=max_length)

    # -- vocabulary -----------------------------------------------------------------------------------
    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    def marker_id(self, marker: str) -> int:
        if marker not in MARKERS:
            raise ValueError(f"unknown marker {marker!r}: one of {MARKERS}")
        return int(self.tokenizer.convert_tokens_to_ids(marker))

    @property
    def audio_token_id(self) -> int:
        return self.marker_id(self.audio_token)

    @property
    def model_input_names(self) -> list[str]:
        # the clips' mask is `audio_attention_mask`: `attention_mask` is the tokens'
        return ["input_ids", "attention_mask", "input_values", "audio_attention_mask"]

    @property
    def unit_offset(self) -> int:
        return int(self.tokenizer.convert_tokens_to_ids(unit_token(0)))

    @property
    def n_units(self) -> int:
        return len(self.tokenizer) - self.unit_offset

    def text_ids(self, text: str) -> list[int]:
        """Token ids of a piece of text (no begin / end token)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- building sequences -----------------------------------------------------------------------------
    def __call__(
        self,
        text: str | list[str] | None = None,
        audio: Any = None,
        task: str | None = None,
        segments: list | None = None,
        next_modality: str | None = None,
        **kwargs: Unpack[SpeechTextLMProcessorKwargs],
    ) -> BatchFeature:
        """Token ids (left-padded for generation by default), their mask and the clips.

        Args:
            text: a text or a batch of texts (for a task), or written prompts with one `[AUDIO]` per clip.
            audio: one clip or a list of clips (see [`hf_slm.load_audio`]).
            task: one of `TASKS`; with text or audio alone, `"tts"` / `"asr"` by default.
            segments: a mix of text and audio in order, or a batch of such lists.
            next_modality: with `segments`, `"text"` or `"speech"`: the marker the prompt ends with.
            sampling_rate (`int` or `list[int]`): the rate of array clips, one for all or one per clip.

        Returns a `BatchFeature` with `input_ids` and `attention_mask` (one `[AUDIO]` per clip) and,
        when there is audio, `input_values` / `audio_attention_mask`: the clips of the batch in the
        order their placeholders appear, row by row, padded at `sampling_rate`.
        """
        output_kwargs = self._merge_kwargs(
            SpeechTextLMProcessorKwargs, tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs
        )
        text_kwargs = output_kwargs["text_kwargs"]
        sampling_rate = output_kwargs["audio_kwargs"].get("sampling_rate")
        if segments is not None:
            if text is not None or audio is not None or task is not None:
                raise ValueError("give segments=[...] alone, or text= / audio= with a task, not both")
            batch = segments if segments and isinstance(segments[0], (list, tuple)) else [segments]
            rows, clips = zip(*(self._segments(s, sampling_rate, next_modality) for s in batch))
        else:
            if next_modality is not None:
                raise ValueError("next_modality goes with segments=; a task template sets its own")
            texts = [text] if isinstance(text, str) else text
            if (
                task is None
                and text is not None
                and (audio is not None or any(isinstance(t, str) and self.audio_token in t for t in texts))
            ):
                rows, clips = self._written(list(texts), audio, sampling_rate, text_kwargs)
            else:
                rows, clips = self._templated(text, audio, sampling_rate, task)
        return self._pad(list(rows), [c for cs in clips for c in cs], text_kwargs, output_kwargs)

    def _written(self, texts: list, audio: Any, sampling_rate: Any, text_kwargs: dict) -> tuple[list, list]:
        """Prompts written with their markers and one `[AUDIO]` per clip, tokenised as they are."""
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError("text must be a string or a non-empty list of strings")
        clips = [] if audio is None else (list(audio) if _is_batch(audio) else [audio])
        slots = [t.count(self.audio_token) for t in texts]
        if sum(slots) != len(clips):
            raise ValueError(
                f"The number of {self.audio_token} tokens in the prompts should be the same as the number of "
                f"clips: the text has {sum(slots)} but {len(clips)} clips were given. Write one {self.audio_token} "
                "per clip where it goes, or give the order with segments=[...], or pass a task= with audio alone"
            )
        rates = sampling_rate if isinstance(sampling_rate, (list, tuple)) else [sampling_rate] * len(clips)
        if len(rates) != len(clips):
            raise ValueError(
                f"got {len(rates)} sampling rates for {len(clips)} clips: one per clip or one for all"
            )
        tokenize = {
            k: v for k, v in text_kwargs.items() if k in ("add_special_tokens", "truncation", "max_length")
        }
        rows = self.tokenizer(texts, **tokenize)["input_ids"]
        kept = [list(r).count(self.audio_token_id) for r in rows]
        if kept != slots:
            raise ValueError(
                f"truncation cut {self.audio_token} placeholders (text {slots}, tokens {kept}): raise max_length "
                "or do not truncate"
            )
        waves = [self._load(c, r) for c, r in zip(clips, rates)]
        row_clips, k = [], 0
        for n in slots:
            row_clips.append(waves[k : k + n])
            k += n
        return [list(r) for r in rows], row_clips

    def _templated(self, text: Any, audio: Any, sampling_rate: Any, task: str | None) -> tuple[list, list]:
        if text is None and audio is None:
            raise ValueError("nothing to process: pass text=, audio= (with a task) or segments=")
        if task is None:
            if text is not None and audio is not None:
                raise ValueError(
                    "text and audio together need an order: pass segments=[...] (e.g. ['the dog', "
                    "{'type': 'audio', 'audio': wave, 'sampling_rate': sr}])"
                )
            task = "tts" if text is not None else "asr"
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}: one of {sorted(TASKS)} (or segments= for free mixes)")
        needs, template = TASKS[task]
        given = text if needs == "text" else audio
        other = audio if needs == "text" else text
        if given is None or other is not None:
            raise ValueError(f"task {task!r} takes {needs} only: pass {needs}=...")
        if needs == "text":
            items = [given] if isinstance(given, str) else list(given)
            rates = [None] * len(items)
        else:
            items = list(given) if _is_batch(given) else [given]
            rates = (
                sampling_rate if isinstance(sampling_rate, (list, tuple)) else [sampling_rate] * len(items)
            )
            if len(rates) != len(items):
                raise ValueError(
                    f"got {len(rates)} sampling rates for {len(items)} clips: one per clip or one for all"
                )
        if not items:
            raise ValueError(f"got an empty list of {needs} inputs: pass at least one")
        rows, clips = [], []
        for item, rate in zip(items, rates):
            ids, row_clips = [self.tokenizer.bos_token_id], []
            for part in template:
                if part is _TEXT:
                    ids += self.text_ids(item)
                elif part is _AUDIO:
                    ids.append(self.marker_id("[AUDIO]"))
                    row_clips.append(self._load(item, rate))
                else:
                    ids.append(self.marker_id(part))
            rows.append(ids)
            clips.append(row_clips)
        return rows, clips

    def _segments(self, segments: Any, sampling_rate: Any, next_modality: str | None) -> tuple[list, list]:
        if not segments:
            raise ValueError("segments is empty: give at least one text or audio segment")
        ids, clips, current = [self.tokenizer.bos_token_id], [], None
        for seg in segments:
            kind, value, rate = self._segment(seg, sampling_rate)
            if kind != current:
                ids.append(self.marker_id("[TEXT]" if kind == "text" else "[SPEECH]"))
                current = kind
            if kind == "text":
                ids += self.text_ids(value)
            else:
                ids.append(self.marker_id("[AUDIO]"))
                clips.append(self._load(value, rate))
        if next_modality is not None:
            if next_modality not in ("text", "speech"):
                raise ValueError(f"next_modality must be 'text' or 'speech', got {next_modality!r}")
            if next_modality != {"text": "text", "audio": "speech"}[current]:
                ids.append(self.marker_id("[TEXT]" if next_modality == "text" else "[SPEECH]"))
        return ids, clips

    @staticmethod
    def _segment(seg: Any, sampling_rate: Any) -> tuple[str, Any, Any]:
        if isinstance(seg, str):
            return "text", seg, None
        if isinstance(seg, dict) and seg.get("type") == "text":
            if not isinstance(seg.get("text"), str):
                raise ValueError(f"a text segment needs a 'text' string, got {seg!r}")
            return "text", seg["text"], None
        if isinstance(seg, dict) and seg.get("type") == "audio":
            if seg.get("audio") is None:
                raise AudioError(
                    "an audio segment has no 'audio': give a path, bytes or an array with its rate"
                )
            return "audio", seg["audio"], seg.get("sampling_rate", sampling_rate)
        if isinstance(seg, dict) and "type" in seg:
            raise ValueError(f"unknown segment type {seg['type']!r}: 'text' or 'audio'")
        return "audio", seg, sampling_rate  # a clip given directly (path, array, datasets Audio dict, ...)

    def _load(self, clip: Any, rate: Any) -> Any:
        return load_audio(clip, rate, target_sampling_rate=self.sampling_rate, max_seconds=self.max_seconds)

    def _pad(
        self, rows: list[list[int]], clips: list, text_kwargs: dict, output_kwargs: dict
    ) -> BatchFeature:
        import numpy as np

        if self.context_length is not None:
            longest = max(rows, key=len)
            if len(longest) > self.context_length:
                raise ValueError(
                    f"a sequence of {len(longest)} tokens is longer than the model's context of "
                    f"{self.context_length} (before its audio is even turned into units): shorten the text or "
                    "split it into several prompts"
                )
        padded = self.tokenizer.pad(
            {"input_ids": rows},
            padding=text_kwargs.get("padding", True),
            max_length=text_kwargs.get("max_length"),
            pad_to_multiple_of=text_kwargs.get("pad_to_multiple_of"),
            padding_side=text_kwargs.get("padding_side"),
            return_attention_mask=True,
        )
        data: dict[str, Any] = {"input_ids": padded["input_ids"], "attention_mask": padded["attention_mask"]}
        if text_kwargs.get("return_mm_token_type_ids", output_kwargs["return_mm_token_type_ids"]):
            data["mm_token_type_ids"] = self.create_mm_token_type_ids(data["input_ids"])
        if clips:
            audio = self.feature_extractor(
                clips,
                sampling_rate=self.sampling_rate,
                padding=True,
                return_attention_mask=True,
                return_tensors="np",
            )
            data["input_values"] = audio["input_values"].astype(np.float32)
            data["audio_attention_mask"] = audio["attention_mask"]
        return BatchFeature(data, tensor_type=text_kwargs.get("return_tensors"))

    # -- reading sequences back -----------------------------------------------------------------------
    def batch_decode(self, sequences: Any, **kwargs: Any) -> list[str]:
        """The tokenizer's `batch_decode`: markers and speech units are special tokens, dropped with
        `skip_special_tokens=True` (the text of a transcript or a continuation)."""
        return self.tokenizer.batch_decode(sequences, **kwargs)

    def decode(self, sequence: Any, **kwargs: Any) -> str:
        """The tokenizer's `decode` (see [`~SpeechTextLMProcessor.batch_decode`])."""
        return self.tokenizer.decode(sequence, **kwargs)

    def decode_segments(self, sequence: Any) -> list[dict[str, Any]]:
        """One sequence as its segments, in order: `{"type": "text", "text": ...}` and
        `{"type": "speech", "units": [...]}` (pad, begin, task markers dropped; stops at the end token)."""
        ids = [int(i) for i in (sequence.tolist() if hasattr(sequence, "tolist") else sequence)]
        offset, n_units = self.unit_offset, self.n_units
        eos = self.tokenizer.eos_token_id
        skip = {self.tokenizer.pad_token_id, self.tokenizer.bos_token_id, self.marker_id("[ASR]"),
                self.marker_id("[TTS]"), self.marker_id("[AUDIO]")}  # fmt: skip
        segments: list[dict[str, Any]] = []
        text_buf: list[int] = []

        def flush_text() -> None:
            if text_buf:
                segments.append(
                    {"type": "text", "text": self.tokenizer.decode(text_buf, skip_special_tokens=True)}
                )
                text_buf.clear()

        for i in ids:
            if i == eos:
                break
            if i in skip or i in (self.marker_id("[TEXT]"), self.marker_id("[SPEECH]")):
                continue
            if offset <= i < offset + n_units:
                flush_text()
                if not segments or segments[-1]["type"] != "speech":
                    segments.append({"type": "speech", "units": []})
                segments[-1]["units"].append(i - offset)
            else:
                text_buf.append(i)
        flush_text()
        return segments
