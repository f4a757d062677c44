"""Red-flag words in what participants write, matched whatever the case or accents.

"Tengo FIEBRE", "tengo fiebre" and "fiébre" all match "fiebre"; a phrase matches on word
boundaries, so "pus" matches "there is pus" but not "push".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable


def fold(text: str) -> str:
    """Lower case, accents removed, apostrophes unified, runs of spaces collapsed."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().replace("’", "'"))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return re.sub(r"\s+", " ", bare).strip()


def matches(text: str, phrases: Iterable[str]) -> list[str]:
    """The phrases found in `text`, in the order given."""
    folded = fold(text)
    found = []
    for phrase in phrases:
        pattern = r"(?<!\w)" + re.escape(fold(phrase)) + r"(?!\w)"
        if re.search(pattern, folded):
            found.append(phrase)
    return found
