"""The zoo's Gradio Spaces: their repo files, and each app launched in-process and called through
`gradio_client` as a user of the Space's API would (every endpoint, bad input, a small load test)."""

from __future__ import annotations

import json
import os
import runpy
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

REPO = Path(__file__).resolve().parents[1]
SPACES_DIR = REPO / "spaces"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

# Space -> its endpoints (api_name without the slash)
ENDPOINTS = {
    "speech-lm": {"speech_lm_continuation"},
    "speech-text-lm": {
        "speech_text_lm_asr",
        "speech_text_lm_tts",
        "speech_text_lm_speech_continuation",
        "speech_text_lm_text_continuation",
    },
    "speech-aware-lm": {"speech_aware_lm_answer"},
}
ENDPOINTS["slm-zoo"] = set().union(*ENDPOINTS.values())
MODELS = {"speech-lm": "speech-lm-tiny", "speech-text-lm": "speech-text-lm-tiny", "speech-aware-lm": "speech-aware-lm-tiny"}  # fmt: skip
# what the bundled example clips say (espeak-ng)
SENTENCES = {
    "green-boat-us-male.wav": "my sister painted a green boat near the river",
    "old-farmer-scottish-female.wav": "the old farmer walked to the market today",
    "brave-girl-english-male.wav": "a brave girl carried the heavy box to school",
}
PRESENCE = "Is there any speech in this recording?"


# -- the Spaces' files (fast) ------------------------------------------------------------------------
def _front_matter(readme: Path) -> dict:
    text = readme.read_text()
    assert text.startswith("---\n"), f"{readme} has no YAML front matter"
    return yaml.safe_load(text.split("---\n")[1])


@pytest.mark.parametrize("space", sorted(ENDPOINTS))
def test_space_folder_is_a_hub_space(space):
    import gradio

    import hf_slm

    folder = SPACES_DIR / space
    meta = _front_matter(folder / "README.md")
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gradio.__version__
    assert (folder / meta["app_file"]).is_file() and meta["app_file"] == "app.py"
    assert {"title", "emoji", "colorFrom", "colorTo", "license", "short_description"} <= set(meta)
    assert len(meta["short_description"]) <= 60  # the Hub's limit
    wanted = {f"hf-slm/{MODELS[s]}" for s in ENDPOINTS if s != "slm-zoo" and ENDPOINTS[s] <= ENDPOINTS[space]}
    assert set(meta["models"]) == wanted
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'version = "{hf_slm.__version__}"' in pyproject
    requirements = [r.strip() for r in (folder / "requirements.txt").read_text().splitlines() if r.strip()]
    assert requirements == [f"hf-slm=={hf_slm.__version__}"]
    # a thin app: the library builds the demo
    app = (folder / "app.py").read_text()
    code = [ln for ln in app.splitlines() if ln.strip() and not ln.strip().startswith(("#", '"""'))]
    assert "from hf_slm.spaces import" in app and "import gradio" not in app and len(code) <= 15
    assert 'os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")' in app
    assert app.index('"HF_HUB_OFFLINE", "1"') < app.index("from hf_slm")
    clips = sorted((folder / "examples").glob("*.wav"))
    assert 2 <= len(clips) <= 4
    for clip in clips:
        info = sf.info(str(clip))
        assert info.samplerate == 16_000 and info.channels == 1 and 1.5 <= info.duration <= 3.5
        assert clip.stat().st_size < 100_000


