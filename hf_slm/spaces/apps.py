"""The Gradio apps of the zoo's Spaces: one builder per Space, each returning a queued `gr.Blocks`.

Every builder takes the model's location (a folder or a Hub id; by default `resolve_model`), the
folder of example clips, the longest clip it accepts, and the queue's settings. The models load on
the first request, once per process, on CPU. Every endpoint has an `api_name`, so `gradio_client`
can call it; bad input comes back as a `gr.Error` whose message says what is wrong and what to do.

The `elem_id` of every button, input and output starts with the Space's model (`speech-lm-`,
`speech-text-lm-`, `speech-aware-lm-`), so they stay unique when the three share one page (`slm-zoo`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# before gradio is imported. (`import hf_slm` has imported huggingface_hub by now, which reads
# HF_HUB_OFFLINE once: the Spaces' app.py files set it before importing hf_slm. Models load from
# folders and from the local HF cache without the network either way: `runtime.load_model`.)
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr

from hf_slm.audio import DEFAULT_SAMPLING_RATE, AudioError, to_int16
from hf_slm.data.instructions import TEMPLATES
from hf_slm.spaces import runtime
from hf_slm.spaces.plots import spectrogram_figure, units_text

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_SECONDS",
    "DEFAULT_QUEUE_SIZE",
    "INSTRUCTIONS",
    "SPACES",
    "build_demo",
    "build_speech_aware_lm_demo",
    "build_speech_lm_demo",
    "build_speech_text_lm_demo",
    "build_zoo_demo",
    "example_clips",
    "launch",
]

DEFAULT_MAX_SECONDS = 30.0  # the processors' own limit too
DEFAULT_CONCURRENCY = 2  # requests run at once per endpoint (2 cores)
DEFAULT_QUEUE_SIZE = 32  # requests waiting beyond those; more are turned away with a message
MAX_TEXT_CHARS = 300

# The speech-aware LM's preset instructions: the first phrasing of each task it was tuned on
INSTRUCTIONS = [
    TEMPLATES["transcribe"][0],
    TEMPLATES["speech_presence"][0],
    TEMPLATES["sex"][0],
    TEMPLATES["accent"][0],
    TEMPLATES["rate"][0],
    TEMPLATES["count"][0],
    TEMPLATES["first_word"][0],
    TEMPLATES["last_word"][0],
    TEMPLATES["word_presence"][0].format(word="boat"),
]
_NO_SPEECH_MARK = "no-speech"  # example clips with this in their name hold no speech
_FAMILIES = (
    "**Pure speech LM** (GSLM / TWIST style): speech units in, speech units out.",
    "**Speech+text LM** (Spirit LM / SpeechGPT style): one LM over text tokens and speech units.",
    "**Speech-aware text LM** (SALMONN / Qwen-Audio style): an audio encoder and adapter before a text LLM.",
)


# -- shared pieces -----------------------------------------------------------------------------------
def example_clips(examples: str | Path | None, speech_only: bool = True) -> list[str]:
    """The `.wav` / `.flac` / `.mp3` / `.ogg` clips of a folder, sorted (none for None or a missing folder);
    `speech_only` leaves out the clips marked as holding no speech (`*no-speech*`)."""
    if examples is None or not Path(examples).is_dir():
        return []
    clips = sorted(
        p for p in Path(examples).iterdir() if p.suffix.lower() in {".wav", ".flac", ".mp3", ".ogg"}
    )
    return [str(p) for p in clips if not (speech_only and _NO_SPEECH_MARK in p.name)]


def _default_examples(space: str) -> Path | None:
    root = runtime.repo_root()
    return None if root is None else root / "spaces" / space / "examples"


def _user_errors(fn: Callable) -> Callable:
    """Turn the errors a user can act on (bad audio, bad text, an empty result) into `gr.Error`s,
    whose message Gradio shows in the page and passes to API clients."""

    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        try:
            return fn(*args)
        except gr.Error:
            raise
        except (runtime.SpaceError, AudioError, ValueError) as err:
            raise gr.Error(str(err), print_exception=False) from err

    return wrapper


def _audio_value(wave: Any, sampling_rate: int) -> tuple[int, Any]:
    return sampling_rate, to_int16(wave)  # 16-bit PCM: Gradio writes it as a wav file unchanged


def _audio_input(prefix: str, max_seconds: float) -> gr.Audio:
    return gr.Audio(
        sources=["microphone", "upload"],
        type="filepath",
        label=f"Speech (record or upload; {runtime.MIN_SECONDS:g} to {max_seconds:g} s)",
        elem_id=f"{prefix}-audio-in",
    )


def _generation_controls(
    prefix: str, max_new_tokens: tuple[int, int, int], temperature: float
) -> tuple[gr.Slider, gr.Slider, gr.Number]:
    low, high, default = max_new_tokens
    with gr.Accordion("Generation", open=True):
        tokens = gr.Slider(low, high, value=default, step=1, label="max new tokens",
                           elem_id=f"{prefix}-max-new-tokens")  # fmt: skip
        temp = gr.Slider(0.0, 1.5, value=temperature, step=0.05, label="temperature (0 = greedy)",
                         elem_id=f"{prefix}-temperature")  # fmt: skip
        seed = gr.Number(value=0, precision=0, label="seed (when sampling)", elem_id=f"{prefix}-seed")
    return tokens, temp, seed


def _model_note(location: str, max_seconds: float) -> str:
    root = runtime.repo_root()
    if root is not None and Path(location).is_relative_to(root):
        location = Path(location).relative_to(root).as_posix()  # zoo/<name> of this clone
    return f"Model: `{location}` (loaded on the first request, CPU). Clips up to {max_seconds:g} s."


def _speech_outputs(out: runtime.SpeechOutput, title: str) -> tuple[Any, str, Any]:
    """Audio, units text and figure of generated speech (and its prompt), for the Gradio outputs."""
    return (
        _audio_value(out.audio, out.sampling_rate),
        "\n".join(units_text(t) for t in out.tracks),
        spectrogram_figure(out.plot_wave, out.sampling_rate, title, out.tracks),
    )


def _speech_continuation_ui(
    prefix: str, location: str, examples: str | Path | None, max_seconds: float, api_name: str
) -> None:
    """A spoken prompt -> its continuation, for any model `runtime.continue_speech` takes."""
    with gr.Row():
        with gr.Column():
            audio_in = _audio_input(prefix, max_seconds)
            prompt_seconds = gr.Slider(0.0, 10.0, value=1.5, step=0.25, elem_id=f"{prefix}-prompt-seconds",
                                       label="prompt: the clip's first seconds (0 = all of it)")  # fmt: skip
            tokens, temp, seed = _generation_controls(prefix, (10, 400, 150), 0.9)
            run = gr.Button("Continue the speech", variant="primary", elem_id=f"{prefix}-run")
        with gr.Column():
            audio_out = gr.Audio(label="Continuation", interactive=False, elem_id=f"{prefix}-audio-out")
            units_out = gr.Textbox(label="Units (label×frames of 20 ms)", lines=4, elem_id=f"{prefix}-units")
    plot = gr.Plot(label="Prompt and continuation, with their unit boundaries", elem_id=f"{prefix}-plot")
    clips = example_clips(examples)
    if clips:
        gr.Examples(
            [[c] for c in clips], inputs=[audio_in], label="Example clips", elem_id=f"{prefix}-examples"
        )

    @_user_errors
    def continue_speech(audio, prompt_seconds, max_new_tokens, temperature, seed):
        wave = runtime.read_clip(audio, max_seconds)
        out = runtime.continue_speech(
            runtime.load_model(location), wave, prompt_seconds=prompt_seconds,
            max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
        )  # fmt: skip
        seconds = len(out.audio) / out.sampling_rate
        return _speech_outputs(out, f"prompt ({out.tracks[0].end:.2f} s) + continuation ({seconds:.2f} s)")

    run.click(continue_speech, inputs=[audio_in, prompt_seconds, tokens, temp, seed],
              outputs=[audio_out, units_out, plot], api_name=api_name)  # fmt: skip


# -- the pure speech LM ------------------------------------------------------------------------------
def speech_lm_tab(location: str, examples: str | Path | None, max_seconds: float) -> None:
    """The speech LM's controls, rendered into the current Blocks: a spoken prompt -> its continuation."""
    prefix = "speech-lm"
    gr.Markdown(
        "Record or upload a spoken prompt: the model turns it into speech units (phones, with their "
        "durations), continues the units, and its vocoder speaks the continuation. "
        + _model_note(location, max_seconds)
    )
    _speech_continuation_ui(prefix, location, examples, max_seconds, "speech_lm_continuation")


