"""``cospeech serve`` in a real browser: Debian's Chromium, headless, driven by Playwright.

The page gets the example photo and 16 s of the example speech (the 8.2 s clip twice), the
start button is pressed, and the ``#live`` video must play past 2 s while the server still
generates (job status ``running``): the person speaks before the video is finished. The
shipped demo teacher runs with 6 steps and no guidance, slow enough on CPU that the job is
still running when playback reaches 2 s, fast enough for a test. Closing the page then
cancels the job. A screenshot goes to the test's temporary folder, or to
docs/images/serve.png when ``COSPEECH_UPDATE_DOCS_IMAGES=1`` (so a test run leaves the
checkout as it was).

Chromium is never downloaded: the test uses /usr/bin/chromium (``apt-get install
chromium``, done by scripts/setup-system.sh as root) and skips without it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile

from serve_fixture import real_server

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DOCS_SCREENSHOT = ROOT / "docs" / "images" / "serve.png"
PLAY_PAST_S = 2.0
WAIT_S = 300.0  # the longest wait for playback on a loaded 2-core CPU
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium "
    "(apt-get install chromium; scripts/setup-system.sh installs it as root)"
)  # fmt: skip


def long_speech(path: Path) -> Path:
    samples, rate = soundfile.read(EXAMPLES / "speech.wav", dtype="float32")
    soundfile.write(path, np.concatenate([samples, samples]), rate)
    return path


def test_the_page_plays_the_video_while_it_is_generated(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    speech = long_speech(tmp_path / "speech.wav")
    flags = ("--workers", "1", "--model", "teacher", "--steps", "6", "--guidance", "1")
    with (
        real_server(*flags) as server,
        playwright.sync_playwright() as driver,
        httpx.Client(base_url=server.address, timeout=30) as api,
    ):
        browser = driver.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 800, "height": 820})
            page.goto(server.address)
            page.set_input_files('input[name="image"]', str(EXAMPLES / "reference.png"))
            page.set_input_files('input[name="audio"]', str(speech))
            page.click("#start")
            page.wait_for_function("document.getElementById('status').dataset.job")
            job_id = page.eval_on_selector("#status", "e => e.dataset.job")
            deadline = time.monotonic() + WAIT_S
            played = 0.0
            while played <= PLAY_PAST_S and time.monotonic() < deadline:
                time.sleep(0.2)
                played = page.eval_on_selector("#live", "v => v.currentTime")
            status = api.get(f"/api/jobs/{job_id}").json()
            update_docs = os.environ.get("COSPEECH_UPDATE_DOCS_IMAGES") == "1"
            screenshot = DOCS_SCREENSHOT if update_docs else tmp_path / "serve.png"
            page.screenshot(path=str(screenshot))
            assert played > PLAY_PAST_S, f"played {played:.2f} s in {WAIT_S:.0f} s"
            assert status["status"] == "running", status
            assert 0 < status["progress"] < 1
            status_line = page.inner_text("#status")
            assert status_line.startswith("generating:"), status_line
            video = page.eval_on_selector(
                "#live", "v => [v.videoWidth, v.videoHeight, v.readyState, v.error]"
            )
            # the photo layer's output: twice the 128x128 model frames
            assert video[:2] == [256, 256] and video[2] >= 2 and video[3] is None
        finally:
            browser.close()
        deadline = time.monotonic() + 60  # the page is gone: its job is cancelled
        while api.get(f"/api/jobs/{job_id}").json()["status"] == "running":
            assert time.monotonic() < deadline, "closing the page did not cancel the job"
            time.sleep(0.2)
        assert api.get(f"/api/jobs/{job_id}").json()["error"].startswith("cancelled")
