"""What every fault test demands of the outcome, read from the METS and the store directly.

The METS is parsed here with lxml rather than with ocrswarm's own `Mets`, so that a bug in
that class cannot hide a duplicate: files are counted per (fileGrp, page) from the fileGrps
and the physical structMap's fptrs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from lxml import etree
from sqlalchemy import create_engine, text

from ocrswarm.engine.database import database_url
from ocrswarm.formats.workspace import Workspace

METS = "http://www.loc.gov/METS/"
NS = {"mets": METS}


def outputs_per_page(mets_path: Path, file_grp: str) -> tuple[list[str], Counter[str]]:
    """The physical pages of the METS, in order, and how many files of `file_grp` each has."""
    tree = etree.parse(str(mets_path))
    grp_files = set(
        tree.xpath("//mets:fileGrp[@USE=$grp]/mets:file/@ID", namespaces=NS, grp=file_grp)
    )
    pages: list[str] = []
    counts: Counter[str] = Counter()
    for div in tree.xpath(
        "//mets:structMap[@TYPE='PHYSICAL']//mets:div[@TYPE='page']", namespaces=NS
    ):
        page = div.get("ID")
        pages.append(page)
        for file_id in div.xpath("mets:fptr/@FILEID", namespaces=NS):
            if file_id in grp_files:
                counts[page] += 1
    referenced = sum(counts.values())
    assert referenced == len(grp_files), (
        f"{file_grp}: {len(grp_files)} files listed, {referenced} referenced by pages"
    )
    return pages, counts


def assert_one_output_per_page(mets_path: Path, file_grps: Sequence[str], pages: int) -> None:
    """Every one of the `pages` pages has exactly one file in each of `file_grps`."""
    for file_grp in file_grps:
        page_ids, counts = outputs_per_page(mets_path, file_grp)
        assert len(page_ids) == pages
        wrong = {page: counts[page] for page in page_ids if counts[page] != 1}
        assert not wrong, f"{file_grp}: pages without exactly one output: {wrong}"
    ids = etree.parse(str(mets_path)).xpath("//mets:file/@ID", namespaces=NS)
    assert len(ids) == len(set(ids)), "a file ID appears twice"


def assert_mets_valid(mets_path: Path) -> None:
    """The METS passes the workspace validation (schema, files present, one page each)."""
    problems = Workspace.open(mets_path).validate()
    assert problems == [], problems


def assert_nothing_running(db_url: str) -> None:
    """No workflow job, processing job or page task of the store is RUNNING or waiting:
    every one has finished."""
    engine = create_engine(database_url(db_url))
    try:
        with engine.connect() as connection:
            for table in ("workflow_jobs", "jobs", "tasks"):
                query = text(f"SELECT state, count(*) FROM {table} GROUP BY state")
                states: dict[str, int] = {row[0]: row[1] for row in connection.execute(query)}
                assert set(states) == {"SUCCESS"}, f"{table}: {states}"
    finally:
        engine.dispose()
