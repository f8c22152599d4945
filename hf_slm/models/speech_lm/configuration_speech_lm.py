"""Configuration of the pure speech LM (family 1: GSLM / TWIST / AudioLM)."""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import logging

from hf_slm.models.checks import check_config_dict
from hf_slm.units.configuration_unit_tokenizer import SpeechUnitTokenizerConfig
from hf_slm.vocoders.configuration_unit_vocoder import UnitVocoderConfig

__all__ = ["SpeechLMConfig"]

logger = logging.get_logger(__name__)


class SpeechLMConfig(PreTrainedConfig):
    r"""
    Configuration of [`SpeechLMForCausalLM`]: a unit tokenizer, a causal LM over its units, and a
    unit vocoder, saved and loaded together.

    The LM's vocabulary is `num_special_tokens + n_units`: ids `0, 1, 2` are padding, begin and end
    of an utterance, and unit `u` is token `u + num_special_tokens`.

    Args:
        unit_tokenizer_config (`dict` or `SpeechUnitTokenizerConfig`, *optional*):
            The speech unit tokenizer (audio -> unit ids). Frozen.
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            The backbone: any `AutoModelForCausalLM` config (Llama by default). Its `vocab_size` is
            set to `num_special_tokens + n_units`.
        vocoder_config (`dict` or `UnitVocoderConfig`, *optional*):
            The unit vocoder (units -> audio). Without one, the model scores and generates units only.
        acoustic_config (`dict`, *optional*):
            AudioLM-style coarse-to-fine second stage ([`CoarseToFineDecoder`]: semantic units + a prompt's
            acoustic codes -> residual-k-means log-mel codes -> audio), which keeps the prompt's voice.
        num_special_tokens (`int`, defaults to 3): ids before the first unit (pad, bos, eos).
        vocab_size (`int`, *optional*): the backbone's vocabulary. By default exactly the special
            tokens and the units; `resize_token_embeddings` changes it (and it is saved as it is).
        max_audio_seconds (`float`, defaults to 30.0): longest clip the model accepts as audio input.

    Example:
        >>> from hf_slm.models.speech_lm import SpeechLMConfig
        >>> config = SpeechLMConfig(
        ...     unit_tokenizer_config={"n_units": 100},
        ...     text_config={"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
        ...                  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4},
        ... )
        >>> config.text_config.vocab_size, config.eos_token_id
        (103, 2)
    """

    model_type = "hf_slm_speech_lm"
    sub_configs_defaults = {
        "unit_tokenizer_config": SubConfigSpec(config_class=SpeechUnitTokenizerConfig),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
        "vocoder_config": SubConfigSpec(config_class=UnitVocoderConfig, optional=True),
    }

    unit_tokenizer_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    vocoder_config: dict | PreTrainedConfig | None = None
    acoustic_config: dict | None = None
    num_special_tokens: int = 3
    vocab_size: int | None = None
    max_audio_seconds: float = 30.0
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.num_special_tokens < 3:
            raise ValueError("num_special_tokens must be at least 3 (pad, bos, eos)")
        n_units = self.unit_tokenizer_config.n_units
        if self.vocoder_config is not None and self.vocoder_config.n_units != n_units:
            raise ValueError(
                f"the vocoder speaks {self.vocoder_config.n_units} units but the tokenizer makes {n_units}: "
                "pair a vocoder with the tokenizer it was trained on"
            )
        if self.vocab_size is None:
            self.vocab_size = self.unit_offset + n_units
        elif self.vocab_size < self.unit_offset + n_units:
            logger.warning(
                f"vocab_size {self.vocab_size} leaves units {self.vocab_size - self.unit_offset} and above "
                f"without a token (the tokenizer makes {n_units}): the model can neither read nor write them"
            )
        tc = self.text_config
        tc.vocab_size = self.vocab_size
        tc.pad_token_id, tc.bos_token_id, tc.eos_token_id = (
            self.pad_token_id,
            self.bos_token_id,
            self.eos_token_id,
        )
        # the model's own embedding questions are its backbone's
        self.tie_word_embeddings = bool(getattr(tc, "tie_word_embeddings", False))

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        check_config_dict(cls, config_dict)  # a bare LLM's folder would build a default 7B Llama
        return super().from_dict(config_dict, **kwargs)

    @property
    def unit_offset(self) -> int:
        """Token id of unit 0: unit `u` is token `u + unit_offset`."""
        return self.num_special_tokens

    @property
    def n_units(self) -> int:
        return self.unit_tokenizer_config.n_units

    @property
    def sampling_rate(self) -> int:
        return self.unit_tokenizer_config.sampling_rate
