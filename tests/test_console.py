"""The web console in a real browser (issue #20): Chromium (Debian's, driven by Playwright) with a
fake microphone playing real speech; and the Hugging Face client speaking /v1/classify.

Screenshots of each screen go to the test's folder, and to $SPEAKERID_SCREENSHOTS when set (the
README's come from there)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speakerid import SpeakerID
from speakerid.apps.keys import create_key

from conftest import CHROMIUM, clips_of, needs_browser, needs_data, serving

pytestmark = [needs_data]

try:
    from playwright.sync_api import expect
except ImportError:  # the browser tests skip below; the classify test needs no browser
    expect = None


def microphone_file(folder: Path, speaker: str) -> Path:
    """What the fake microphone plays: a speaker's enrollment clips, as a 48 kHz WAV (it loops)."""
    from speakerid.voice.audio import resample

    speech = np.concatenate([sf.read(c, dtype="float32")[0] for c in clips_of(speaker, 1)])
    path = folder / f"{speaker}-mic.wav"
    sf.write(path, resample(speech, 16000, 48000), 48000, subtype="PCM_16")
    return path


@pytest.fixture
def browser_for(tmp_path):
    from playwright.sync_api import sync_playwright

    opened = []
    with sync_playwright() as p:

        def launch(mic: Path):
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--autoplay-policy=no-user-gesture-required",
                    "--use-fake-ui-for-media-stream",
                    "--use-fake-device-for-media-stream",
                    f"--use-file-for-fake-audio-capture={mic}",
                ],
            )
            opened.append(browser)
            context = browser.new_context(permissions=["microphone"])
            page = context.new_page()
            page.on("dialog", lambda dialog: dialog.accept())
            return page

        yield launch
        for b in opened:
            b.close()


