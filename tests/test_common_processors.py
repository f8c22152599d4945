"""transformers' common processor tests on the processors of the three families.

`ProcessorTesterMixin` comes from transformers' own test suite (see `transformers_suite.py`); the
testers below are ours, written the way transformers' model folders write theirs
(`tests/models/*/test_processing_*.py`): each builds tiny components, the mixin saves the processor
once per class and checks saving and loading, kwargs merging, `model_input_names`, decoding and chat
templates against transformers' rules. The tests that are about images, videos or a chat template
skip themselves where a processor has none (transformers' own conditions).

Our processors refuse an array of samples that comes without its sampling rate (`hf_slm.load_audio`),
where transformers' feature extractors assume their own: the testers give the mixin's clips as
`{"array", "sampling_rate"}` dicts (the `datasets` format, which every processor of ours takes).
"""

from __future__ import annotations

import unittest

import numpy as np
import torch
import transformers_suite
from transformers import Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

import hf_slm  # noqa: F401  (registers the Auto classes)
from hf_slm.auto import MODEL_REGISTRY
from hf_slm.data.text_corpus import build_subword_tokenizer
from hf_slm.models.speech_aware_lm import CHAT_TOKENS, SpeechAwareLMProcessor
from hf_slm.models.speech_lm import SpeechLMProcessor
from hf_slm.models.speech_text_lm import SpeechTextLMProcessor

ProcessorTesterMixin = transformers_suite.load("test_processing_common").ProcessorTesterMixin

SR = 16_000
SENTENCES = [
    "the small dog found a red ball in the garden",
    "my happy sister reads a long book",
    "lower newer upper older longer string",
    "describe this what is the capital of france",
]


def _text_tokenizer():
    return build_subword_tokenizer(SENTENCES * 5, vocab_size=80)


def _undecorated(test):
    """A mixin test without its `require_librosa` skip: our processors decode audio with
    `hf_slm.load_audio` (FFmpeg / soundfile), never with librosa."""
    return getattr(test, "__wrapped__", test)


class _ClipsWithTheirRate:
    """What our testers change in the mixin: its clips come with their rate (also in the audio test of
    `test_subprocessor_defaults`), and its chat test of audio rates runs without librosa."""

    test_chat_template_audio_sampling_rate = _undecorated(
        ProcessorTesterMixin.test_chat_template_audio_sampling_rate
    )

    def prepare_audio_inputs(self, batch_size: int | None = None):
        arrays = ProcessorTesterMixin.prepare_audio_inputs(self, batch_size)
        return [{"array": np.asarray(a, dtype=np.float32), "sampling_rate": SR} for a in arrays]

    def test_subprocessor_defaults_3_audio(self):
        # the mixin's test with the rate given to the processor, and the bare arrays to the feature extractor
        processor = self.get_processor()
        arrays = [clip["array"] for clip in self.prepare_audio_inputs()]
        audio_kwargs = processor._merge_kwargs(
            processor.valid_processor_kwargs,
            tokenizer_init_kwargs=processor.tokenizer.init_kwargs if hasattr(processor, "tokenizer") else {},
            return_tensors="pt",
        )["audio_kwargs"]
        expected = self.get_component("feature_extractor")(arrays, sampling_rate=SR, **audio_kwargs)
        got = processor(audio=arrays, sampling_rate=SR, return_tensors="pt")
        torch.testing.assert_close(got[self.audio_input_name], expected[self.audio_input_name])
        torch.testing.assert_close(got[self.audio_mask_name], expected["attention_mask"])


# --- family 1: the pure speech LM -----------------------------------------------------------------
class SpeechLMProcessorTest(_ClipsWithTheirRate, ProcessorTesterMixin, unittest.TestCase):
    processor_class = SpeechLMProcessor
    audio_input_name = "input_values"
    audio_mask_name = "attention_mask"

    @classmethod
    def _setup_feature_extractor(cls):
        return SpeechLMProcessor.default().feature_extractor

    @staticmethod
    def prepare_processor_dict():
        return {"max_seconds": 20.0}


# --- family 2: the speech+text LM -----------------------------------------------------------------
class SpeechTextLMProcessorTest(_ClipsWithTheirRate, ProcessorTesterMixin, unittest.TestCase):
    processor_class = SpeechTextLMProcessor
    audio_input_name = "input_values"
    audio_mask_name = "audio_attention_mask"

    @classmethod
    def _setup_components(cls) -> dict:
        n_units = MODEL_REGISTRY["hf_slm_speech_text_lm"].tiny_config().n_units
        proc = SpeechTextLMProcessor.from_text_tokenizer(_text_tokenizer(), n_units)
        return {"feature_extractor": proc.feature_extractor, "tokenizer": proc.tokenizer}

    @classmethod
    def _setup_feature_extractor(cls):
        return cls._setup_components()["feature_extractor"]

    @classmethod
    def _setup_tokenizer(cls):
        return cls._setup_components()["tokenizer"]

    @staticmethod
    def prepare_processor_dict():
        return {"max_seconds": 20.0, "context_length": 256}

    def test_subprocessor_defaults_0_text(self):
        self.skipTest(
            "text alone is a text-to-speech prompt (its tokens between markers), not the tokenizer's ids"
        )


# --- family 3: the speech-aware LM ----------------------------------------------------------------
class SpeechAwareLMProcessorTest(_ClipsWithTheirRate, ProcessorTesterMixin, unittest.TestCase):
    """With a Whisper encoder's log-mel features."""

    processor_class = SpeechAwareLMProcessor
    encoder = "whisper"

    @classmethod
    def _config(cls):
        return MODEL_REGISTRY["hf_slm_speech_aware_lm"].tiny_config(encoder=cls.encoder)

    @classmethod
    def _setup_feature_extractor(cls):
        return WhisperFeatureExtractor(feature_size=cls._config().audio_config.num_mel_bins)

    @classmethod
    def _setup_tokenizer(cls):
        tokenizer = _text_tokenizer()
        tokenizer.add_special_tokens({"additional_special_tokens": list(CHAT_TOKENS)})
        return tokenizer

    @classmethod
    def prepare_processor_dict(cls):
        return {"length_ops": [list(op) for op in cls._config().audio_length_ops()], "max_seconds": 20.0}

    def test_subprocessor_defaults_3_audio(self):
        self.skipTest(
            "audio alone is no input of the speech-aware LM: its clips go with text, one <|audio|> each"
        )


class SpeechAwareLMProcessorHubertTest(SpeechAwareLMProcessorTest):
    """With a HuBERT encoder's waveforms (as the zoo's speech-aware LM)."""

    encoder = "hubert"

    @classmethod
    def _setup_feature_extractor(cls):
        return Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=SR, padding_value=0.0, do_normalize=True, return_attention_mask=True
        )
