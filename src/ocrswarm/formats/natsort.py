"""Natural sort order: `page_2` before `page_10`, the way people number their scans."""

from __future__ import annotations

import re

_DIGITS = re.compile(r"([0-9]+)")

NaturalKey = tuple[tuple[int, str], ...]


def natural_key(text: str) -> NaturalKey:
    """Sort key comparing digit runs by value and everything else case-insensitively.

    `re.split` alternates text and digit runs, so two keys always compare text with text and
    numbers with numbers. The last element (the original text) makes the order total:
    `Page_1` and `page_1`, or `p01` and `p1`, never compare equal.
    """
    chunks = _DIGITS.split(text)
    key = [
        (int(chunk), chunk) if position % 2 else (0, chunk.casefold())
        for position, chunk in enumerate(chunks)
    ]
    key.append((0, text))
    return tuple(key)
