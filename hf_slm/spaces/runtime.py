"""What the Spaces run, without any Gradio: where each zoo model loads from, a per-process model
cache, clear checks of the user's input, and one function per task that returns plain data.

`hf_slm.spaces.apps` puts these behind Gradio components; tests and notebooks can call them directly.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hf_slm.audio import DEFAULT_SAMPLING_RATE, AudioError, load_audio
from hf_slm.spaces.plots import UnitTrack

__all__ = [
    "MIN_SECONDS",
    "ZOO_MODELS",
    "LoadedModel",
    "SpaceError",
    "SpeechOutput",
    "answer_instruction",
    "continue_speech",
    "continue_text",
    "generation_kwargs",
    "load_model",
    "read_clip",
    "read_text",
    "repo_root",
    "resolve_model",
    "speak_text",
    "transcribe",
]

# Space name -> the zoo model it shows
ZOO_MODELS = {
    "speech-lm": "speech-lm-tiny",
    "speech-text-lm": "speech-text-lm-tiny",
    "speech-aware-lm": "speech-aware-lm-tiny",
}
MIN_SECONDS = 0.2  # shorter clips give the unit tokenizer next to nothing


class SpaceError(ValueError):
    """Input (or an empty result) that a Space user can act on; the message says what to do."""


# -- where the models are ----------------------------------------------------------------------------
def repo_root() -> Path | None:
    """The hf-slm repository this package runs from (a clone, installed with `pip install -e`), or
    None for an installed wheel (which has no `zoo/` and no `spaces/`)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "zoo").is_dir() and (root / "pyproject.toml").is_file() else None


def _in_hf_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def resolve_model(name: str) -> str:
    """Where the zoo model `name` (e.g. `"speech-lm-tiny"`) loads from, tried in this order:

    1. `$HF_SLM_ZOO/<name>` when the `HF_SLM_ZOO` environment variable is set (a folder of zoo models);
    2. the Hub id `hf-slm/<name>` when it is in the local HF cache (`hf-slm zoo install` puts it there);
    3. the repository's own `zoo/<name>` folder (a clone of hf-slm; `hf_slm.zoo.zoo_dir`);
    4. the Hub id `hf-slm/<name>` (downloaded where the Hub is reachable).
    """
    from hf_slm.zoo import DEFAULT_ORG, zoo_dir

    folder = zoo_dir() / name
    if os.environ.get("HF_SLM_ZOO"):
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"HF_SLM_ZOO={os.environ['HF_SLM_ZOO']!r} has no {name}/config.json: point it at a folder "
                "that holds the zoo's model folders (like the repository's zoo/), or unset it"
            )
        return str(folder.resolve())
    repo_id = f"{DEFAULT_ORG}/{name}"
    if _in_hf_cache(repo_id):
        return repo_id
    if (folder / "config.json").is_file():
        return str(folder.resolve())
    return repo_id


# -- loading, once per process -----------------------------------------------------------------------
@dataclass
class LoadedModel:
    """A model (eval mode, CPU) and its processor. `lock` serialises generation on the model: seeded
    sampling uses torch's global generator, and the speech-aware LM switches its LoRA per call."""

    location: str
    model: Any
    processor: Any
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


_MODELS: dict[str, LoadedModel] = {}
_LOADING = threading.Lock()


def load_model(location: str) -> LoadedModel:
    """The model and processor at `location` (a folder or a Hub id), loaded on the first call only."""
    with _LOADING:
        if location not in _MODELS:
            from transformers import AutoModel, AutoProcessor

            import hf_slm  # noqa: F401  (registers the Auto classes)

            # a Hub id found in the local cache loads from it without asking the network
            local = Path(location).is_dir() or _in_hf_cache(location)
            model = AutoModel.from_pretrained(location, local_files_only=local).eval()
            processor = AutoProcessor.from_pretrained(location, local_files_only=local)
            _MODELS[location] = LoadedModel(location, model, processor)
        return _MODELS[location]


# -- the user's input --------------------------------------------------------------------------------
def read_clip(path: str | None, max_seconds: float, sampling_rate: int = DEFAULT_SAMPLING_RATE) -> np.ndarray:
    """The clip at `path` (what `gr.Audio(type="filepath")` gives) as mono float32 at `sampling_rate`.

    Raises:
        SpaceError: no clip, a file that is not audio (or corrupt, or empty), or a clip shorter than
            `MIN_SECONDS` or longer than `max_seconds`; the message names the file by its name only.
    """
    if path is None or str(path).strip() == "":
        raise SpaceError(
            "No audio: record a clip with the microphone, upload an audio file, or click one of the examples."
        )
    name = Path(path).name
    try:
        wave = load_audio(path, target_sampling_rate=sampling_rate)
    except AudioError as err:
        message = str(err).replace(str(path), name)  # not the server's temporary path
        raise SpaceError(message[:1].upper() + message[1:]) from None
    seconds = len(wave) / sampling_rate
    if seconds > max_seconds:
        raise SpaceError(
            f"The clip {name!r} is {seconds:.1f} s long, over this Space's limit of {max_seconds:g} s: trim it "
            f"to at most {max_seconds:g} s (or record a shorter one) and try again."
        )
    if seconds < MIN_SECONDS:
        raise SpaceError(
            f"The clip {name!r} is only {seconds:.2f} s long: record or upload at least {MIN_SECONDS:g} s of speech."
        )
    return wave


