"""The zoo Space in a real browser: headless Chromium (the system's, driven by Playwright) loads the page
that `make demo` serves, runs an example clip through the speech LM tab, and finds the audio it made.
A screenshot of the page is kept in tests/artifacts/."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf

# pytest puts tests/ on sys.path (no __init__.py there)
from test_training import _free_port

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def zoo_space():
    """`spaces/slm-zoo/app.py` served on 127.0.0.1, as `make demo` starts it (on a free port)."""
    port = _free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}  # fmt: skip
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = (ARTIFACTS / "slm_zoo_server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "spaces/slm-zoo/app.py"], cwd=REPO, env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError((ARTIFACTS / "slm_zoo_server.log").read_text()[-3000:]) from None
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("the zoo Space did not answer within 120 s")
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs the system chromium (make setup installs it)")
def test_the_zoo_space_runs_an_example_in_chromium(zoo_space):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.goto(zoo_space, wait_until="networkidle")
        expect(page.get_by_text("speech LM", exact=False).first).to_be_visible(timeout=30_000)
        # the first example clip of the speech LM tab fills the input; then run it
        examples = page.locator("#speech-lm-examples")
        expect(examples).to_be_visible(timeout=30_000)
        examples.locator(".gallery-item").first.click()
        expect(page.locator("#speech-lm-audio-in a[data-testid='download-link']")).to_be_attached(
            timeout=30_000
        )
        page.locator("#speech-lm-run").click()
        # the generated audio: the player's file link, fetched and decoded as the browser would play it
        link = page.locator("#speech-lm-audio-out a[data-testid='download-link']")
        expect(link).to_be_attached(timeout=120_000)
        response = page.request.get(link.get_attribute("href"))
        assert response.ok
        wave, rate = sf.read(io.BytesIO(response.body()))
        assert len(wave) / rate > 0.2 and abs(wave).max() > 0.01  # real sound, not silence
        units = page.locator("#speech-lm-units textarea").input_value()
        assert "continuation" in units  # the units the model generated are shown too
        page.screenshot(path=str(ARTIFACTS / "slm_zoo_speech_lm.png"), full_page=True)
        browser.close()
    assert (ARTIFACTS / "slm_zoo_speech_lm.png").stat().st_size > 20_000
