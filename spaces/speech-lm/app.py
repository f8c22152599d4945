"""The speech-lm Space: a thin layer over hf_slm.spaces, where the app is built."""

import os
from pathlib import Path

# before gradio and huggingface_hub are imported: no analytics, and offline except on huggingface.co
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
if "SPACE_ID" not in os.environ:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hf_slm.spaces import build_speech_lm_demo, launch

EXAMPLES = Path(__file__).resolve().parent / "examples"
demo = build_speech_lm_demo(examples=EXAMPLES)

if __name__ == "__main__":
    launch(demo, examples=EXAMPLES)
