"""The web demo: what `trialbot demo` serves, checked over HTTP, and once end to end in a real
browser (headless Chromium from the Debian package, driven by Playwright, started by the test).

Screenshots of the browser run are saved as story-*.png in the artifacts folder
(tests/web_browser.py: $TRIALBOT_ARTIFACTS_DIR, else artifacts/screenshots/, gitignored). With
TRIALBOT_DOCS_SCREENSHOT=1 the acknowledged-alert screenshot also replaces docs/web-demo.png, the
one the README shows. The page's layout at a phone's, a laptop's and a wide screen's width:
tests/test_web_layout.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from bot.demo import web_demo
from sandbox.web import WebChat
from sandbox.world import TelegramWorld
from study.protocol import EXAMPLE_PROTOCOL
from tests import web_browser
from tests.web_browser import DEMO_START, REPO, artifacts_dir, opened_page, screenshot_on_failure


@pytest.fixture(autouse=True)
def _study_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDY_FILE", str(EXAMPLE_PROTOCOL))


@pytest.fixture
async def demo(tmp_path: Path):
    async with web_demo(port=0, start=DEMO_START, workdir=tmp_path, heartbeat=False) as running_demo:
        yield running_demo


# --- over HTTP -----------------------------------------------------------------------------------


async def _json(session: aiohttp.ClientSession, method: str, url: str, **kwargs):
    async with session.request(method, url, **kwargs) as response:
        return response.status, await response.json()


async def test_the_page_is_local_and_says_it_is_a_demo(demo) -> None:
    async with aiohttp.ClientSession() as http, http.get(demo.url) as page:
        html = await page.text()
        csp = page.headers["Content-Security-Policy"]
    assert "a demo and review tool" in html and "cannot be connected to real Telegram" in html
    # Nothing from the internet: every asset is the page's own, and the browser is told so.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert demo.url.startswith("http://127.0.0.1:")


async def test_requests_from_elsewhere_are_refused(demo) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(demo.url, headers={"Host": "attacker.example"}) as rebound:
            assert rebound.status == 403  # DNS rebinding
        async with http.post(f"{demo.url}api/clock", data={"action": "day"}) as form:
            assert form.status == 415  # a cross-site form cannot post JSON
        async with http.post(f"{demo.url}api/clock", json={"action": "day"},
                             headers={"Origin": "https://attacker.example"}) as cross:
            assert cross.status == 403
    assert demo.clock.now() == DEMO_START


def test_the_web_chat_listens_on_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        WebChat(TelegramWorld(), [], controls=None, host="0.0.0.0")


def test_the_page_script_never_parses_markup() -> None:
    """The bot's formatting is built from Telegram's entities with DOM calls; nothing is injected."""
    script = (REPO / "sandbox" / "web" / "static" / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script


async def test_the_clock_steps_through_every_scheduled_moment(demo) -> None:
    maya = next(p for p in demo.web.personas.values() if p.key == "DEMO01").user
    async with aiohttp.ClientSession() as http:
        await _json(http, "POST", f"{demo.url}api/chats/DEMO01/open-link", json={})
        consent = await maya.next_bot_event()
        status, _ = await _json(http, "POST", f"{demo.url}api/chats/DEMO01/press",
                                json={"message_id": consent.message_id, "data": consent.buttons[0][0][1]})
        assert status == 200
        await maya.next_bot_event()
        # The press is fully handled (its reply recorded) once the button is answered.
        await maya.wait_for(lambda u: len(u.callback_answers) >= 1)
        status, gone = await _json(http, "POST", f"{demo.url}api/chats/DEMO01/press",
                                   json={"message_id": consent.message_id, "data": consent.buttons[0][0][1]})
        assert status == 409 and "no longer shown" in gone["error"]  # only shown buttons can be pressed

        _, state = await _json(http, "GET", f"{demo.url}api/state")
        assert state["clock"]["next_what"] == "the staff digest"
        _, moved = await _json(http, "POST", f"{demo.url}api/clock", json={"action": "next"})
        # The digest to both staff members, and the day's audit anchor to the investigator.
        assert moved["summary"].startswith("Now Tue 24 Nov 07:30 (America/New_York): 3 messages sent")
        # A day forward stops at each reminder and nudge on the way: nothing is skipped or late.
        _, moved = await _json(http, "POST", f"{demo.url}api/clock", json={"action": "day"})
        assert moved["summary"].startswith("Now Wed 25 Nov 07:30")
        _, state = await _json(http, "GET", f"{demo.url}api/state")

    chat = next(p for p in state["personas"] if p["key"] == "DEMO01")["messages"]
    reminders = [m for m in chat if m["text"] and m["text"].startswith("⏰")]
    assert [m["date"] for m in reminders] == ["2026-11-24T13:00:00+00:00", "2026-11-25T01:00:00+00:00"]
    assert all("late" not in m["text"] for m in reminders)
    assert any(m["silent"] for m in chat), "the 21:30 nudge falls in quiet hours and goes silently"
    first = chat[1]
    assert "html" not in first and any(e["type"] == "bold" for e in first["entities"])
    log = {(row["to"], row["template"]) for row in state["log"]}
    assert {("DEMO01", "reminder_application"), ("DEMO01", "reminder_nudge"),
            ("staff: Dana Lee", "staff_digest"), ("staff: Dana Lee", "staff_consent")} <= log
    assert all(row["approved"] for row in state["log"])
    tagged = {(row["to_key"], row["message_id"]) for row in state["log"]}
    assert ("DEMO01", reminders[0]["id"]) in tagged  # the page can name each bubble's template


async def test_the_bots_pictures_are_served_from_the_stand_ins_stored_upload(demo) -> None:
    """/mystats is a photo with a caption: the page gets its address and size, never "[photo]"
    alone, and the address serves the very bytes the bot uploaded. Nothing else the stand-in
    keeps is served: a file no shown message carries, or an address of another run, is 404."""
    maya = next(p for p in demo.web.personas.values() if p.key == "DEMO01").user
    async with aiohttp.ClientSession() as http:
        await _json(http, "POST", f"{demo.url}api/chats/DEMO01/open-link", json={})
        consent = await maya.next_bot_event()
        await _json(http, "POST", f"{demo.url}api/chats/DEMO01/press",
                    json={"message_id": consent.message_id, "data": consent.buttons[0][0][1]})
        await maya.wait_for(lambda u: len(u.callback_answers) >= 1)
        await _json(http, "POST", f"{demo.url}api/chats/DEMO01/send", json={"text": "/mystats"})
        await maya.wait_for(lambda u: any(m.kind == "photo" for m in u.messages))
        _, state = await _json(http, "GET", f"{demo.url}api/state")
        shown = next(m for m in next(p for p in state["personas"] if p["key"] == "DEMO01")["messages"] if m["photo"])
        sent = next(m for m in maya.messages if m.kind == "photo")
        assert shown["caption"].startswith("📊") and shown["photo"]["width"] > 0 and shown["photo"]["height"] > 0
        assert shown["photo"]["url"] == f"{demo.web.files_url}{sent.file_id}"
        async with http.get(demo.url + shown["photo"]["url"].lstrip("/")) as picture:
            assert picture.status == 200 and picture.content_type == "image/png"
            assert await picture.read() == demo.world.files[sent.file_id].content == sent.photo
            assert "no-store" not in picture.headers["Cache-Control"]
            assert picture.headers["X-Content-Type-Options"] == "nosniff"
        unshown = demo.world.store_file("document", sent.photo, "plot.png", "image/png")
        other_run = "/api/file/000000000000/" + sent.file_id
        for address in (demo.web.files_url + unshown, other_run, demo.web.files_url + "sandbox-photo-999"):
            async with http.get(demo.url + address.lstrip("/")) as refused:
                assert refused.status == 404, address


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
async def test_trialbot_demo_serves_the_page_until_interrupted(tmp_path: Path, stop: signal.Signals) -> None:
    """Started as from a script's `&`, which hands the program SIGINT ignored: Ctrl-C (SIGINT) and
    SIGTERM stop it all the same."""
    env = {**os.environ, "STUDY_FILE": str(EXAMPLE_PROTOCOL), "PYTHONUNBUFFERED": "1"}
    env.pop("TELEGRAM_BOT_TOKEN", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "demo", "--port", "0", cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        url = None
        while url is None:
            line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            assert line, "trialbot demo ended before printing its address"
            if match := re.search(r"http://127\.0\.0\.1:\d+/", line):
                url = match.group(0)
        async with aiohttp.ClientSession() as http, http.get(url) as page:
            assert page.status == 200 and "trialbot demo" in await page.text()
        process.send_signal(stop)
        rest = (await asyncio.wait_for(process.stdout.read(), 30)).decode()
        assert await process.wait() == 0, rest
        assert "demo stopped" in rest
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# --- in a browser --------------------------------------------------------------------------------


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_without_chromium_the_browser_test_fails_in_ci_and_is_skipped_elsewhere(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str, outcome: type[BaseException]) -> None:
    monkeypatch.setenv("CI", ci)
    monkeypatch.delenv("TRIALBOT_CHROMIUM", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(web_browser, "DEBIAN_CHROMIUM", tmp_path / "no-chromium")
    with pytest.raises(outcome, match="chromium"):
        web_browser.chromium()


def test_screenshots_go_where_ci_says(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRIALBOT_ARTIFACTS_DIR", str(tmp_path / "ci-artifacts"))
    assert artifacts_dir() == tmp_path / "ci-artifacts" and artifacts_dir().is_dir()
    monkeypatch.delenv("TRIALBOT_ARTIFACTS_DIR")
    monkeypatch.setattr(web_browser, "REPO", tmp_path)
    assert artifacts_dir() == tmp_path / "artifacts" / "screenshots" and artifacts_dir().is_dir()


@pytest.fixture
async def browser_page(demo):
    async with opened_page(demo.url, width=1420, height=1000) as page:
        yield page


@pytest.mark.browser
async def test_in_the_browser_a_participant_joins_answers_a_reminder_and_reports_a_red_flag(demo, browser_page) -> None:
    """The issue's story end to end: join, agree, jump the clock, tap "I put it on now" on the
    reminder; report a red flag and see the study team's alert arrive and be acknowledged; then the
    Spanish-speaking participant and the one in another time zone."""
    async with screenshot_on_failure(browser_page, "story"):
        await _join_agree_and_answer_a_reminder(browser_page)
        await _report_a_red_flag_and_acknowledge_it(browser_page)
        await _the_other_participants(browser_page)
        await _what_people_type_is_never_markup(browser_page)


async def _join_agree_and_answer_a_reminder(page) -> None:
    from playwright.async_api import expect

    participant = page.locator("#participant-phone")
    staff = page.locator("#staff-phone")
    await expect(page.locator(".banner")).to_contain_text("a demo and review tool")

    # Join: open the invite link the study team gave DEMO01, read the consent text, agree.
    await page.locator('#participant-tabs [data-persona="DEMO01"]').click()
    await participant.get_by_role("button", name="Open the invite link").click()
    agree = participant.get_by_role("button", name="✅ Yes, I agree")
    await expect(agree).to_be_visible()
    # Telegram's formatting, rendered from entities: the heading is bold, nothing else leaked in.
    await expect(participant.locator(".msg.in .bubble b").first).to_have_text(re.compile(r"^Welcome to the "))
    await expect(participant.locator(".template-tag").first).to_have_text("consent (en)")
    await page.screenshot(path=artifacts_dir() / "story-01-consent.png")
    await agree.click()
    await expect(participant.locator(".msg.in").last).to_contain_text("You are all set")
    await expect(participant.locator(".msg.in").last).to_contain_text("edited")
    await expect(staff.locator(".msg.in").last).to_contain_text("DEMO01 agreed to messages")

    # The clock: 07:30 brings the staff digest, 08:00 the first reminder.
    await page.locator("#clock-next").click()
    await expect(page.locator("#clock-last")).to_contain_text("Now Tue 24 Nov 07:30")
    await expect(staff.locator(".template-tag").last).to_have_text("staff_digest (en)")
    await page.locator("#clock-next").click()
    await expect(page.locator("#clock-last")).to_contain_text("Now Tue 24 Nov 08:00")
    shown = participant.locator(".msg.in", has_text="Time for your study cream").last
    await expect(shown).to_be_visible()
    reminder = participant.locator(f'.msg[data-message-id="{await shown.get_attribute("data-message-id")}"]')
    await page.screenshot(path=artifacts_dir() / "story-02-reminder.png")
    await reminder.get_by_role("button", name="✅ I put it on now").click()
    await expect(reminder).to_contain_text("Saved.")
    await expect(reminder.locator(".template-tag")).to_have_text("reminder_application (en) → applied_logged (en)")
    await expect(page.locator("#log tbody")).to_contain_text("applied_logged")
    await page.screenshot(path=artifacts_dir() / "story-03-applied.png", full_page=True)

    # A question in free text reaches the study team, and their /reply reaches the participant.
    box = participant.get_by_role("textbox")
    await box.fill("Can I put the cream on after my shower?")
    await box.press("Enter")
    await expect(participant.locator(".msg.in").last).to_contain_text("passed to the study team")
    await expect(staff.locator(".msg.in", has_text="DEMO01 wrote").last).to_contain_text("after my shower?")
    # Staff commands work in the study team's chat.
    staff_box = staff.get_by_role("textbox")
    await staff_box.fill("/reply DEMO01 We will call you this afternoon.")
    await staff_box.press("Enter")
    await expect(participant.locator(".msg.in").last).to_contain_text("We will call you this afternoon.")


async def _report_a_red_flag_and_acknowledge_it(page) -> None:
    from playwright.async_api import expect

    participant = page.locator("#participant-phone")
    staff = page.locator("#staff-phone")
    box = participant.get_by_role("textbox")
    await box.fill("/urgent")
    await box.press("Enter")
    red_flags = participant.locator(".msg.in").last
    await expect(red_flags).to_contain_text("If this is an emergency, call 911 now.")
    await red_flags.get_by_role("button", name="Fever or chills").click()
    await expect(participant.locator(".msg.in").last).to_contain_text("call the study team today")
    alert = staff.locator(".msg.in", has_text="Safety alert: DEMO01").last
    await expect(alert).to_contain_text("fever or chills")
    await expect(alert.locator(".template-tag")).to_have_text("staff_alert (en)")
    acknowledge = alert.get_by_role("button", name="✅ Acknowledge")
    await expect(acknowledge).to_be_visible()
    await page.screenshot(path=artifacts_dir() / "story-05-alert.png")
    await acknowledge.click()
    acknowledged = staff.locator(f'.msg[data-message-id="{await alert.get_attribute("data-message-id")}"]')
    await expect(acknowledged).to_contain_text("Acknowledged: alert for DEMO01")
    await expect(acknowledged.get_by_role("button")).to_have_count(0)
    # An acknowledged alert is not sent again: the next half hour passes quietly for the team.
    await page.locator("#clock-hour").click()
    await expect(page.locator("#clock-last")).to_contain_text("Now Tue 24 Nov 09:00")
    await expect(staff.locator(".template-tag", has_text="staff_alert (en)")).to_have_count(1)
    staff_box = staff.get_by_role("textbox")
    await staff_box.fill("/alerts")
    await staff_box.press("Enter")
    await expect(staff.locator(".msg.in").last).to_contain_text("No open alerts")
    await page.mouse.move(0, 0)  # no button shown hovered in the README's picture
    await page.screenshot(path=artifacts_dir() / "story-06-acknowledged.png", full_page=True)
    if os.environ.get("TRIALBOT_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(artifacts_dir() / "story-06-acknowledged.png", REPO / "docs" / "web-demo.png")


async def _the_other_participants(page) -> None:
    """One in Spanish, one three hours behind the site."""
    from playwright.async_api import expect

    participant = page.locator("#participant-phone")
    sam = page.locator('#participant-tabs [data-persona="DEMO03"]')
    await expect(sam).to_contain_text("06:00")
    await page.locator('#participant-tabs [data-persona="DEMO02"]').click()
    await participant.get_by_role("button", name="Open the invite link").click()
    await participant.get_by_role("button", name="✅ Sí, estoy de acuerdo").click()
    await expect(participant.locator(".msg.in").last).to_contain_text("edited")
    await expect(participant.locator(".template-tag").last).to_have_text("consent (es) → consent_agreed (es)")
    await page.screenshot(path=artifacts_dir() / "story-07-spanish.png")


async def _what_people_type_is_never_markup(page) -> None:
    """Shown as typed in the participant's chat, and in the study team's, where the bot passes it
    on inside an approved template."""
    from playwright.async_api import expect

    participant = page.locator("#participant-phone")
    staff = page.locator("#staff-phone")
    await page.locator('#participant-tabs [data-persona="DEMO01"]').click()
    typed = '<b>not bold</b> <img src=x onerror="window.pwned=1">'
    box = participant.get_by_role("textbox")
    await box.fill(typed)
    await box.press("Enter")
    mine = participant.locator(".msg.out").last
    await expect(mine).to_contain_text(typed)
    assert await mine.locator("b, img").count() == 0
    passed_on = staff.locator(".msg.in", has_text="DEMO01 wrote").last
    await expect(passed_on).to_contain_text(typed)
    assert await passed_on.locator("img").count() == 0
    assert await page.evaluate("window.pwned") is None
