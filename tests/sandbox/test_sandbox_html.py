"""Telegram HTML parse mode: accepted markup, refused markup, and length after parsing."""

from __future__ import annotations

import pytest

from messages.telegram_html import TelegramHtmlError, parse_html, utf16_len
from sandbox.errors import ApiError
from sandbox.limits import is_valid_start_payload
from sandbox.rendering import render_text


def test_formatting_becomes_entities() -> None:
    text, entities = parse_html('<b>Hi</b> <a href="https://e.org/?a=1&amp;b=2">you</a> &lt;3')
    assert text == "Hi you <3"
    assert entities == [
        {"type": "bold", "offset": 0, "length": 2},
        {"type": "text_link", "url": "https://e.org/?a=1&b=2", "offset": 3, "length": 3},
    ]


def test_offsets_count_utf16_code_units() -> None:
    text, entities = parse_html("😀<i>x</i>")
    assert entities == [{"type": "italic", "offset": 2, "length": 1}]
    assert utf16_len(text) == 3


def test_pre_with_language_and_other_allowed_tags() -> None:
    text, entities = parse_html(
        '<pre><code class="language-python">x = 1</code></pre><tg-spoiler>s</tg-spoiler>'
        '<span class="tg-spoiler">t</span><blockquote expandable>q</blockquote>'
        '<strong>b</strong><em>i</em><ins>u</ins><del>d</del><tg-emoji emoji-id="5">e</tg-emoji>'
    )
    assert text == "x = 1stqbiude"
    assert [e["type"] for e in entities] == [
        "pre", "spoiler", "spoiler", "expandable_blockquote", "bold", "italic", "underline",
        "strikethrough", "custom_emoji",
    ]
    assert entities[0]["language"] == "python"


@pytest.mark.parametrize(
    ("markup", "detail"),
    [
        ("<div>x</div>", 'Unsupported start tag "div" at byte offset 0'),
        ("<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("a &nbsp; b", 'Unsupported HTML entity "&nbsp;" at byte offset 2'),
        ("fish & chips", "Can't find end of the entity starting at byte offset 5"),
        ("é<br>", 'Unsupported start tag "br" at byte offset 2'),
    ],
)
def test_refused_markup(markup: str, detail: str) -> None:
    with pytest.raises(TelegramHtmlError) as parsed:  # the rules themselves, as the IRB lint meets them
        parse_html(markup)
    assert str(parsed.value) == f"can't parse entities: {detail}"
    with pytest.raises(ApiError) as caught:  # and as the stand-in answers a sendMessage
        render(markup)
    assert caught.value.description == f"Bad Request: can't parse entities: {detail}"


def render(text: str, parse_mode: str | None = "HTML") -> str:
    return render_text(text, parse_mode, limit=4096, too_long="message is too long",
                       empty="message text is empty")[0]


def test_length_is_measured_after_parsing() -> None:
    assert len(render("<b>" + "x" * 4096 + "</b>")) == 4096
    with pytest.raises(ApiError, match="message is too long"):
        render("x" * 4097)
    with pytest.raises(ApiError, match="message is too long"):
        render("😀" * 2049, parse_mode=None)  # 4098 UTF-16 code units
    with pytest.raises(ApiError, match="message text is empty"):
        render("<b></b>")


def test_markdown_is_refused_as_unsupported_by_the_sandbox() -> None:
    with pytest.raises(ApiError, match="not supported by the sandbox"):
        render("*x*", parse_mode="MarkdownV2")


def test_plain_text_is_taken_as_is() -> None:
    assert render("<b> & </b>", parse_mode=None) == "<b> & </b>"


@pytest.mark.parametrize(("payload", "valid"),
                         [("abc-DEF_123", True), ("x" * 64, True), ("x" * 65, False),
                          ("", False), ("a b", False), ("a+b", False)])
def test_start_payload_rule(payload: str, valid: bool) -> None:
    assert is_valid_start_payload(payload) is valid
