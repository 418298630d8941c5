"""Fixtures shared by the whole suite: real data, rendered pages, and honest skips."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.render import render_page

REPO = Path(__file__).resolve().parent.parent


def require_or_skip(reason: str) -> None:
    """Skip with a visible reason, or fail when CI demands every component be present.

    `.ci/run` sets OCRSWARM_REQUIRE_ALL=1 so that CI can never pass by skipping.
    """
    if os.environ.get("OCRSWARM_REQUIRE_ALL") == "1":
        pytest.fail(f"required component missing (OCRSWARM_REQUIRE_ALL=1): {reason}")
    pytest.skip(reason)


def _shared(part: str) -> Path:
    """A folder of ../shared (or $OCRSWARM_SHARED); a skip, not a failure, when absent.

    The project never needs ../shared to run; tests use its real data when it is there.
    """
    folder = Path(os.environ.get("OCRSWARM_SHARED", REPO.parent / "shared")) / part
    if not folder.is_dir():
        pytest.skip(f"shared {part} not present at {folder}")
    return folder


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real OCR-D scans in ../shared/data."""
    return _shared("data")


@pytest.fixture(scope="session")
def shared_spec() -> Path:
    """The OCR-D specs in ../shared/spec."""
    return _shared("spec")


@pytest.fixture
def image_dir(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a folder of rendered page images with known text, named for natural sort."""

    def make(
        count: int = 3,
        *,
        suffix: str = ".png",
        name: str = "page_{n}",
        size: tuple[int, int] = (1240, 1754),
    ) -> Path:
        folder = tmp_path / "scans"
        folder.mkdir(exist_ok=True)
        for n in range(1, count + 1):
            render_page(
                folder / (name.format(n=n) + suffix),
                [f"Page {n} of the sample", "The quick brown fox jumps", "over the lazy dog."],
                size=size,
            )
        return folder

    return make
