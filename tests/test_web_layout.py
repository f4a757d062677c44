"""The web demo's page at a phone's, a laptop's and a wide screen's width, in Debian's chromium
with the fonts .ci/run installs (a text font and Noto Color Emoji).

At each width a participant joins, the clock is jumped, a reminder answered, /mystats and the
study team's /adherence typed and sent with the Send button; then: nothing on the page sticks
out of its frame (the page no wider than the window, every element inside the box of the
nearest ancestor that clips or scrolls it), the clock's buttons, the text box, Send and the log
are there to use, text and digits are drawn in a text font (never the emoji font, which has
glyphs for digits and the space), and both plots are pictures that loaded. A screenshot per
width goes to the artifacts folder (tests/web_browser.py), for people to look at.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from bot.demo import web_demo
from study.protocol import EXAMPLE_PROTOCOL
from tests.web_browser import DEMO_START, artifacts_dir, opened_page, screenshot_on_failure

WIDTHS = [(390, 844), (1024, 768), (1440, 900)]

# Every visible element whose box is not inside the box of the nearest ancestor that clips or
# scrolls it sideways (overflow-x other than visible), or the window's when none does; and every
# block whose content is wider than itself without it clipping or scrolling it.
OUT_OF_FRAME_JS = """
() => {
  const describe = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + (typeof el.className === "string" && el.className ? "." + el.className.trim().split(/\\s+/).join(".") : "")
    + ' "' + (el.textContent || "").trim().slice(0, 40) + '"';
  const clipper = (el) => {
    for (let a = el.parentElement; a && a !== document.documentElement; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== "visible") return a;
    }
    return null;
  };
  const problems = [];
  const page = document.documentElement;
  if (page.scrollWidth > window.innerWidth) {
    problems.push(`the page is ${page.scrollWidth} px wide in a window ${window.innerWidth} px wide`);
  }
  for (const el of document.body.querySelectorAll("*")) {
    const style = getComputedStyle(el);
    if (style.visibility === "hidden" || el.closest("[hidden]")) continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    const frame = clipper(el);
    let left = 0, right = page.clientWidth, name = "the window";
    if (frame) {
      const outer = frame.getBoundingClientRect();
      left = outer.left + frame.clientLeft;
      right = left + frame.clientWidth;
      name = describe(frame).split(" ")[0];
    }
    if (box.left < left - 0.5 || box.right > right + 0.5) {
      problems.push(`${describe(el)} spans ${Math.round(box.left)}-${Math.round(box.right)} px, `
                    + `outside ${name} (${Math.round(left)}-${Math.round(right)} px)`);
    }
    if (style.overflowX === "visible" && el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) {
      problems.push(`${describe(el)}: its content is ${el.scrollWidth} px wide in a box ${el.clientWidth} px wide`);
    }
  }
  return problems;
}
"""

FIRST_FAMILY_JS = "el => getComputedStyle(el).fontFamily.split(',')[0].trim().replace(/^[\"']|[\"']$/g, '')"


@pytest.fixture(autouse=True)
def _study_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDY_FILE", str(EXAMPLE_PROTOCOL))


@pytest.fixture
async def demo(tmp_path: Path):
    async with web_demo(port=0, start=DEMO_START, workdir=tmp_path, heartbeat=False) as running_demo:
        yield running_demo


@pytest.mark.browser
@pytest.mark.parametrize(("width", "height"), WIDTHS, ids=[f"{w}x{h}" for w, h in WIDTHS])
async def test_the_page_fits_and_reads_well_at(demo, width: int, height: int) -> None:
    async with opened_page(demo.url, width=width, height=height) as page:
        async with screenshot_on_failure(page, f"layout-{width}x{height}"):
            await _use_it(page)
            problems = await page.evaluate(OUT_OF_FRAME_JS)
            assert problems == [], "\n".join(problems)
            await _text_is_in_a_text_font(page)
        await page.evaluate("window.scrollTo(0, 0)")
        await page.screenshot(path=artifacts_dir() / f"layout-{width}x{height}.png", full_page=True)


async def _use_it(page) -> None:
    """Join, move the clock, answer the reminder, and type with the Send button in both chats."""
    from playwright.async_api import expect

    participant = page.locator("#participant-phone")
    staff = page.locator("#staff-phone")
    await participant.get_by_role("button", name="Open the invite link").click()
    await participant.get_by_role("button", name="✅ Yes, I agree").click()
    await expect(participant.locator(".msg.in").last).to_contain_text("You are all set")

    # The clock: its buttons can be pressed where they are (nothing covers them).
    await page.locator("#clock-next").click()
    await expect(page.locator("#clock-last")).to_contain_text("Now Tue 24 Nov 07:30")
    await page.locator("#clock-next").click()
    await expect(page.locator("#clock-last")).to_contain_text("Now Tue 24 Nov 08:00")
    shown = participant.locator(".msg.in", has_text="Time for your study cream").last
    reminder = participant.locator(f'.msg[data-message-id="{await shown.get_attribute("data-message-id")}"]')
    await reminder.get_by_role("button", name="✅ I put it on now").click()
    await expect(reminder).to_contain_text("Saved.")

    # The composer: the text box and Send, both inside the phone, both usable.
    await _send(participant, "/mystats")
    mystats = participant.locator(".msg.in.has-photo").last
    await expect(mystats.locator(".caption")).to_contain_text("Your record so far")
    await _send(staff, "/adherence DEMO01")
    adherence = staff.locator(".msg.in.has-photo").last
    await expect(adherence.locator(".caption")).to_contain_text("DEMO01")
    for shown in (mystats, adherence):
        await _is_a_loaded_picture_above_its_caption(page, shown)

    # The log: the row of /mystats's message, every column of it in view.
    row = page.locator("#log tbody tr", has_text="mystats (en)").last
    await row.scroll_into_view_if_needed()
    await expect(row).to_be_in_viewport()
    for cell in ("time", "to", "template", "hash", "via"):
        await expect(row.locator(f"td.{cell}")).to_be_in_viewport()
        assert (await row.locator(f"td.{cell}").inner_text()).strip()


async def _send(phone, text: str) -> None:
    from playwright.async_api import expect

    box = phone.get_by_role("textbox")
    send = phone.get_by_role("button", name="Send", exact=True)
    await box.fill(text)
    await expect(send).to_be_visible()
    await send.click()
    await expect(phone.locator(".msg.out").last).to_contain_text(text)


async def _is_a_loaded_picture_above_its_caption(page, message) -> None:
    from playwright.async_api import expect

    picture = message.locator(".bubble img")
    await expect(picture).to_have_count(1)
    await picture.scroll_into_view_if_needed()
    await page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=await picture.element_handle())
    assert await message.locator(".media").count() == 0, "no '[photo]' in place of the picture"
    assert "[photo]" not in await message.inner_text()
    image, caption = await picture.bounding_box(), await message.locator(".caption").bounding_box()
    assert image["width"] > 150 and image["height"] > 100
    assert caption["y"] >= image["y"] + image["height"] - 1


async def _text_is_in_a_text_font(page) -> None:
    """The first family of each stack is a text font, and the glyphs of the clock, the buttons and
    the log come from text fonts (what chromium used, as its DevTools protocol reports it)."""
    samples = {"body text": ".banner-text", "the simulated time": "#clock-now", "a clock button": "#clock-next",
               "a tab": ".tab .tab-time", "the text box": ".composer input", "Send": ".composer button",
               "a bubble": ".bubble .text", "a log time": "#log td.time"}
    for what, selector in samples.items():
        family = await page.locator(selector).first.evaluate(FIRST_FAMILY_JS)
        assert "emoji" not in family.lower(), f"{what} ({selector}) is set first in {family!r}"

    cdp = await page.context.new_cdp_session(page)
    await cdp.send("DOM.enable")
    await cdp.send("CSS.enable")
    for what, selector in {"the simulated time": "#clock-now", "the next event": "#clock-next-event",
                           "Jump to next event": "#clock-next", "+1 week": "#clock-week",
                           "a log time": "#log tbody td.time", "Send": ".composer button"}.items():
        used = await _fonts_drawn(cdp, selector)
        assert used and not any("emoji" in name.lower() for name in used), f"{what} ({selector}) is drawn in {used}"


async def _fonts_drawn(cdp, selector: str, timeout: float = 10) -> dict[str, int]:
    """The fonts chromium drew `selector`'s text in, by family. The page redraws the clock and the
    log as they change (their text replaced): asked between the change and the next layout,
    chromium reports no fonts at all, so the element is looked up again until it reports some
    (or `timeout` passes, and the empty answer is the test's to judge)."""
    used: dict[str, int] = {}

    async def drawn() -> None:
        nonlocal used
        while True:
            root = (await cdp.send("DOM.getDocument", {"depth": -1}))["root"]["nodeId"]
            node = (await cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector}))["nodeId"]
            assert node, selector
            fonts = (await cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node}))["fonts"]
            used = {font["familyName"]: font["glyphCount"] for font in fonts}
            if used:
                return
            await asyncio.sleep(0.05)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(drawn(), timeout)
    return used
