"""The OCR-D page-selection grammar of `-g/--page-id`.

An expression is a comma-separated list of tokens:

- `PHYS_0003`: one page;
- `PHYS_0001..PHYS_0005`: a range. When both ends are pages it runs by position in the
  document; when the end is not a page it expands the number like OCR-D does
  (`PHYS_0001..PHYS_0099` selects the pages among `PHYS_0001`, `PHYS_0002`, ...). The start
  must always be a page;
- `//regex`: every page whose ID matches the regular expression entirely (`re.fullmatch`);
- `~token`: excludes what `token` selects (as in OCR-D); an expression of only exclusions
  starts from all pages.

The result is in document order without duplicates. A token that selects nothing is an
error naming it, never a silently empty run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ocrswarm.errors import PageSelectionError

REGEX_PREFIX = "//"
EXCLUDE_PREFIX = "~"
RANGE_SEPARATOR = ".."
_LAST_NUMBER = re.compile(r"^(.*?)([0-9]+)$")


def select_pages(expression: str | None, page_ids: Sequence[str]) -> list[str]:
    """The page IDs that `expression` selects, in the order of `page_ids`."""
    if expression is None or not expression.strip():
        return list(page_ids)
    position = {page_id: index for index, page_id in enumerate(page_ids)}
    included: set[str] = set()
    excluded: set[str] = set()
    has_inclusion = False
    for raw_token in expression.split(","):
        token = raw_token.strip()
        target = included
        if token.startswith(EXCLUDE_PREFIX):
            token = token[len(EXCLUDE_PREFIX) :].strip()
            target = excluded
        else:
            has_inclusion = True
        if not token:
            raise PageSelectionError(f"empty page selector in {expression!r}")
        target.update(_select_token(token, page_ids, position))
    if not has_inclusion:
        included = set(page_ids)
    selected = [page_id for page_id in page_ids if page_id in included and page_id not in excluded]
    if not selected:
        raise PageSelectionError(f"page selection {expression!r} selects no page")
    return selected


def _select_token(token: str, page_ids: Sequence[str], position: dict[str, int]) -> list[str]:
    if token.startswith(REGEX_PREFIX):
        return _select_regex(token, page_ids)
    if RANGE_SEPARATOR in token:
        start, end = (part.strip() for part in token.split(RANGE_SEPARATOR, 1))
        return _select_range(token, start, end, page_ids, position)
    if token not in position:
        raise PageSelectionError(f"page {token!r} is not in the document")
    return [token]


def _select_regex(token: str, page_ids: Sequence[str]) -> list[str]:
    pattern_text = token[len(REGEX_PREFIX) :]
    if not pattern_text:
        raise PageSelectionError(f"empty regular expression in page selector {token!r}")
    try:
        pattern = re.compile(pattern_text)
    except re.error as error:
        raise PageSelectionError(f"invalid regular expression {pattern_text!r}: {error}") from None
    matches = [page_id for page_id in page_ids if pattern.fullmatch(page_id)]
    if not matches:
        raise PageSelectionError(f"page selector {token!r} matches no page")
    return matches


def _select_range(
    token: str, start: str, end: str, page_ids: Sequence[str], position: dict[str, int]
) -> list[str]:
    if not start or not end:
        raise PageSelectionError(f"page range {token!r} needs a start and an end")
    if start not in position:
        raise PageSelectionError(f"start of page range {token!r}: {start!r} is not in the document")
    if end in position:
        first, last = position[start], position[end]
        if first > last:
            raise PageSelectionError(f"page range {token!r} runs backwards")
        return list(page_ids[first : last + 1])
    return _numbered_between(token, start, end, page_ids)


def _numbered_between(token: str, start: str, end: str, page_ids: Sequence[str]) -> list[str]:
    """OCR-D's range when the end is no page: `P_0008..P_0011` means P_0008, P_0009, ... P_0011.

    Filters the pages instead of expanding the numbers, so `P_1..P_999999999` costs nothing.
    """
    start_match, end_match = _LAST_NUMBER.match(start), _LAST_NUMBER.match(end)
    if start_match is None or end_match is None:
        raise PageSelectionError(
            f"page range {token!r}: {end!r} is not in the document "
            "and the ends do not end in numbers"
        )
    prefix, first_digits = start_match.groups()
    end_prefix, last_digits = end_match.groups()
    if prefix != end_prefix:
        raise PageSelectionError(f"page range {token!r}: the ends differ before their numbers")
    first, last = int(first_digits), int(last_digits)
    if first > last:
        raise PageSelectionError(f"page range {token!r} runs backwards")
    width = len(first_digits)
    selected = []
    for page_id in page_ids:
        match = _LAST_NUMBER.match(page_id)
        if match is None or match.group(1) != prefix:
            continue
        digits = match.group(2)
        number = int(digits)
        if first <= number <= last and digits == f"{number:0{width}d}":
            selected.append(page_id)
    return selected
