"""The CardioLive page in a real headless Chromium: it plays a pulse_av clip, streams it to
the service over the WebSocket and shows a heart rate close to the clip's true one."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (make test installs them with "
           "apt-get where it can); not installed here")

TOLERANCE_BPM = 8.0  # one update of a 6 s POS window on a VP8 clip decoded by the browser


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def service():
    import uvicorn

    from avfed.cardio.pulse_av import demo_clip
    from avfed.cardio.service import ServiceConfig, create_app

    clip = demo_clip(subject=0, duration_s=12.0, size=(320, 240), suffix=".webm")
    app = create_app(ServiceConfig(window_s=6.0, demo_files={"clip.webm": clip}))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "the service did not start"
    yield app, port, json.loads(clip.with_name(clip.name + ".json").read_text())
    server.should_exit = True
    thread.join(timeout=10)


def _driver(profile: str, *extra: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--mute-audio",
                 "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={profile}",
                 *extra):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)


def test_page_streams_a_clip_and_shows_its_heart_rate(service, tmp_path):
    app, port, truth = service
    driver = _driver(str(tmp_path / "profile"))
    try:
        driver.get(f"http://127.0.0.1:{port}/?src=/media/clip.webm")
        state: dict = {}
        deadline = time.time() + 45
        while time.time() < deadline:
            state = driver.execute_script("return window.cardio") or {}
            if state.get("lastBpm") is not None and state.get("lastTime", 0) >= 9:
                break
            time.sleep(0.25)
        assert state.get("lastBpm") is not None, f"no heart rate shown; page state {state}, " \
            f"status line: {driver.find_element('id', 'status').text}"
        shown = driver.find_element("id", "bpm").text
        assert shown == f"{state['lastBpm']:.0f}"
        assert len(app.state.sessions.sessions) == 1
        end = state["lastTime"]
        series = truth["bpm_1hz"]
        reference = sum(series[int(end) - 6:int(end)]) / 6
        print(f"page shows {state['lastBpm']:.1f} BPM at {end:.0f} s, truth {reference:.1f}", state)
        assert abs(state["lastBpm"] - reference) <= TOLERANCE_BPM, (state, reference)
    finally:
        driver.quit()
    deadline = time.time() + 10
    while app.state.sessions.sessions and time.time() < deadline:
        time.sleep(0.1)
    assert app.state.sessions.sessions == {}  # a closed page frees its session


def test_camera_and_microphone_stream_and_a_faceless_scene_shows_no_bpm(service, tmp_path):
    """Chromium's fake camera (a moving test pattern, no face) and fake microphone: the
    page streams both, the service answers, and the page says why it shows no BPM."""
    app, port, _ = service
    driver = _driver(str(tmp_path / "profile"), "--use-fake-device-for-media-stream",
                     "--use-fake-ui-for-media-stream")
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        driver.find_element("id", "camera").click()
        state: dict = {}
        deadline = time.time() + 30
        while time.time() < deadline:
            state = driver.execute_script("return window.cardio") or {}
            if state.get("lastStatus") == "no_face":
                break
            time.sleep(0.25)
        assert state.get("lastStatus") == "no_face", state
        assert state.get("lastBpm") is None and driver.find_element("id", "bpm").text == "--"
        assert "no face" in driver.find_element("id", "status").text
        assert "audio ok" in driver.find_element("id", "meta").text  # the microphone streamed
    finally:
        driver.quit()
