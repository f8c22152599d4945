"""`pipeline("automatic-speech-recognition")` for speech+text LMs too.

transformers' speech-recognition pipeline picks its decoding path from a fixed list of model classes
(CTC, its own seq2seq models, Whisper); a decoder-only LM that transcribes by generating text after
the audio is not on it. This subclass adds that one path and leaves every other model on
transformers' own code: for them it is the same pipeline.
"""

from __future__ import annotations

from typing import Any

from transformers.pipelines.automatic_speech_recognition import AutomaticSpeechRecognitionPipeline

__all__ = ["SpeechRecognitionPipeline"]


class SpeechRecognitionPipeline(AutomaticSpeechRecognitionPipeline):
    """transformers' `AutomaticSpeechRecognitionPipeline`, which also runs hf-slm speech+text LMs and
    speech-aware LMs (asked "Transcribe the audio." through their chat template, or `instruction=`).

    Example:
        >>> from transformers import pipeline
        >>> asr = pipeline("automatic-speech-recognition", model="zoo/speech-text-lm-tiny")  # doctest: +SKIP
        >>> asr("clip.wav")["text"]  # doctest: +SKIP
    """

    def __init__(self, model: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(model, *args, **kwargs)
        self._speech_text = _is_speech_text_lm(self.model)
        self._speech_aware = _is_speech_aware_lm(self.model)
        if self._speech_text or self._speech_aware:
            self.type = "seq2seq"  # generated tokens, decoded without special tokens (markers, units)
            self._generation_defaults = {}  # its own generation_config (greedy) decides
        if self._speech_aware:
            from transformers import AutoProcessor

            # a speech-aware LM is asked to transcribe through its chat template
            self._chat_processor = AutoProcessor.from_pretrained(self.model.name_or_path)

    def _sanitize_parameters(self, instruction: str | None = None, **kwargs: Any):
        preprocess, forward, post = super()._sanitize_parameters(**kwargs)
        if instruction is not None:
            if not self._speech_aware:
                raise ValueError("instruction= is for speech-aware LMs (family 3), which answer instructions")
            preprocess["instruction"] = instruction
        return preprocess, forward, post

    def preprocess(
        self,
        inputs: Any,
        chunk_length_s: float = 0,
        stride_length_s: Any = None,
        instruction: str | None = None,
    ):
        if not self._speech_aware:
            yield from super().preprocess(
                inputs, chunk_length_s=chunk_length_s, stride_length_s=stride_length_s
            )
            return
        from hf_slm.audio import load_audio
        from hf_slm.evaluation.speech_aware import DEFAULT_ASR_INSTRUCTION

        proc = self._chat_processor
        if chunk_length_s:
            raise ValueError("a speech-aware LM reads whole clips: drop chunk_length_s (clips up to "
                             f"{proc.max_seconds:g} s)")  # fmt: skip
        if isinstance(inputs, dict):
            rate = inputs.get("sampling_rate")
            inputs = {"array": inputs.get("array", inputs.get("raw")), "sampling_rate": rate}
        elif not isinstance(
            inputs, (str, bytes)
        ):  # a bare array is at the processor's rate (transformers' rule)
            inputs = {"array": inputs, "sampling_rate": proc.sampling_rate}
        wave = load_audio(inputs, target_sampling_rate=proc.sampling_rate, max_seconds=proc.max_seconds)
        chat = [{"role": "user", "content": [
            {"type": "audio", "audio": wave, "sampling_rate": proc.sampling_rate},
            {"type": "text", "text": instruction or DEFAULT_ASR_INSTRUCTION},
        ]}]  # fmt: skip
        yield {
            "is_last": True,
            **proc.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True),
        }

    def _forward(
        self,
        model_inputs: dict,
        return_timestamps: Any = False,
        return_language: Any = None,
        **generate_kwargs,
    ):
        if not (self._speech_text or self._speech_aware):
            return super()._forward(model_inputs, return_timestamps, return_language, **generate_kwargs)
        if return_timestamps or return_language:
            raise ValueError(
                "a speech+text LM gives no timestamps or language: drop return_timestamps / return_language"
            )
        is_last = model_inputs.pop("is_last")
        model_inputs.pop("stride", None)
        if self._speech_aware:
            prompt = model_inputs["input_ids"].shape[1]
            tokens = self.model.generate(**model_inputs, **self._prepare_generate_kwargs(generate_kwargs))
            return {"is_last": is_last, "tokens": tokens[:, prompt:]}
        values = model_inputs.pop("input_values")
        mask = model_inputs.pop("attention_mask", None)
        tokens = self.model.generate(
            input_values=values, audio_attention_mask=mask, output_modality="text",
            **self._prepare_generate_kwargs(generate_kwargs),
        )  # fmt: skip
        if isinstance(tokens, dict):
            tokens = tokens["sequences"]
        return {"is_last": is_last, "tokens": tokens, **model_inputs}


def _is_speech_aware_lm(model: Any) -> bool:
    from hf_slm.models.speech_aware_lm import SpeechAwareLMForConditionalGeneration

    return isinstance(model, SpeechAwareLMForConditionalGeneration)


def _is_speech_text_lm(model: Any) -> bool:
    from hf_slm.models.speech_text_lm import SpeechTextLMForCausalLM

    return isinstance(model, SpeechTextLMForCausalLM)
