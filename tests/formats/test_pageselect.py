from __future__ import annotations

import pytest

from ocrswarm.errors import PageSelectionError, UsageError
from ocrswarm.formats.pageselect import select_pages

PAGES = [f"PHYS_{n:04d}" for n in range(1, 11)]


@pytest.mark.parametrize("expression", [None, "", "  "])
def test_no_expression_selects_every_page(expression: str | None) -> None:
    assert select_pages(expression, PAGES) == PAGES


def test_list_comes_back_in_document_order_without_duplicates() -> None:
    assert select_pages("PHYS_0005,PHYS_0002,PHYS_0005", PAGES) == ["PHYS_0002", "PHYS_0005"]


def test_spaces_around_tokens_are_ignored() -> None:
    assert select_pages(" PHYS_0001 , PHYS_0003 ", PAGES) == ["PHYS_0001", "PHYS_0003"]


def test_range_is_inclusive() -> None:
    assert select_pages("PHYS_0003..PHYS_0005", PAGES) == ["PHYS_0003", "PHYS_0004", "PHYS_0005"]


def test_range_runs_by_document_position_when_both_ends_are_pages() -> None:
    pages = ["cover", "p1", "p2", "plate", "p3", "back"]
    assert select_pages("p2..back", pages) == ["p2", "plate", "p3", "back"]


def test_range_with_an_absent_end_expands_numbers_like_ocrd() -> None:
    assert select_pages("PHYS_0008..PHYS_0099", PAGES) == ["PHYS_0008", "PHYS_0009", "PHYS_0010"]


def test_numeric_range_keeps_the_number_width() -> None:
    pages = ["p_1", "p_01", "p_2", "p_02"]
    assert select_pages("p_01..p_05", pages) == ["p_01", "p_02"]


def test_a_huge_numeric_range_is_not_materialised() -> None:
    # Expanding this would need gigabytes; filtering the pages costs nothing.
    assert select_pages("PHYS_0009..PHYS_9999999999", PAGES) == ["PHYS_0009", "PHYS_0010"]


def test_regex_must_match_the_whole_id() -> None:
    assert select_pages("//PHYS_000[13]", PAGES) == ["PHYS_0001", "PHYS_0003"]
    with pytest.raises(PageSelectionError, match="matches no page"):
        select_pages("//PHYS_000", PAGES)


def test_mixed_list_of_pages_ranges_and_regexes() -> None:
    selected = select_pages("//.*10,PHYS_0001,PHYS_0004..PHYS_0005", PAGES)
    assert selected == ["PHYS_0001", "PHYS_0004", "PHYS_0005", "PHYS_0010"]


def test_exclusions() -> None:
    assert select_pages("~PHYS_0002", PAGES) == [p for p in PAGES if p != "PHYS_0002"]
    assert select_pages("PHYS_0001..PHYS_0004,~//PHYS_000[23]", PAGES) == [
        "PHYS_0001",
        "PHYS_0004",
    ]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("PHYS_0042", "PHYS_0042"),
        ("PHYS_0001,PHYS_0042", "PHYS_0042"),
        ("PHYS_0042..PHYS_0044", "PHYS_0042"),
        ("PHYS_0005..PHYS_0002", "backwards"),
        ("PHYS_0005..OTHER_0009", "differ"),
        ("PHYS_0001..", "start and an end"),
        ("PHYS_0001,,PHYS_0002", "empty"),
        ("//", "empty regular expression"),
        ("//(unclosed", "invalid regular expression"),
        ("~//.*", "selects no page"),
    ],
)
def test_errors_name_the_problem(expression: str, message: str) -> None:
    with pytest.raises(PageSelectionError, match=message):
        select_pages(expression, PAGES)


def test_selection_errors_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        select_pages("nope", PAGES)
