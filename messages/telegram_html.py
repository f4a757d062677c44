"""Telegram's HTML parse mode: validation and conversion to (plain text, entities).

One copy of Telegram's rules, shared by the IRB lint (messages/lint.py: a template Telegram would
refuse is a lint error) and the Bot API stand-in (sandbox/rendering.py: it refuses what Telegram
refuses). Neither owns it; it knows nothing of either.

Why: Telegram rejects the whole message when its HTML has an unsupported tag, a tag left
open or an unknown entity, and applies length limits to the text *after* markup is removed.
The sandbox must reject the same messages and measure the same length, so it parses the
markup the way Telegram documents it (https://core.telegram.org/bots/api#html-style) and
counts length in UTF-16 code units as Telegram does. Error wording follows Telegram's
("can't parse entities: ... at byte offset N", byte offsets into the UTF-8 text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024

_SIMPLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
}
_ATTRIBUTE_TAGS = {"a", "span", "blockquote", "tg-emoji"}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TAG_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_ATTR_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_ENTITY_RE = re.compile(r"&(#[0-9]{1,8}|#[xX][0-9a-fA-F]{1,7}|[A-Za-z][A-Za-z0-9]*);")


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text.encode("utf-16-le")) // 2


@dataclass
class _OpenTag:
    name: str
    entity: dict[str, Any] | None
    offset: int
    attributes: dict[str, str] = field(default_factory=dict)


def parse_html(markup: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram HTML into plain text and Bot API MessageEntity dicts.

    Raises TelegramHtmlError("can't parse entities: ...") for markup Telegram
    refuses.
    """
    parser = _Parser(markup)
    return parser.run()


class _Parser:
    """A single-pass scanner; kept as a class so positions and output share one place."""

    def __init__(self, markup: str) -> None:
        self._markup = markup
        self._pos = 0
        self._text: list[str] = []
        self._utf16 = 0
        self._stack: list[_OpenTag] = []
        self._entities: list[dict[str, Any]] = []

    def run(self) -> tuple[str, list[dict[str, Any]]]:
        markup = self._markup
        while self._pos < len(markup):
            char = markup[self._pos]
            if char == "<":
                self._tag()
            elif char == "&":
                self._emit(self._entity())
            else:
                end = self._pos
                while end < len(markup) and markup[end] not in "<&":
                    end += 1
                self._emit(markup[self._pos : end])
                self._pos = end
        if self._stack:
            name = self._stack[-1].name
            raise _error(f'Can\'t find end tag corresponding to start tag "{name}"')
        self._entities.sort(key=lambda entity: (entity["offset"], -entity["length"]))
        return "".join(self._text), self._entities

    def _emit(self, text: str) -> None:
        self._text.append(text)
        self._utf16 += utf16_len(text)

    def _byte_offset(self, pos: int | None = None) -> int:
        return len(self._markup[: self._pos if pos is None else pos].encode("utf-8"))

    def _entity(self) -> str:
        match = _ENTITY_RE.match(self._markup, self._pos)
        if match is None:
            raise _error(f"Can't find end of the entity starting at byte offset {self._byte_offset()}")
        body = match.group(1)
        if body.startswith(("#x", "#X")):
            decoded = _code_point(int(body[2:], 16))
        elif body.startswith("#"):
            decoded = _code_point(int(body[1:]))
        else:
            decoded = _NAMED_ENTITIES.get(body)
        if decoded is None:
            raise _error(f'Unsupported HTML entity "&{body};" at byte offset {self._byte_offset()}')
        self._pos = match.end()
        return decoded

    def _tag(self) -> None:
        start = self._pos
        close = self._markup.find(">", start)
        if close == -1:
            raise _error(f"Unclosed start tag at byte offset {self._byte_offset(start)}")
        if self._markup.startswith("</", start):
            self._end_tag(start, self._markup[start + 2 : close].strip().lower())
        else:
            self._start_tag(start, close)
        self._pos = close + 1

    def _start_tag(self, start: int, close: int) -> None:
        inner = self._markup[start + 1 : close]
        match = _TAG_NAME_RE.match(inner)
        name = match.group(0).lower() if match else ""
        if name not in _SIMPLE_TAGS and name not in _ATTRIBUTE_TAGS:
            shown = match.group(0) if match else inner.split(" ")[0]
            raise _error(f'Unsupported start tag "{shown}" at byte offset {self._byte_offset(start)}')
        attributes = _parse_attributes(inner[len(name) :], name, self._byte_offset(start))
        entity = self._entity_for(name, attributes, start)
        self._stack.append(_OpenTag(name, entity, self._utf16, attributes))

    def _entity_for(self, name: str, attributes: dict[str, str], start: int) -> dict[str, Any] | None:
        if name in _SIMPLE_TAGS:
            return {"type": _SIMPLE_TAGS[name]}
        if name == "a":
            href = attributes.get("href")
            return {"type": "text_link", "url": href} if href else None
        if name == "span":
            if attributes.get("class") != "tg-spoiler":
                raise _error(
                    f'Tag "span" must have class "tg-spoiler" at byte offset {self._byte_offset(start)}'
                )
            return {"type": "spoiler"}
        if name == "blockquote":
            kind = "expandable_blockquote" if "expandable" in attributes else "blockquote"
            return {"type": kind}
        emoji_id = attributes.get("emoji-id")
        if not emoji_id:
            raise _error(
                f'Tag "tg-emoji" must have attribute "emoji-id" at byte offset {self._byte_offset(start)}'
            )
        return {"type": "custom_emoji", "custom_emoji_id": emoji_id}

    def _end_tag(self, start: int, name: str) -> None:
        if not self._stack:
            raise _error(f"Unexpected end tag at byte offset {self._byte_offset(start)}")
        open_tag = self._stack.pop()
        if name != open_tag.name:
            raise _error(
                f'Unmatched end tag at byte offset {self._byte_offset(start)}, '
                f'expected "</{open_tag.name}>", found "</{name}>"'
            )
        if open_tag.entity is None or self._utf16 == open_tag.offset:
            return
        entity = {**open_tag.entity, "offset": open_tag.offset, "length": self._utf16 - open_tag.offset}
        if open_tag.name == "code" and self._stack and self._stack[-1].name == "pre":
            language = open_tag.attributes.get("class", "")
            if language.startswith("language-"):
                # <pre><code class="language-x"> is one pre entity with a language.
                self._stack[-1].entity = {"type": "pre", "language": language.removeprefix("language-")}
                return
        self._entities.append(entity)