# -- the speech+text LM ------------------------------------------------------------------------------
def speech_text_lm_tab(location: str, examples: str | Path | None, max_seconds: float) -> None:
    """The speech+text LM's four tasks as sub-tabs, rendered into the current Blocks."""
    prefix = "speech-text-lm"
    gr.Markdown(
        "One LM over text tokens and speech units: it transcribes speech (ASR), reads text aloud (TTS), "
        "and continues speech in speech or text in text. " + _model_note(location, max_seconds)
    )
    clips = example_clips(examples)

    with gr.Tab("Speech → text (ASR)", elem_id=f"{prefix}-tab-asr"):
        with gr.Row():
            with gr.Column():
                asr_in = _audio_input(f"{prefix}-asr", max_seconds)
                asr_tokens, asr_temp, asr_seed = _generation_controls(f"{prefix}-asr", (4, 200, 64), 0.0)
                asr_run = gr.Button("Transcribe", variant="primary", elem_id=f"{prefix}-asr-run")
            with gr.Column():
                asr_text = gr.Textbox(label="Transcript", lines=3, elem_id=f"{prefix}-asr-text")
                asr_plot = gr.Plot(label="Input, with its unit boundaries", elem_id=f"{prefix}-asr-plot")
        if clips:
            gr.Examples([[c] for c in clips], inputs=[asr_in], label="Example clips",
                        elem_id=f"{prefix}-asr-examples")  # fmt: skip

    with gr.Tab("Text → speech (TTS)", elem_id=f"{prefix}-tab-tts"):
        with gr.Row():
            with gr.Column():
                tts_in = gr.Textbox(label="Text to read aloud", lines=2, elem_id=f"{prefix}-tts-text-in",
                                    value="the little dog found a red ball in the garden")  # fmt: skip
                tts_tokens, tts_temp, tts_seed = _generation_controls(f"{prefix}-tts", (10, 400, 200), 0.0)
                tts_run = gr.Button("Speak", variant="primary", elem_id=f"{prefix}-tts-run")
            with gr.Column():
                tts_audio = gr.Audio(label="Speech", interactive=False, elem_id=f"{prefix}-tts-audio-out")
                tts_units = gr.Textbox(label="Units (label×frames of 20 ms)", lines=3,
                                       elem_id=f"{prefix}-tts-units")  # fmt: skip
        tts_plot = gr.Plot(label="The speech, with its unit boundaries", elem_id=f"{prefix}-tts-plot")
        gr.Examples(
            [["my sister painted a green boat near the river"], ["the old farmer walked to the market today"]],
            inputs=[tts_in], label="Example sentences", elem_id=f"{prefix}-tts-examples",
        )  # fmt: skip

    with gr.Tab("Speech continuation", elem_id=f"{prefix}-tab-speech-continuation"):
        _speech_continuation_ui(
            f"{prefix}-sc", location, examples, max_seconds, "speech_text_lm_speech_continuation"
        )

    with gr.Tab("Text continuation", elem_id=f"{prefix}-tab-text-continuation"):
        with gr.Row():
            with gr.Column():
                tc_in = gr.Textbox(label="The start of a sentence", lines=2, value="the old farmer",
                                   elem_id=f"{prefix}-tc-text-in")  # fmt: skip
                tc_tokens, tc_temp, tc_seed = _generation_controls(f"{prefix}-tc", (1, 100, 30), 0.8)
                tc_run = gr.Button("Continue the text", variant="primary", elem_id=f"{prefix}-tc-run")
            with gr.Column():
                tc_text = gr.Textbox(label="Prompt + continuation", lines=3, elem_id=f"{prefix}-tc-text-out")
        gr.Examples([["my little sister"], ["a brave girl carried"]], inputs=[tc_in], label="Example prompts",
                    elem_id=f"{prefix}-tc-examples")  # fmt: skip

    def model() -> runtime.LoadedModel:
        return runtime.load_model(location)

    @_user_errors
    def asr(audio, max_new_tokens, temperature, seed):
        wave = runtime.read_clip(audio, max_seconds)
        text, track = runtime.transcribe(
            model(), wave, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
        )
        return text, spectrogram_figure(wave, DEFAULT_SAMPLING_RATE, f"\u201c{text}\u201d", [track])

    @_user_errors
    def tts(text, max_new_tokens, temperature, seed):
        text = runtime.read_text(text, MAX_TEXT_CHARS)
        out = runtime.speak_text(
            model(), text, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
        )
        return _speech_outputs(out, f"\u201c{text}\u201d")

    @_user_errors
    def text_continuation(text, max_new_tokens, temperature, seed):
        text = runtime.read_text(text, MAX_TEXT_CHARS)
        return runtime.continue_text(
            model(), text, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
        )

    asr_run.click(asr, inputs=[asr_in, asr_tokens, asr_temp, asr_seed], outputs=[asr_text, asr_plot],
                  api_name="speech_text_lm_asr")  # fmt: skip
    tts_run.click(tts, inputs=[tts_in, tts_tokens, tts_temp, tts_seed], outputs=[tts_audio, tts_units, tts_plot],
                  api_name="speech_text_lm_tts")  # fmt: skip
    tc_run.click(text_continuation, inputs=[tc_in, tc_tokens, tc_temp, tc_seed], outputs=[tc_text],
                 api_name="speech_text_lm_text_continuation")  # fmt: skip