def shot(page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    if os.environ.get("SPEAKERID_SCREENSHOTS"):
        folder = Path(os.environ["SPEAKERID_SCREENSHOTS"])
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def record(page, start: str, stop: str, seconds: float) -> None:
    page.click(start)
    page.wait_for_timeout(int(seconds * 1000))
    page.click(stop)


@needs_browser
def test_admin_enrolls_by_voice_identifies_audits_and_removes(tmp_path, browser_for, model_dir):
    home = tmp_path / "home"
    with SpeakerID.open(home) as sid:
        for other in ("id90001", "id90002"):
            sid.enroll(other, clips_of(other, 1))
        key, _ = create_key(sid.store, "admin")
    page = browser_for(microphone_file(tmp_path, "id90005"))
    with serving(home) as (base, _):
        page.goto(base + "/console")
        shot(page, tmp_path, "login")
        assert not page.is_visible("#nav") and not page.is_visible("#logout")  # nothing to use before signing in
        page.fill("#key", key)
        page.click("#login-form button")
        page.wait_for_selector("#speaker-rows tr")
        assert page.is_visible("#nav") and not page.is_visible("#login")
        assert page.locator("#speaker-rows tr").count() == 2
        shot(page, tmp_path, "speakers")

        page.click("nav button[data-screen=enroll]")
        page.fill("#enroll-name", "erin")
        # two clips "recorded" from the fake microphone (real speech, real time); Chromium replays its
        # file from the start for each recording, so equal lengths could give byte-identical clips
        for seconds in (7.5, 8.5):
            page.click("#record-start")
            page.wait_for_timeout(int(seconds * 1000))
            # while they speak, the live stream ("enroll" mode, no name: nothing written) fills the bar
            live = page.inner_text("#enroll-live")
            assert re.match(r"this clip: \d+\.\d s of speech", live), live
            assert float(live.split()[2]) >= 3 and page.eval_on_selector("#enroll-progress", "e => e.value") > 0.1
            page.click("#record-stop")
        expect(page.locator("#enroll-clips li")).to_have_count(2, timeout=60_000)
        expect(page.locator("#speech-total")).not_to_have_text("0.0", timeout=60_000)
        assert float(page.inner_text("#speech-total")) >= 10, page.inner_text("#enroll-clips")
        assert page.locator("#enroll-clips li.problem").count() == 0, page.inner_text("#enroll-clips")
        shot(page, tmp_path, "enroll")
        page.click("#enroll-submit")
        expect(page.locator("#enroll-result")).to_contain_text("Enrolled erin", timeout=120_000)

        page.click("nav button[data-screen=access]")
        page.fill("#grant-principal", "erin")
        page.fill("#grant-resource", "front-door")
        page.click("#grant-form button")
        expect(page.locator("#resource-rows")).to_contain_text("front-door")

        page.click("nav button[data-screen=identify]")
        page.set_input_files("#probe-file", str(clips_of("id90005", 3)[0]))  # another clip of the same person
        page.click("#probe-submit")
        expect(page.locator("#probe-answer")).to_have_text(re.compile("^erin"), timeout=60_000)
        page.fill("#probe-resource", "front-door")
        page.click("#probe-submit")
        expect(page.locator("#probe-answer")).to_have_text(
            re.compile(r"^ALLOW erin \(score 0\.\d{3}\): "), timeout=60_000
        )  # who opened the door, and how surely
        assert "(front-door's)" in page.inner_text("#probe-result")
        assert "Identify and verify: threshold" in page.inner_text("#threshold-basis")
        shot(page, tmp_path, "identify")

        page.click("nav button[data-screen=access]")
        page.select_option("#audit-decision", "allow")
        page.click("#audit-form button[type=submit]")
        expect(page.locator("#audit-rows")).to_contain_text("front-door")
        row = page.inner_text("#audit-rows tr")
        assert "allow" in row and "erin" in row
        shot(page, tmp_path, "access")

        page.click("nav button[data-screen=speakers]")
        page.wait_for_selector("#speaker-rows tr >> text=erin")
        page.locator("#speaker-rows tr", has_text="erin").locator("button.remove").click()
        expect(page.locator("#speaker-rows")).not_to_contain_text("erin", timeout=60_000)
    with SpeakerID.open(home) as sid:
        assert "erin" not in sid.store.voiceprints and len(sid.speakers()) == 2


@needs_browser
def test_a_client_key_is_a_kiosk(tmp_path, browser_for, model_dir):
    home = tmp_path / "home"
    with SpeakerID.open(home) as sid:
        sid.enroll("alice", clips_of("id90001", 1))
        key, _ = create_key(sid.store, "client")
    page = browser_for(microphone_file(tmp_path, "id90001"))
    with serving(home) as (base, _):
        page.goto(base + "/console")
        page.fill("#key", key)
        page.click("#login-form button")
        page.wait_for_selector("#identify:not([hidden])")
        for screen in ("speakers", "enroll", "access", "evaluation"):
            assert not page.is_visible(f"nav button[data-screen={screen}]")
        status = page.evaluate(
            """async (key) => (await fetch('/v1/speakers', {headers: {Authorization: 'Bearer ' + key}})).status""", key
        )
        assert status == 403
        record(page, "#probe-start", "#probe-stop", 4)  # the page really hears the microphone: it names alice
        page.click("#probe-submit")
        expect(page.locator("#probe-answer")).to_have_text(re.compile("^alice"), timeout=60_000)
        shot(page, tmp_path, "kiosk")
        response = page.request.get(base + "/console/")
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
        html = page.content()
        assert "<script>" not in html.replace('<script src="/console/console.js" defer></script>', "")


@needs_browser
def test_the_evaluation_screen_is_a_table_beside_the_plot(tmp_path, browser_for, cli_env, model_dir):
    """The last ``speakerid eval voxceleb`` run, as people read it: a row per figure, the DET curve below."""
    from conftest import DATA, run_cli

    done = run_cli(
        [
            "eval",
            "voxceleb",
            "--root",
            str(DATA),
            "--open-set",
            "0.6",
            "--plot",
            str(tmp_path / "det.png"),
            "--cache",
            str(tmp_path / "cache"),
        ],
        cli_env,
    )
    assert done.returncode == 0, done.stderr
    home = tmp_path / "home"
    with SpeakerID.open(home) as sid:
        key, _ = create_key(sid.store, "admin")
    page = browser_for(microphone_file(tmp_path, "id90001"))
    with serving(home) as (base, _):
        page.goto(base + "/console")
        page.fill("#key", key)
        page.click("#login-form button")
        page.click("nav button[data-screen=evaluation]")
        table = page.locator("#eval-figures table")
        expect(table).to_contain_text("veri_test.txt (1000 trials)", timeout=30_000)
        rows = {r.locator("th").inner_text(): r.locator("td").inner_text() for r in table.locator("tr").all()}
        assert rows["top-1 / top-5 accuracy"] == "100.00 % / 100.00 %", rows
        assert re.match(r"EER \d+\.\d\d %, minDCF\(0\.01\) 0\.\d{4}", rows["veri_test.txt (1000 trials)"]), rows
        assert any(name.startswith("open set: 10 enrolled, 6 held out") for name in rows), rows
        expect(page.locator("#eval-plot")).to_be_visible()
        assert page.evaluate("document.getElementById('eval-plot').naturalWidth") > 100  # the PNG really loaded
        shot(page, tmp_path, "evaluation")


def test_hugging_face_client_classifies(tmp_path, model_dir, monkeypatch):
    """The client as an application uses it; the tests' HF_HUB_OFFLINE (which keeps model loading
    off the network) would also stop it from reaching 127.0.0.1, so it is lifted for this client."""
    from huggingface_hub import InferenceClient, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    home = tmp_path / "home"
    with SpeakerID.open(home) as sid:
        for speaker in ("id90001", "id90002", "id90003"):
            sid.enroll(speaker, clips_of(speaker, 1))
        key, _ = create_key(sid.store, "client")
        admin_key, _ = create_key(sid.store, "admin")
    with serving(home) as (base, _):
        admin = InferenceClient(model=base + "/v1/classify", token=admin_key)
        known = admin.audio_classification(clips_of("id90002", 3)[0].read_bytes())
        assert known[0].label == "id90002" and {e.label for e in known} == {"id90001", "id90002", "id90003", "unknown"}
        assert all(0 <= e.score <= 1 for e in known) and abs(sum(e.score for e in known) - 1) < 1e-3
        client = InferenceClient(model=base + "/v1/classify", token=key)  # a client key: the answer, not the roster
        told = client.audio_classification(clips_of("id90002", 3)[0].read_bytes())
        assert [e.label for e in told] == ["id90002", "unknown"] and told[0].score == known[0].score
        stranger = client.audio_classification(clips_of("id90101", 3)[0].read_bytes())
        assert stranger[0].label == "unknown"
        top = admin.audio_classification(str(clips_of("id90003", 3)[0]), top_k=2)  # JSON with base64 inputs
        assert [e.label for e in top][:1] == ["id90003"] and len(top) == 2
        from huggingface_hub.errors import HfHubHTTPError

        with pytest.raises(HfHubHTTPError) as info:
            InferenceClient(model=base + "/v1/classify", token="sk_bad_bad").audio_classification(b"RIFF")
        assert info.value.response.status_code == 401