def read_text(text: str | None, max_chars: int = 300) -> str:
    """The user's text, stripped; refuses empty text and text over `max_chars` characters."""
    text = (text or "").strip()
    if not text:
        raise SpaceError(
            "No text: type a sentence, e.g. 'the little dog found a red ball' (the zoo models know a "
            "1,000-word English vocabulary)."
        )
    if len(text) > max_chars:
        raise SpaceError(
            f"The text is {len(text)} characters long, over this Space's limit of {max_chars}: shorten it."
        )
    return text


def generation_kwargs(max_new_tokens: float, temperature: float | None) -> dict[str, Any]:
    """`generate` settings from the UI's controls: temperature 0 (or None) is greedy decoding."""
    n = int(max_new_tokens)
    if n < 1:
        raise SpaceError(f"max new tokens must be at least 1, got {max_new_tokens}.")
    if temperature is None or float(temperature) <= 0:
        # unset the sampling settings a saved generation_config may hold (transformers warns of them)
        return {"max_new_tokens": n, "do_sample": False, "temperature": None, "top_k": None}
    return {"max_new_tokens": n, "do_sample": True, "temperature": float(temperature)}


def _generate(loaded: LoadedModel, seed: float | None, settings: dict[str, Any], **inputs: Any) -> Any:
    with loaded.lock:
        if settings.get("do_sample"):
            torch.manual_seed(int(seed or 0))
        return loaded.model.generate(**inputs, **settings)


# -- the tasks ---------------------------------------------------------------------------------------
@dataclass
class SpeechOutput:
    """Generated speech and what to draw: `plot_wave` is the prompt (if any) then `audio`, with one
    `UnitTrack` per part."""

    audio: np.ndarray
    sampling_rate: int
    tracks: list[UnitTrack]
    plot_wave: np.ndarray


def _track(model: Any, name: str, units: Any, durations: Any, start: float = 0.0) -> UnitTrack:
    """`durations` None: units of a tokenizer that does not de-duplicate, one frame each."""
    tok = model.config.unit_tokenizer_config
    units = [int(u) for u in units]
    return UnitTrack(
        name=name,
        units=units,
        durations=[1] * len(units) if durations is None else [int(d) for d in durations],
        frame_rate=float(tok.frame_rate),
        start=start,
        labels=getattr(tok, "unit_labels", None),
    )


def _speech_output(
    model: Any, prompt: np.ndarray | None, prompt_track: UnitTrack | None, units: Any, audio: Any
) -> SpeechOutput:
    units = torch.as_tensor(units, dtype=torch.long).cpu()
    if units.numel() == 0:
        raise SpaceError(
            "The model ended the utterance right after the prompt (no new speech units): try a shorter "
            "prompt, or sample (temperature above 0) with another seed."
            if prompt is not None
            else "The model generated no speech for this text: try a longer sentence, or sample "
            "(temperature above 0) with another seed."
        )
    audio = np.asarray(audio, dtype=np.float32)
    start = 0.0 if prompt is None else len(prompt) / model.config.sampling_rate
    name = "speech" if prompt is None else "continuation"
    track = _track(model, name, units, model.mean_durations(units), start)
    tracks = [track] if prompt_track is None else [prompt_track, track]
    plot_wave = audio if prompt is None else np.concatenate([prompt, audio])
    return SpeechOutput(audio, model.config.sampling_rate, tracks, plot_wave)


def _prompt_part(wave: np.ndarray, prompt_seconds: float | None, sampling_rate: int) -> np.ndarray:
    if not prompt_seconds or prompt_seconds <= 0:
        return wave
    if prompt_seconds < MIN_SECONDS:
        raise SpaceError(
            f"A prompt of {prompt_seconds:g} s is too short: take at least {MIN_SECONDS:g} s (or 0 for the whole clip)."
        )
    return wave[: int(prompt_seconds * sampling_rate)]