def test_resolve_model_prefers_the_override_then_the_hub_cache_then_the_repo_zoo(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from hf_slm.spaces import resolve_model

    monkeypatch.delenv("HF_SLM_ZOO", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_model("speech-lm-tiny") == str(REPO / "zoo" / "speech-lm-tiny")
    assert resolve_model("no-such-model") == "hf-slm/no-such-model"  # left to the Hub
    # what `hf-slm zoo install` writes: the cache layout, with refs/main naming the snapshot
    repo = tmp_path / "hub" / "models--hf-slm--speech-lm-tiny"
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    assert resolve_model("speech-lm-tiny") == "hf-slm/speech-lm-tiny"
    (tmp_path / "myzoo" / "speech-lm-tiny").mkdir(parents=True)
    (tmp_path / "myzoo" / "speech-lm-tiny" / "config.json").write_text("{}")
    monkeypatch.setenv("HF_SLM_ZOO", str(tmp_path / "myzoo"))
    assert resolve_model("speech-lm-tiny") == str(tmp_path / "myzoo" / "speech-lm-tiny")
    with pytest.raises(FileNotFoundError, match="HF_SLM_ZOO"):
        resolve_model("speech-text-lm-tiny")


def test_bad_input_gets_a_message_saying_what_to_do(tmp_path):
    from hf_slm.spaces.runtime import SpaceError, generation_kwargs, read_clip, read_text

    with pytest.raises(SpaceError, match="No audio: record"):
        read_clip(None, 30)
    fake = tmp_path / "notes.wav"
    fake.write_text("these are my notes, not audio")
    with pytest.raises(
        SpaceError, match=r"^Could not decode audio file 'notes.wav': it is corrupt or not audio"
    ) as err:
        read_clip(str(fake), 30)
    assert str(tmp_path) not in str(err.value)  # the server's paths stay out of the message
    short = tmp_path / "click.wav"
    sf.write(short, np.zeros(800, np.float32), 16_000)
    with pytest.raises(SpaceError, match=r"only 0\.05 s long"):
        read_clip(str(short), 30)
    with pytest.raises(SpaceError, match="No text"):
        read_text("   ")
    with pytest.raises(SpaceError, match="over this Space's limit of 10"):
        read_text("x" * 11, max_chars=10)
    assert generation_kwargs(20, 0) == {
        "max_new_tokens": 20,
        "do_sample": False,
        "temperature": None,
        "top_k": None,
    }
    assert generation_kwargs(20, 0.7) == {"max_new_tokens": 20, "do_sample": True, "temperature": 0.7}


def test_the_queue_takes_its_limits():
    from hf_slm.spaces import build_speech_aware_lm_demo

    demo = build_speech_aware_lm_demo(concurrency_limit=3, max_queue_size=7)
    assert demo._queue.max_size == 7 and demo._queue.default_concurrency_limit == 3
    answer = [f for f in demo.fns.values() if f.api_name == "speech_aware_lm_answer"]
    assert len(answer) == 1 and answer[0].concurrency_limit == "default"  # i.e. the queue's


# -- the apps, launched and called through gradio_client ----------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Each Space's app.py run as a module (its `demo`, not launched), then launched on a free port."""
    launched = {}
    try:
        for space in ENDPOINTS:
            demo = runpy.run_path(str(SPACES_DIR / space / "app.py"))["demo"]
            port = _free_port()
            demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
            launched[space] = (demo, f"http://127.0.0.1:{port}")
        yield {space: url for space, (_, url) in launched.items()}
    finally:
        for demo, _ in launched.values():
            demo.close()


def _client(url: str, tmp_path: Path):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=str(tmp_path), analytics_enabled=False)


def _example(space: str, name: str) -> str:
    return str(SPACES_DIR / space / "examples" / name)


def _assert_speech(path: str, min_seconds: float = 0.2) -> None:
    wave, rate = sf.read(path, dtype="float32")
    assert rate == 16_000 and len(wave) / rate > min_seconds, f"{len(wave) / rate:.2f} s of audio"
    assert np.isfinite(wave).all() and np.abs(wave).max() > 1e-3  # sound, not silence


def _assert_plot(plot) -> None:
    assert plot["type"] == "matplotlib" and plot["plot"].startswith("data:image/")
    assert len(plot["plot"]) > 10_000  # an actual picture


def _shares_words(text: str, sentence: str, n: int) -> None:
    assert len(set(text.split()) & set(sentence.split())) >= n, f"{text!r} vs {sentence!r}"


def _check_speech_lm_continuation(client, space):
    from gradio_client import handle_file

    clip = "green-boat-us-male.wav"
    audio, units, plot = client.predict(
        handle_file(_example(space, clip)), 1.5, 150, 0.9, 0, api_name="/speech_lm_continuation"
    )
    _assert_speech(audio)
    prompt, continuation = units.splitlines()
    assert prompt.startswith("prompt (") and continuation.startswith("continuation (")
    assert "ɪ" in prompt  # units are shown by their phone labels
    _assert_plot(plot)


def _check_speech_text_lm_asr(client, space):
    from gradio_client import handle_file

    clip = "green-boat-us-male.wav"
    text, plot = client.predict(handle_file(_example(space, clip)), 64, 0, 0, api_name="/speech_text_lm_asr")
    _shares_words(text, SENTENCES[clip], 2)
    _assert_plot(plot)


def _check_speech_text_lm_tts(client, space):
    audio, units, plot = client.predict(
        "the little dog found a red ball in the garden", 200, 0, 0, api_name="/speech_text_lm_tts"
    )
    _assert_speech(audio, 0.5)
    assert units.startswith("speech (")
    _assert_plot(plot)


def _check_speech_text_lm_speech_continuation(client, space):
    from gradio_client import handle_file

    clip = _example(space, "green-boat-us-male.wav")
    audio, units, plot = client.predict(
        handle_file(clip), 1.5, 150, 0.9, 1, api_name="/speech_text_lm_speech_continuation"
    )
    _assert_speech(audio)
    assert "continuation (" in units
    _assert_plot(plot)


def _check_speech_text_lm_text_continuation(client, space):
    text = client.predict("the old farmer", 30, 0.8, 0, api_name="/speech_text_lm_text_continuation")
    assert text.startswith("the old farmer") and len(text.split()) > 3


def _check_speech_aware_lm_answer(client, space):
    from gradio_client import handle_file

    clip = "old-farmer-scottish-female.wav"
    answer, plot = client.predict(
        handle_file(_example(space, clip)), PRESENCE, 48, 0, 0, api_name="/speech_aware_lm_answer"
    )
    assert answer == "yes"
    _assert_plot(plot)
    hum = handle_file(_example(space, "mains-hum-no-speech.wav"))
    assert client.predict(hum, PRESENCE, 48, 0, 0, api_name="/speech_aware_lm_answer")[0] == "no"
    said, _ = client.predict(
        handle_file(_example(space, clip)),
        "Transcribe the audio.",
        48,
        0,
        0,
        api_name="/speech_aware_lm_answer",
    )
    _shares_words(said, SENTENCES[clip], 1)


CHECKS = {name[len("_check_") :]: fn for name, fn in globals().items() if name.startswith("_check_")}


@pytest.mark.slow
@pytest.mark.parametrize("space", sorted(ENDPOINTS))
def test_every_endpoint_answers_through_gradio_client(space, servers, tmp_path):
    client = _client(servers[space], tmp_path)
    endpoints = {
        name.lstrip("/")
        for name in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    }
    assert endpoints == ENDPOINTS[space]  # each has its api_name, and none is left untested
    for api_name in sorted(endpoints):
        CHECKS[api_name](client, space)


# the endpoints that take audio, with the arguments after the clip
AUDIO_ENDPOINTS = {
    "speech_lm_continuation": (1.5, 50, 0.9, 0),
    "speech_text_lm_asr": (16, 0, 0),
    "speech_text_lm_speech_continuation": (1.5, 50, 0.9, 0),
    "speech_aware_lm_answer": (PRESENCE, 16, 0, 0),
}


@pytest.mark.slow
def test_bad_input_through_the_client_gets_the_clear_message(servers, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client = _client(servers["slm-zoo"], tmp_path)
    long_clip = tmp_path / "lecture.wav"
    t = np.arange(40 * 16_000) / 16_000
    sf.write(long_clip, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16_000)
    fake = tmp_path / "shopping-list.wav"
    fake.write_text("eggs, milk, bread\n")
    cases = [
        (
            None,
            r"No audio: record a clip with the microphone, upload an audio file, or click one of the examples",
        ),
        (
            handle_file(str(long_clip)),
            r"'lecture.wav' is 40.0 s long, over this Space's limit of 30 s: trim it",
        ),
        (
            handle_file(str(fake)),
            r"Could not decode audio file 'shopping-list.wav': it is corrupt or not audio",
        ),
    ]
    for api_name, rest in AUDIO_ENDPOINTS.items():
        for clip, message in cases:
            with pytest.raises(AppError, match=message):
                client.predict(clip, *rest, api_name=f"/{api_name}")
    for api_name in ("speech_text_lm_tts", "speech_text_lm_text_continuation"):
        with pytest.raises(AppError, match="No text: type a sentence"):
            client.predict("  ", 20, 0, 0, api_name=f"/{api_name}")
    with pytest.raises(AppError, match="No text"):  # an empty instruction
        client.predict(handle_file(_example("slm-zoo", "green-boat-us-male.wav")), "", 16, 0, 0,
                       api_name="/speech_aware_lm_answer")  # fmt: skip


@pytest.mark.slow
def test_the_zoo_page_has_the_elem_ids_of_its_buttons_and_outputs(servers):
    import httpx

    config = httpx.get(servers["slm-zoo"] + "/config", timeout=30).json()
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    for prefix in (
        "speech-lm",
        "speech-text-lm-asr",
        "speech-text-lm-tts",
        "speech-text-lm-sc",
        "speech-aware-lm",
    ):
        assert f"{prefix}-run" in ids
    assert {"tab-speech-lm", "tab-speech-text-lm", "tab-speech-aware-lm", "speech-lm-audio-in",
            "speech-lm-audio-out", "speech-lm-units", "speech-lm-plot", "speech-lm-examples",
            "speech-text-lm-tts-audio-out", "speech-aware-lm-answer"} <= ids  # fmt: skip


@pytest.mark.slow
def test_load_twenty_concurrent_calls_are_all_answered(servers, tmp_path):
    from gradio_client import handle_file

    client = _client(servers["speech-aware-lm"], tmp_path)
    clip = _example("speech-aware-lm", "brave-girl-english-male.wav")
    latencies: list[float] = []
    lock = threading.Lock()

    def call(i: int) -> str:
        start = time.perf_counter()
        answer = client.predict(handle_file(clip), PRESENCE, 8, 0, 0, api_name="/speech_aware_lm_answer")[0]
        with lock:
            latencies.append(time.perf_counter() - start)
        return answer

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(call, range(20)))
    wall = time.perf_counter() - start
    assert answers == ["yes"] * 20 and len(latencies) == 20
    p50, p95 = (float(np.percentile(latencies, q)) for q in (50, 95))
    result = {
        "space": "speech-aware-lm",
        "endpoint": "/speech_aware_lm_answer",
        "calls": 20,
        "client_threads": 20,
        "concurrency_limit": 2,
        "p50_s": round(p50, 3),
        "p95_s": round(p95, 3),
        "max_s": round(max(latencies), 3),
        "wall_s": round(wall, 3),
        "cpu_count": os.cpu_count(),
        "latencies_s": [round(x, 3) for x in sorted(latencies)],
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "load_test.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nload test: 20 concurrent calls, p50 {p50:.2f} s, p95 {p95:.2f} s, wall {wall:.2f} s")


@pytest.mark.slow
def test_a_zoo_installed_in_the_hf_cache_is_used_by_hub_id(tmp_path):
    """After `hf-slm zoo install`, the Spaces load `hf-slm/<name>` from the cache (a fresh process, whose
    huggingface_hub reads HF_HOME at import)."""
    import subprocess
    import sys

    from hf_slm.zoo import install_zoo

    install_zoo(["speech-aware-lm-tiny"], root=REPO / "zoo", cache_dir=tmp_path / "hub")
    clip = _example("speech-aware-lm", "old-farmer-scottish-female.wav")
    code = (
        "from hf_slm.spaces.runtime import read_clip, resolve_model, load_model, answer_instruction\n"
        "where = resolve_model('speech-aware-lm-tiny')\n"
        f"wave = read_clip({clip!r}, 30)\n"
        f"print(where, answer_instruction(load_model(where), wave, {PRESENCE!r}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_SLM_ZOO", "HF_HUB_CACHE")}
    env.update(HF_HOME=str(tmp_path), HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["hf-slm/speech-aware-lm-tiny", "yes"]
