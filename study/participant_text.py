"""What a participant writes, made safe to keep and to pass on.

- `clean`: control characters are removed before anything is stored (a NUL cannot be stored in a
  PostgreSQL text column at all, and the others only hide what was written); the length as
  received is kept beside the text. Line breaks and tabs stay; so do emoji joiners and other
  format characters, which are part of what people write.
- `split`: a message longer than one Telegram message can carry is passed on in parts, cut at
  paragraph, line, sentence or word boundaries where possible. Lengths are counted as Telegram
  counts them, in UTF-16 code units.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

_KEPT_CONTROLS = {"\n", "\t"}


@dataclass(frozen=True)
class Cleaned:
    text: str
    original_length: int

    @property
    def changed(self) -> bool:
        return len(self.text) != self.original_length


def clean(text: str) -> Cleaned:
    """Control characters (C0, C1, DEL) and unpaired surrogates removed; line endings as \\n."""
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = "".join(ch for ch in normalised if ch in _KEPT_CONTROLS or not _unstorable(ch))
    return Cleaned(kept.strip(), len(text))


def _unstorable(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category == "Cc" or category == "Cs"


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split(text: str, limit: int) -> list[str]:
    """`text` in parts of at most `limit` UTF-16 code units, in order, nothing lost but the
    whitespace at a cut."""
    if limit < 16:
        raise ValueError("a part must hold at least 16 characters")
    parts: list[str] = []
    rest = text
    while utf16_length(rest) > limit:
        cut = _cut(rest, limit)
        head, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if head:
            parts.append(head)
    if rest or not parts:
        parts.append(rest)
    return parts


def _cut(text: str, limit: int) -> int:
    """Where to cut `text` so the head fits `limit`: the last good boundary in its second half."""
    fits = _prefix_fitting(text, limit)
    window = text[:fits]
    for boundary in ("\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " "):
        at = window.rfind(boundary)
        if at >= fits // 2:
            return at + len(boundary)
    return fits


def _prefix_fitting(text: str, limit: int) -> int:
    """The longest prefix (in characters) whose UTF-16 length is at most `limit`, never
    splitting a surrogate pair's character."""
    units = 0
    for index, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)
