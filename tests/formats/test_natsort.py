from __future__ import annotations

import random

from ocrswarm.formats.natsort import natural_key


def test_numbers_compare_by_value() -> None:
    names = ["page_10.tif", "page_2.tif", "page_1.tif", "page_100.tif", "page_9.tif"]
    assert sorted(names, key=natural_key) == [
        "page_1.tif",
        "page_2.tif",
        "page_9.tif",
        "page_10.tif",
        "page_100.tif",
    ]


def test_case_does_not_decide_the_order() -> None:
    names = ["page_10", "Page_3", "page_2", "PAGE_1"]
    assert sorted(names, key=natural_key) == ["PAGE_1", "page_2", "Page_3", "page_10"]


def test_several_number_runs_and_leading_digits() -> None:
    names = ["vol2_p10", "vol10_p1", "vol2_p9", "3b", "10a", "3a"]
    assert sorted(names, key=natural_key) == ["3a", "3b", "10a", "vol2_p9", "vol2_p10", "vol10_p1"]


def test_leading_zeros_sort_with_their_value() -> None:
    names = ["scan_0010", "scan_9", "scan_011", "scan_0002"]
    assert sorted(names, key=natural_key) == ["scan_0002", "scan_9", "scan_0010", "scan_011"]


def test_order_is_total_and_independent_of_input_order() -> None:
    names = ["a1", "A1", "a01", "a1.png", "a1b", "a", "A", "1", "01", ""]
    expected = sorted(names, key=natural_key)
    rng = random.Random(7)
    for _ in range(20):
        shuffled = names[:]
        rng.shuffle(shuffled)
        assert sorted(shuffled, key=natural_key) == expected
    assert len({natural_key(name) for name in names}) == len(names)
