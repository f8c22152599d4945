"""transformers `Pipeline` subclasses for our tasks (registered in `hf_slm/auto.py`)."""

from hf_slm.pipelines.speech_continuation import SpeechContinuationPipeline
from hf_slm.pipelines.speech_recognition import SpeechRecognitionPipeline

__all__ = ["SpeechContinuationPipeline", "SpeechRecognitionPipeline"]
