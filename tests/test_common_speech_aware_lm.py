"""transformers' common model tests on the speech-aware text LM (family 3), the way transformers tests
Qwen2-Audio: one clip per row, with exactly as many audio placeholders as the clip gives embeddings.
"""

from __future__ import annotations

import copy
import tempfile
import unittest

import torch
import transformers_suite
from generation_common import GenerationTesterMixin

import hf_slm  # noqa: F401  (registers the Auto classes)
from hf_slm.models.speech_aware_lm import SpeechAwareLMConfig, SpeechAwareLMForConditionalGeneration

common, ConfigTester = transformers_suite.model_tests()
ModelTesterMixin = common.ModelTesterMixin
ids_tensor = common.ids_tensor


class SpeechAwareLMModelTester:
    """A 2-layer Whisper encoder of width 32 (real clip lengths), the stack+MLP adapter and a 2-layer Llama."""

    # 7 rows: transformers' eager-vs-sdpa test runs a batch of 7 (and pads other inputs with random rows)
    def __init__(self, parent, batch_size=7, is_training=True, **config_overrides):
        self.parent = parent
        self.batch_size = batch_size
        self.is_training = is_training
        self.hidden_size = 32
        self.num_hidden_layers = 2
        self.num_attention_heads = 2
        self.vocab_size = 64
        # a low id, as transformers' multimodal testers use: the resize tests clamp ids to a smaller vocabulary
        self.audio_token_id = 3
        self.clip_samples = (8000, 6400, 4800)  # 0.5, 0.4 and 0.3 s
        self.config_overrides = config_overrides
        self.seq_length = max(3 + c + 2 for c in self._counts(self.get_config())) + 1

    def config_kwargs(self) -> dict:
        return {
            "audio_config": {
                "model_type": "whisper", "d_model": 32, "encoder_layers": 2, "encoder_attention_heads": 2,
                "encoder_ffn_dim": 64, "num_mel_bins": 80, "max_source_positions": 200, "vocab_size": 64,
                "decoder_layers": 1, "decoder_attention_heads": 2, "decoder_ffn_dim": 64,
                "decoder_start_token_id": 1, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
            },
            "text_config": {
                "model_type": "llama", "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
                "intermediate_size": 64, "num_hidden_layers": self.num_hidden_layers,
                "num_attention_heads": self.num_attention_heads, "num_key_value_heads": self.num_attention_heads,
                "max_position_embeddings": 96,
            },
            "adapter_type": "stack_mlp",
            "audio_token_id": self.audio_token_id,
            "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
            # every part trains (as in Qwen2-Audio's full fine-tuning): the training tests reach each layer
            "freeze_audio_encoder": False, "freeze_text_model": False,
            **copy.deepcopy(self.config_overrides),
        }  # fmt: skip

    def get_config(self):
        return SpeechAwareLMConfig(**copy.deepcopy(self.config_kwargs()))

    def prepare_config_and_inputs_for_common(self, padding_side="right"):
        config = self.get_config()
        counts = self._counts(config)  # placeholders per clip, as the processor counts them
        frames = [n // 160 for n in self.clip_samples]
        width = self.seq_length
        input_ids = torch.zeros(self.batch_size, width, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        features = torch.zeros(self.batch_size, config.audio_config.num_mel_bins, max(frames))
        feature_mask = torch.zeros(self.batch_size, max(frames), dtype=torch.long)
        for i in range(self.batch_size):
            k = i % len(counts)
            row = torch.cat([
                torch.tensor([config.bos_token_id]), ids_tensor([2], 60) + 4,
                torch.full((counts[k],), config.audio_token_id), ids_tensor([2], 60) + 4,
            ])  # fmt: skip
            span = slice(0, len(row)) if padding_side == "right" else slice(width - len(row), width)
            input_ids[i, span], attention_mask[i, span] = row, 1
            features[i, :, : frames[k]] = torch.randn(config.audio_config.num_mel_bins, frames[k])
            feature_mask[i, : frames[k]] = 1
        inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "input_features": features,
            "feature_attention_mask": feature_mask,
        }
        return config, inputs

    def _counts(self, config) -> list[int]:
        from hf_slm.models.speech_aware_lm.configuration_speech_aware_lm import audio_output_length

        ops = config.audio_length_ops()
        return [audio_output_length(n, ops) for n in self.clip_samples]

    def prepare_config_and_inputs_for_generate(self):
        return self.prepare_config_and_inputs_for_common(padding_side="left")


class SpeechAwareLMModelTest(ModelTesterMixin, GenerationTesterMixin, unittest.TestCase):
    all_model_classes = (SpeechAwareLMForConditionalGeneration,)
    _is_composite = True
    additional_model_inputs = ["input_features", "feature_attention_mask"]
    test_can_init_all_missing_weights_before_2023 = True  # our files carry no copyright year

    def setUp(self):
        self.model_tester = SpeechAwareLMModelTester(self)
        self.config_tester = ConfigTester(
            self, config_class=SpeechAwareLMConfig, has_text_modality=False, max_audio_seconds=12.5
        )

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs = super()._prepare_for_class(inputs_dict, model_class, return_labels)
        if return_labels:  # next-token targets on the text only
            ids, mask = inputs["input_ids"], inputs["attention_mask"]
            inputs["labels"] = ids.masked_fill((mask == 0) | (ids == self.model_tester.audio_token_id), -100)
        return inputs

    def _export_inputs(self, inputs):
        # The text path: the number of audio placeholders is data, which torch.export cannot trace through
        # (the clips' embeddings are scattered into as many positions as the input holds).
        ids = inputs["input_ids"].masked_fill(inputs["input_ids"] == self.model_tester.audio_token_id, 5)
        return {"input_ids": ids, "attention_mask": inputs["attention_mask"], "use_cache": False}

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_correct_missing_keys(self):
        self.skipTest(
            "the base model is the LLM, whose checkpoint is a Llama's: loading it as a speech-aware LM is "
            "refused with a clear error (test_bare_llm_checkpoint_is_refused)"
        )

    def test_bare_llm_checkpoint_is_refused(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        model = SpeechAwareLMForConditionalGeneration(config)
        with tempfile.TemporaryDirectory() as tmp:
            model.base_model.save_pretrained(tmp)
            with self.assertRaisesRegex(ValueError, "holds a 'llama' model.*from_components"):
                SpeechAwareLMForConditionalGeneration.from_pretrained(tmp)


class SpeechAwareLMWithAudioOnlyLoRAModelTest(SpeechAwareLMModelTest):
    """The same with LoRA on the LLM that is active only with audio, and LoRA on the encoder."""

    def setUp(self):
        super().setUp()
        self.model_tester = SpeechAwareLMModelTester(
            self,
            freeze_audio_encoder=True,
            freeze_text_model=True,
            text_lora={"r": 4, "target_modules": ["q_proj", "v_proj"]},
            audio_lora={"r": 2, "target_modules": ["q_proj", "v_proj"]},
        )

    def test_can_init_all_missing_weights(self):
        # peft draws the LoRA A matrices after post_init, in an order the meta-device init cannot replay, so
        # those are checked by what they must be (a LoRA layer starts as its base: B = 0); every other weight
        # is compared exactly, as the common test does.
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        with common.seeded_weight_init():
            fresh = SpeechAwareLMForConditionalGeneration(copy.deepcopy(config))
            loaded = SpeechAwareLMForConditionalGeneration.from_pretrained(
                None, config=copy.deepcopy(config), state_dict={}
            )
        want, got = fresh.state_dict(), loaded.state_dict()
        self.assertEqual(sorted(want), sorted(got))
        lora_b = [k for k in got if ".lora_B." in k]
        self.assertTrue(lora_b)
        for key in lora_b:
            self.assertTrue(bool((got[key] == 0).all()), key)
        differ = [k for k in want if ".lora_A." not in k and not bool((want[k] == got[k]).all())]
        self.assertEqual(differ, [])