# -- the speech-aware LM -----------------------------------------------------------------------------
def speech_aware_lm_tab(location: str, examples: str | Path | None, max_seconds: float) -> None:
    """The speech-aware LM's controls, rendered into the current Blocks: a clip + an instruction -> text."""
    prefix = "speech-aware-lm"
    gr.Markdown(
        "Give a clip and an instruction: the model hears the clip (audio encoder + adapter) and answers "
        "in text. Pick an instruction it was tuned on, or type your own. "
        + _model_note(location, max_seconds)
    )
    with gr.Row():
        with gr.Column():
            audio_in = _audio_input(prefix, max_seconds)
            instruction = gr.Dropdown(INSTRUCTIONS, value=INSTRUCTIONS[0], allow_custom_value=True,
                                      label="Instruction (pick one or type your own)",
                                      elem_id=f"{prefix}-instruction")  # fmt: skip
            tokens, temp, seed = _generation_controls(prefix, (1, 128, 48), 0.0)
            run = gr.Button("Answer", variant="primary", elem_id=f"{prefix}-run")
        with gr.Column():
            answer_out = gr.Textbox(label="Answer", lines=3, elem_id=f"{prefix}-answer")
            plot = gr.Plot(label="The clip, with the answer", elem_id=f"{prefix}-plot")
    # one preset question per example clip (in turn), and "is there any speech?" for non-speech clips
    questions = [
        TEMPLATES["accent"][0],
        TEMPLATES["transcribe"][0],
        TEMPLATES["sex"][0],
        TEMPLATES["count"][0],
    ]
    rows = []
    for i, clip in enumerate(example_clips(examples, speech_only=False)):
        no_speech = _NO_SPEECH_MARK in Path(clip).name
        rows.append([clip, TEMPLATES["speech_presence"][0] if no_speech else questions[i % len(questions)]])
    if rows:
        gr.Examples(rows, inputs=[audio_in, instruction], label="Example clips and instructions",
                    elem_id=f"{prefix}-examples")  # fmt: skip

    @_user_errors
    def answer(audio, instruction, max_new_tokens, temperature, seed):
        wave = runtime.read_clip(audio, max_seconds)
        instruction = runtime.read_text(instruction, MAX_TEXT_CHARS)
        text = runtime.answer_instruction(
            runtime.load_model(location), wave, instruction, max_new_tokens=max_new_tokens,
            temperature=temperature, seed=seed,
        )  # fmt: skip
        return text, spectrogram_figure(wave, DEFAULT_SAMPLING_RATE, f"{instruction}\n\u2192 {text}")

    run.click(answer, inputs=[audio_in, instruction, tokens, temp, seed], outputs=[answer_out, plot],
              api_name="speech_aware_lm_answer")  # fmt: skip


