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
    """transformers' `AutomaticSpeechRecognitionPipeline`, which also runs hf-slm speech+text LMs.

    Example:
        >>> from transformers import pipeline
        >>> asr = pipeline("automatic-speech-recognition", model="zoo/speech-text-lm-tiny")  # doctest: +SKIP
        >>> asr("clip.wav")["text"]  # doctest: +SKIP
    """

    def __init__(self, model: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(model, *args, **kwargs)
        self._speech_text = _is_speech_text_lm(self.model)
        if self._speech_text:
            self.type = "seq2seq"  # generated tokens, decoded without special tokens (markers, units)
            self._generation_defaults = {}  # its own generation_config (greedy) decides

    def _forward(
        self,
        model_inputs: dict,
        return_timestamps: Any = False,
        return_language: Any = None,
        **generate_kwargs,
    ):
        if not self._speech_text:
            return super()._forward(model_inputs, return_timestamps, return_language, **generate_kwargs)
        if return_timestamps or return_language:
            raise ValueError(
                "a speech+text LM gives no timestamps or language: drop return_timestamps / return_language"
            )
        is_last = model_inputs.pop("is_last")
        model_inputs.pop("stride", None)
        values = model_inputs.pop("input_values")
        mask = model_inputs.pop("attention_mask", None)
        tokens = self.model.generate(
            input_values=values, audio_attention_mask=mask, output_modality="text",
            **self._prepare_generate_kwargs(generate_kwargs),
        )  # fmt: skip
        if isinstance(tokens, dict):
            tokens = tokens["sequences"]
        return {"is_last": is_last, "tokens": tokens, **model_inputs}


def _is_speech_text_lm(model: Any) -> bool:
    from hf_slm.models.speech_text_lm import SpeechTextLMForCausalLM

    return isinstance(model, SpeechTextLMForCausalLM)
