"""Speech tokenizers: discrete units from audio (features + k-means) and codec (RVQ) wrappers."""

from hf_slm.units.codec import CodecOutput, CodecTokenizer, tiny_codec_config
from hf_slm.units.configuration_unit_tokenizer import SpeechUnitTokenizerConfig
from hf_slm.units.kmeans import MiniBatchKMeans, kmeans_plus_plus
from hf_slm.units.modeling_unit_tokenizer import (
    SpeechUnitTokenizer,
    SpeechUnitTokenizerOutput,
    deduplicate_units,
)

__all__ = [
    "CodecOutput",
    "CodecTokenizer",
    "MiniBatchKMeans",
    "SpeechUnitTokenizer",
    "SpeechUnitTokenizerConfig",
    "SpeechUnitTokenizerOutput",
    "deduplicate_units",
    "kmeans_plus_plus",
    "tiny_codec_config",
]