# -- the Spaces --------------------------------------------------------------------------------------
def _single(
    space: str,
    tab: Callable[[str, Any, float], None],
    title: str,
    blurb: str,
    model: str | None,
    examples: str | Path | None,
    max_seconds: float,
    concurrency_limit: int,
    max_queue_size: int,
) -> gr.Blocks:
    location = model or runtime.resolve_model(runtime.ZOO_MODELS[space])
    examples = _default_examples(space) if examples is None else examples
    with gr.Blocks(title=title) as demo:
        gr.Markdown(f"# {title}\n{blurb}")
        tab(location, examples, max_seconds)
    return demo.queue(default_concurrency_limit=concurrency_limit, max_size=max_queue_size)


def build_speech_lm_demo(
    model: str | None = None,
    *,
    examples: str | Path | None = None,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    concurrency_limit: int = DEFAULT_CONCURRENCY,
    max_queue_size: int = DEFAULT_QUEUE_SIZE,
) -> gr.Blocks:
    """The `speech-lm` Space: a spoken prompt -> its spoken continuation, its units and their picture.

    Args:
        model (`str`, *optional*): a folder or Hub id; by default `resolve_model("speech-lm-tiny")`.
        examples (`str | Path`, *optional*): a folder of example clips; by default the repository's
            `spaces/speech-lm/examples` (none when hf-slm is installed from a wheel).
        max_seconds (`float`, defaults to 30): longer clips are refused with a message.
        concurrency_limit (`int`, defaults to 2): requests an endpoint runs at once.
        max_queue_size (`int`, defaults to 32): requests that may wait in the queue.
    """
    return _single("speech-lm", speech_lm_tab, "hf-slm: pure speech LM", _FAMILIES[0], model, examples,
                   max_seconds, concurrency_limit, max_queue_size)  # fmt: skip


