"""The zoo's Gradio Spaces, as a library: `spaces/<name>/app.py` builds its demo from here and launches it.

>>> from hf_slm.spaces import build_demo, launch  # doctest: +SKIP
>>> launch(build_demo("slm-zoo"), server_port=7860)  # doctest: +SKIP

Or from a shell: `python -m hf_slm.spaces slm-zoo --port 7860`.
"""

from hf_slm.spaces.apps import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_SECONDS,
    DEFAULT_QUEUE_SIZE,
    SPACES,
    build_demo,
    build_speech_aware_lm_demo,
    build_speech_lm_demo,
    build_speech_text_lm_demo,
    build_zoo_demo,
    launch,
)
from hf_slm.spaces.runtime import ZOO_MODELS, load_model, resolve_model

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_SECONDS",
    "DEFAULT_QUEUE_SIZE",
    "SPACES",
    "ZOO_MODELS",
    "build_demo",
    "build_speech_aware_lm_demo",
    "build_speech_lm_demo",
    "build_speech_text_lm_demo",
    "build_zoo_demo",
    "launch",
    "load_model",
    "resolve_model",
]