def _parse_attributes(source: str, tag: str, byte_offset: int) -> dict[str, str]:
    """Attributes of a start tag; values may be quoted and may contain HTML entities."""
    attributes: dict[str, str] = {}
    pos = 0
    source = source.rstrip("/")
    while True:
        while pos < len(source) and source[pos].isspace():
            pos += 1
        if pos >= len(source):
            return attributes
        match = _ATTR_NAME_RE.match(source, pos)
        if match is None:
            raise _error(f'Empty attribute name in the tag "{tag}" at byte offset {byte_offset}')
        name = match.group(0).lower()
        pos = match.end()
        if pos >= len(source) or source[pos] != "=":
            attributes[name] = ""
            continue
        pos += 1
        if pos < len(source) and source[pos] in "\"'":
            quote = source[pos]
            end = source.find(quote, pos + 1)
            if end == -1:
                raise _error(f'Unclosed attribute value in the tag "{tag}" at byte offset {byte_offset}')
            raw, pos = source[pos + 1 : end], end + 1
        else:
            end = pos
            while end < len(source) and not source[end].isspace():
                end += 1
            raw, pos = source[pos:end], end
        attributes[name] = _decode_attribute(raw)


def _decode_attribute(raw: str) -> str:
    def replace(match: re.Match[str]) -> str:
        body = match.group(1)
        if body.startswith(("#x", "#X")):
            return _code_point(int(body[2:], 16)) or match.group(0)
        if body.startswith("#"):
            return _code_point(int(body[1:])) or match.group(0)
        return _NAMED_ENTITIES.get(body, match.group(0))

    return _ENTITY_RE.sub(replace, raw)


def _code_point(value: int) -> str | None:
    if value == 0 or value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
        return None
    return chr(value)


class TelegramHtmlError(ValueError):
    """Markup Telegram would refuse; the message is Telegram's own description without the
    "Bad Request: " prefix ("can't parse entities: ... at byte offset N")."""


def _error(detail: str) -> TelegramHtmlError:
    return TelegramHtmlError(f"can't parse entities: {detail}")