def build_speech_text_lm_demo(
    model: str | None = None,
    *,
    examples: str | Path | None = None,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    concurrency_limit: int = DEFAULT_CONCURRENCY,
    max_queue_size: int = DEFAULT_QUEUE_SIZE,
) -> gr.Blocks:
    """The `speech-text-lm` Space: ASR, TTS, speech continuation and text continuation (arguments as
    in `build_speech_lm_demo`; the model defaults to `resolve_model("speech-text-lm-tiny")`)."""
    return _single("speech-text-lm", speech_text_lm_tab, "hf-slm: speech+text LM", _FAMILIES[1], model,
                   examples, max_seconds, concurrency_limit, max_queue_size)  # fmt: skip


def build_speech_aware_lm_demo(
    model: str | None = None,
    *,
    examples: str | Path | None = None,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    concurrency_limit: int = DEFAULT_CONCURRENCY,
    max_queue_size: int = DEFAULT_QUEUE_SIZE,
) -> gr.Blocks:
    """The `speech-aware-lm` Space: a clip + an instruction -> a text answer (arguments as in
    `build_speech_lm_demo`; the model defaults to `resolve_model("speech-aware-lm-tiny")`)."""
    return _single("speech-aware-lm", speech_aware_lm_tab, "hf-slm: speech-aware text LM", _FAMILIES[2],
                   model, examples, max_seconds, concurrency_limit, max_queue_size)  # fmt: skip


