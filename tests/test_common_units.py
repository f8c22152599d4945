"""transformers' common model tests (`transformers_suite.py`) on the two components the speech LMs
hold: the unit tokenizer (audio -> units) and the unit vocoder (units -> audio), with our testers."""

from __future__ import annotations

import unittest

import pytest
import torch
import transformers_suite
from transformers import initialization as init

import hf_slm  # noqa: F401  (registers the Auto classes)
from hf_slm.units import SpeechUnitTokenizer, SpeechUnitTokenizerConfig
from hf_slm.vocoders import UnitVocoder, UnitVocoderConfig

common, ConfigTester = transformers_suite.model_tests()
ModelTesterMixin = common.ModelTesterMixin
ids_tensor = common.ids_tensor
floats_tensor = common.floats_tensor


# --- the unit tokenizer --------------------------------------------------------------------------
class FittedSpeechUnitTokenizer(SpeechUnitTokenizer):
    """The tokenizer as `fit` leaves it. The common tests build models from a config alone, and an
    unfitted tokenizer refuses to run: this one is fitted on random centroids (as MODEL_REGISTRY's
    `prepare` does) however the tests build it (`__init__`, the meta device, a checkpoint that lacks
    keys). The plain class is what the initialisation tests check (see the TestCase)."""

    def __init__(self, config):
        super().__init__(config)
        self.is_fitted.fill_(1)  # also when transformers skips the weight init

    def _init_weights(self, module):
        super()._init_weights(module)
        if module is self:
            init.normal_(module.centroids)
            init.ones_(module.is_fitted)


class SpeechUnitTokenizerModelTester:
    """A tiny MFCC tokenizer (16 units) on 0.1-s clips at 16 kHz."""

    def __init__(self, parent, batch_size=3, seq_length=1600, is_training=False):
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = seq_length  # samples
        self.is_training = is_training
        self.n_units = 16
        self.hidden_size = 39  # the feature size: 13 MFCCs, deltas and delta-deltas
        self.num_hidden_layers = 0

    def get_config(self):
        return SpeechUnitTokenizerConfig(frontend="mfcc", n_units=self.n_units)

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        input_values = floats_tensor([self.batch_size, self.seq_length], scale=0.2) - 0.1
        attention_mask = torch.ones(self.batch_size, self.seq_length, dtype=torch.long)
        attention_mask[0, -500:] = 0  # one right-padded row
        return config, {"input_values": input_values * attention_mask, "attention_mask": attention_mask}


class SpeechUnitTokenizerModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (FittedSpeechUnitTokenizer,)
    test_can_init_all_missing_weights_before_2023 = True
    has_attentions = False  # MFCC frames and k-means (an SSL frontend's attentions are not an output)
    test_torch_exportable = False
    torch_export_skip_reason = (
        "torch.export needs shapes that do not depend on values: de-duplicated units are as many as the runs "
        "in the audio, and an unfitted tokenizer refuses to run (a check of a buffer's value)"
    )
    test_resize_embeddings = False  # a waveform in: no token embeddings

    def setUp(self):
        self.model_tester = SpeechUnitTokenizerModelTester(self)
        self.config_tester = ConfigTester(
            self, config_class=SpeechUnitTokenizerConfig, has_text_modality=False
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_init_weights_can_init_buffers(self):
        # the plain tokenizer too: its own init (unfitted, is_fitted = 0) must be what the meta device gives
        self.all_model_classes = (SpeechUnitTokenizer, FittedSpeechUnitTokenizer)
        super().test_init_weights_can_init_buffers()

    def test_can_init_all_missing_weights(self):
        self.all_model_classes = (SpeechUnitTokenizer, FittedSpeechUnitTokenizer)
        super().test_can_init_all_missing_weights()

    def test_model_get_set_embeddings(self):
        self.skipTest("a waveform in: no token embeddings")

    def test_hidden_states_output(self):
        self.skipTest("units out: no stack of layers whose hidden states it would return")

    def test_retain_grad_hidden_states_attentions(self):
        self.skipTest("units out: no hidden states or attentions")


# --- the unit vocoder ----------------------------------------------------------------------------
class UnitVocoderModelTester:
    """A tiny vocoder (16 units, width 32, one block at each rate, two speakers) on 12 units."""

    def __init__(self, parent, batch_size=3, seq_length=12, is_training=True):
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = seq_length  # units
        self.is_training = is_training
        self.n_units = 16
        self.hidden_size = 32
        self.num_hidden_layers = 2  # one ConvNeXt block at the unit rate, one at the frame rate

    def get_config(self):
        return UnitVocoderConfig(
            n_units=self.n_units,
            hidden_size=self.hidden_size,
            intermediate_size=64,
            num_unit_layers=1,
            num_frame_layers=1,
            speakers=["a", "b"],
        )

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        units = ids_tensor([self.batch_size, self.seq_length], self.n_units)
        units[0, -4:] = -1  # one padded row
        speaker_ids = ids_tensor([self.batch_size], config.num_speakers)
        return config, {"units": units, "speaker_ids": speaker_ids}


class UnitVocoderModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (UnitVocoder,)
    test_can_init_all_missing_weights_before_2023 = True
    has_attentions = False  # convolutions only
    test_torch_exportable = False
    torch_export_skip_reason = "torch.export needs shapes that do not depend on values: each unit lasts its duration (a tensor input)"
    # the unit table is the tokenizer's units plus a padding row: new units need a new tokenizer and a
    # retrained vocoder, not a resized table
    test_resize_embeddings = False

    def setUp(self):
        self.model_tester = UnitVocoderModelTester(self)
        self.config_tester = ConfigTester(
            self, config_class=UnitVocoderConfig, has_text_modality=False, common_properties=["hidden_size"]
        )

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        if return_labels:  # the training target: audio as long as the output (the same on every call)
            n = inputs_dict["units"].shape[1] * self.model_tester.get_config().samples_per_unit
            g = torch.Generator().manual_seed(0)
            inputs_dict["target_values"] = 0.1 * torch.randn(inputs_dict["units"].shape[0], n, generator=g)
        return inputs_dict

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_hidden_states_output(self):
        self.skipTest("waveform out, as transformers' own vocoders (UnivNet, HiFi-GAN): no hidden states")

    def test_retain_grad_hidden_states_attentions(self):
        self.skipTest("waveform out: no hidden states or attentions")


pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_a_checkpoint_without_its_fixed_buffers_loads_them_back(tmp_path):
    """The DCT, mel filterbank and window are recomputed by `_init_weights` when a checkpoint lacks them
    (written by an older version, or pruned): the reloaded tokenizer gives the same units."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    tok = SpeechUnitTokenizer(SpeechUnitTokenizerConfig(frontend="mfcc", n_units=16)).eval()
    tok.centroids.data.normal_()
    tok.is_fitted.fill_(1)
    tok.save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    fixed = ("frontend.dct", "frontend.mel.mel_scale.fb", "frontend.mel.spectrogram.window")
    save_file({k: v for k, v in load_file(path).items() if k not in fixed}, path, metadata={"format": "pt"})
    again = SpeechUnitTokenizer.from_pretrained(tmp_path).eval()
    buffers, loaded = dict(tok.named_buffers()), dict(again.named_buffers())
    for name in fixed:
        assert torch.equal(loaded[name], buffers[name]), name
    wave = 0.1 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(1))
    assert torch.equal(
        again.encode(wave, sampling_rate=16_000).units, tok.encode(wave, sampling_rate=16_000).units
    )
