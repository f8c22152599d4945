"""transformers' common model tests on the pure speech LM (family 1) and the speech+text LM (family 2).

`ModelTesterMixin` and `ConfigTester` come from transformers' own test suite (see
`transformers_suite.py`); the testers below are ours, written the way transformers' model folders
write theirs (`tests/models/*/test_modeling_*.py`).
"""

from __future__ import annotations

import copy
import tempfile
import unittest

import pytest
import torch
import transformers_suite
from generation_common import GenerationTesterMixin

import hf_slm  # noqa: F401  (registers the Auto classes)
from hf_slm.models.speech_lm import SpeechLMConfig, SpeechLMForCausalLM
from hf_slm.models.speech_text_lm import SpeechTextLMConfig, SpeechTextLMForCausalLM

common, ConfigTester = transformers_suite.model_tests()
ModelTesterMixin = common.ModelTesterMixin
ids_tensor = common.ids_tensor
for _model_class in (SpeechLMForCausalLM, SpeechTextLMForCausalLM):
    transformers_suite.as_in_tree(
        common,
        "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
        _model_class.config_class.model_type,
        _model_class.__name__,
    )


class SpeechLMModelTester:
    """Tiny speech LMs: MFCC units (16), a 2-layer Llama of width 32 and a small vocoder."""

    config_class = SpeechLMConfig

    def __init__(self, parent, batch_size=3, seq_length=9, is_training=True):
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.is_training = is_training
        self.n_units = 16
        self.hidden_size = 32
        self.num_hidden_layers = 2
        self.num_attention_heads = 2

    def config_kwargs(self) -> dict:
        return {
            "unit_tokenizer_config": {"frontend": "mfcc", "n_units": self.n_units},
            "text_config": {
                "model_type": "llama",
                "hidden_size": self.hidden_size,
                "intermediate_size": 64,
                "num_hidden_layers": self.num_hidden_layers,
                "num_attention_heads": self.num_attention_heads,
                "num_key_value_heads": self.num_attention_heads,
                "max_position_embeddings": 64,
            },
            "vocoder_config": {
                "n_units": self.n_units,
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_unit_layers": 1,
                "num_frame_layers": 1,
            },
        }

    def get_config(self):
        return self.config_class(**copy.deepcopy(self.config_kwargs()))

    @property
    def vocab_size(self) -> int:
        return self.get_config().vocab_size

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        # every id a valid token (pad, begin and end included); rows start with the begin token
        input_ids = ids_tensor([self.batch_size, self.seq_length], config.vocab_size)
        input_ids[:, 0] = config.bos_token_id
        attention_mask = torch.ones_like(input_ids)
        attention_mask[0, -3:] = 0  # one right-padded row
        return config, {"input_ids": input_ids, "attention_mask": attention_mask}

    def prepare_config_and_inputs_for_generate(self):
        config, inputs = self.prepare_config_and_inputs_for_common()
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        ids[ids == config.eos_token_id] = config.unit_offset  # prompts run on: no end token inside
        for row in range(ids.shape[0]):  # left padding, as generate wants
            n = int(mask[row].sum())
            ids[row] = torch.cat([ids[row, n:].fill_(config.pad_token_id), ids[row, :n]])
            mask[row] = torch.cat([mask[row, n:], mask[row, :n]])
        return config, inputs


class SpeechLMModelTest(ModelTesterMixin, GenerationTesterMixin, unittest.TestCase):
    all_model_classes = (SpeechLMForCausalLM,)
    model_tester_class = SpeechLMModelTester
    config_class = SpeechLMConfig
    _is_composite = True
    test_can_init_all_missing_weights_before_2023 = True  # our files carry no copyright year

    def setUp(self):
        self.model_tester = self.model_tester_class(self)
        # scalar fields only: the sub-configs' saved dicts hold all their defaults (as LlavaConfig's do)
        self.config_tester = ConfigTester(
            self, config_class=self.config_class, has_text_modality=False, max_audio_seconds=12.5
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_correct_missing_keys(self):
        self.skipTest(
            "the base model is the backbone LLM, whose checkpoint is a Llama's: loading it as a speech LM is "
            "refused with a clear error (test_bare_llm_checkpoint_is_refused)"
        )

    def test_bare_llm_checkpoint_is_refused(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        model = self.all_model_classes[0](config)
        with tempfile.TemporaryDirectory() as tmp:
            model.base_model.save_pretrained(tmp)
            with self.assertRaisesRegex(ValueError, "holds a 'llama' model.*from_components"):
                self.all_model_classes[0].from_pretrained(tmp)


class SpeechTextLMModelTester(SpeechLMModelTester):
    config_class = SpeechTextLMConfig

    def config_kwargs(self) -> dict:
        return {**super().config_kwargs(), "text_vocab_size": 40}

    def prepare_config_and_inputs_for_common(self):
        config, inputs = super().prepare_config_and_inputs_for_common()
        # no [AUDIO] placeholder without its clip: those positions get the [SPEECH] marker instead
        ids = inputs["input_ids"]
        ids[ids == config.audio_token_id] = config.speech_token_id
        return config, inputs

    def prepare_config_and_inputs_for_generate(self):
        config, inputs = super().prepare_config_and_inputs_for_generate()
        # A prompt's last marker picks the output modality of its whole batch ([TEXT] or [SPEECH] in every row);
        # prompts that end in a unit leave it open ("any") for a batch and for each row alone alike.
        inputs["input_ids"][:, -1] = config.unit_offset
        return config, inputs


class SpeechTextLMModelTest(SpeechLMModelTest):
    all_model_classes = (SpeechTextLMForCausalLM,)
    model_tester_class = SpeechTextLMModelTester
    config_class = SpeechTextLMConfig


pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