def continue_speech(
    loaded: LoadedModel,
    wave: np.ndarray,
    *,
    prompt_seconds: float | None = None,
    max_new_tokens: int = 150,
    temperature: float | None = 0.9,
    seed: int | None = 0,
) -> SpeechOutput:
    """Continue a spoken prompt (16 kHz mono) with a pure speech LM or a speech+text LM.

    Args:
        prompt_seconds: keep only the clip's first seconds as the prompt (0 or None: all of it).
    """
    from hf_slm.models.speech_text_lm import SpeechTextLMForCausalLM

    model, proc = loaded.model, loaded.processor
    prompt = _prompt_part(wave, prompt_seconds, proc.sampling_rate)
    settings = generation_kwargs(max_new_tokens, temperature)
    if isinstance(model, SpeechTextLMForCausalLM):
        batch = proc(audio=prompt, sampling_rate=proc.sampling_rate, task="speech_continuation")
        spliced = model.splice_audio(
            batch["input_ids"], batch["attention_mask"], batch["input_values"], batch["audio_attention_mask"]
        )
        ids, mask = spliced["input_ids"], spliced["attention_mask"]
        out = _generate(
            loaded, seed, settings, input_ids=ids, attention_mask=mask, output_modality="speech",
            return_audio=True,
        )  # fmt: skip
        units, audio = out.units[0], out.audio[0].numpy()
    else:
        batch = proc(audio=prompt, sampling_rate=proc.sampling_rate)
        spliced = model.encode_audio(
            batch["input_values"], batch["attention_mask"], add_eos=False, padding_side="left"
        )
        ids, mask = spliced["input_ids"], spliced["attention_mask"]
        sequences = _generate(loaded, seed, settings, input_ids=ids, attention_mask=mask)
        units = model.ids_to_units(sequences[:, ids.shape[1] :])[0]
        audio = model.decode_speech([units])[0]  # empty for no units
    durations = spliced.get("durations")
    prompt_track = _track(
        model, "prompt", model.ids_to_units(ids)[0], None if durations is None else durations[0]
    )
    return _speech_output(model, prompt, prompt_track, units, audio)


def transcribe(
    loaded: LoadedModel,
    wave: np.ndarray,
    *,
    max_new_tokens: int = 64,
    temperature: float | None = None,
    seed: int | None = 0,
) -> tuple[str, UnitTrack]:
    """The speech+text LM's transcript of a clip (its `asr` template), and the clip's units."""
    model, proc = loaded.model, loaded.processor
    batch = proc(audio=wave, sampling_rate=proc.sampling_rate, task="asr")
    spliced = model.splice_audio(
        batch["input_ids"], batch["attention_mask"], batch["input_values"], batch["audio_attention_mask"]
    )
    ids = spliced["input_ids"]
    sequences = _generate(
        loaded, seed, generation_kwargs(max_new_tokens, temperature), input_ids=ids,
        attention_mask=spliced["attention_mask"], output_modality="text",
    )  # fmt: skip
    text = proc.batch_decode(sequences[:, ids.shape[1] :], skip_special_tokens=True)[0].strip()
    return text, _track(model, "input", model.ids_to_units(ids)[0], spliced["durations"][0])


def speak_text(
    loaded: LoadedModel,
    text: str,
    *,
    max_new_tokens: int = 200,
    temperature: float | None = None,
    seed: int | None = 0,
) -> SpeechOutput:
    """The speech+text LM reading `text` aloud (its `tts` template), voiced by its vocoder."""
    model, proc = loaded.model, loaded.processor
    out = _generate(
        loaded, seed, generation_kwargs(max_new_tokens, temperature),
        **proc(text=text, task="tts"), output_modality="speech", return_audio=True,
    )  # fmt: skip
    return _speech_output(model, None, None, out.units[0], out.audio[0].numpy())


def continue_text(
    loaded: LoadedModel,
    text: str,
    *,
    max_new_tokens: int = 40,
    temperature: float | None = 0.8,
    seed: int | None = 0,
) -> str:
    """The speech+text LM continuing `text` in text (its `text_continuation` template): prompt + continuation."""
    proc = loaded.processor
    sequences = _generate(
        loaded, seed, generation_kwargs(max_new_tokens, temperature),
        **proc(text=text, task="text_continuation"), output_modality="text", return_audio=False,
    )  # fmt: skip
    return proc.batch_decode(sequences, skip_special_tokens=True)[0].strip()


def answer_instruction(
    loaded: LoadedModel,
    wave: np.ndarray,
    instruction: str,
    *,
    max_new_tokens: int = 48,
    temperature: float | None = None,
    seed: int | None = 0,
) -> str:
    """The speech-aware LM's text answer to `instruction` about a clip (through its chat template)."""
    from hf_slm.evaluation.speech_aware import _chat_inputs

    proc = loaded.processor
    inputs = _chat_inputs(proc, [wave], [instruction])
    sequences = _generate(loaded, seed, generation_kwargs(max_new_tokens, temperature), **inputs)
    return proc.batch_decode(
        sequences[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True, answer_only=True
    )[0].strip()