def build_zoo_demo(
    models: Mapping[str, str] | None = None,
    *,
    examples: str | Path | None = None,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    concurrency_limit: int = DEFAULT_CONCURRENCY,
    max_queue_size: int = DEFAULT_QUEUE_SIZE,
) -> gr.Blocks:
    """The `slm-zoo` Space: the three Spaces as tabs of one app, with the same endpoints.

    Args:
        models (`Mapping[str, str]`, *optional*): Space name (`"speech-lm"`, `"speech-text-lm"`,
            `"speech-aware-lm"`) -> model location, for those not at `resolve_model`'s default.
        examples: a folder of example clips shared by the tabs (default: the repository's
            `spaces/slm-zoo/examples`); the others as in `build_speech_lm_demo`.
    """
    models = dict(models or {})
    unknown = set(models) - set(runtime.ZOO_MODELS)
    if unknown:
        raise ValueError(
            f"unknown Space(s) {sorted(unknown)} in models: the keys are {sorted(runtime.ZOO_MODELS)}"
        )
    locations = {s: models.get(s) or runtime.resolve_model(name) for s, name in runtime.ZOO_MODELS.items()}
    examples = _default_examples("slm-zoo") if examples is None else examples
    tabs = (
        ("speech-lm", "Speech LM", speech_lm_tab),
        ("speech-text-lm", "Speech+text LM", speech_text_lm_tab),
        ("speech-aware-lm", "Speech-aware LM", speech_aware_lm_tab),
    )
    with gr.Blocks(title="hf-slm zoo") as demo:
        gr.Markdown(
            "# hf-slm: a zoo of spoken language models\nThe three families of the survey *On The "
            "Landscape of Spoken Language Models*, each in a tab:\n" + "\n".join(f"- {f}" for f in _FAMILIES)
        )
        with gr.Tabs():
            for space, label, tab in tabs:
                with gr.Tab(label, elem_id=f"tab-{space}"):
                    tab(locations[space], examples, max_seconds)
    return demo.queue(default_concurrency_limit=concurrency_limit, max_size=max_queue_size)


SPACES: dict[str, Callable[..., gr.Blocks]] = {
    "speech-lm": build_speech_lm_demo,
    "speech-text-lm": build_speech_text_lm_demo,
    "speech-aware-lm": build_speech_aware_lm_demo,
    "slm-zoo": build_zoo_demo,
}


def build_demo(space: str, **kwargs: Any) -> gr.Blocks:
    """The demo of a Space by its name (a key of `SPACES`), with its builder's keyword arguments."""
    if space not in SPACES:
        raise ValueError(f"unknown Space {space!r}: one of {sorted(SPACES)}")
    return SPACES[space](**kwargs)


def launch(demo: gr.Blocks, examples: str | Path | None = None, **kwargs: Any) -> Any:
    """Launch a demo as a Space does. Host and port come from `GRADIO_SERVER_NAME` / `GRADIO_SERVER_PORT`
    (Gradio's own variables; 127.0.0.1:7860 by default) unless given; uploads are capped at 25 MB."""
    kwargs.setdefault("max_file_size", "25mb")
    if examples is not None:
        kwargs.setdefault("allowed_paths", [str(Path(examples).resolve())])
    return demo.launch(**kwargs)
