from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from lxml import etree

from ocrswarm.errors import FormatError, MetsError, UnsafeInputError
from ocrswarm.formats.mets import MIMETYPE_PAGE, NAMESPACES, Mets, MetsFile

BEBEL = "bebel_frau_1879/mets.xml"
KANT = "kant_aufklaerung_1784/data/mets.xml"


def sample_mets(pages: int = 3) -> Mets:
    mets = Mets.empty("urn:test:sample")
    for n in range(1, pages + 1):
        page = f"PHYS_{n:04d}"
        mets.add_file("OCR-D-IMG", f"OCR-D-IMG_{n:04d}", f"OCR-D-IMG/{n}.tif", "image/tiff", page)
        mets.add_file("OCR-D-OCR", f"OCR-D-OCR_{n:04d}", f"OCR-D-OCR/{n}.xml", MIMETYPE_PAGE, page)
    return mets


def scan(mets: Mets) -> dict[str, tuple[str, str, str | None, str]]:
    """Every file as a walk over the serialised tree sees it: id -> (grp, mime, page, href)."""
    root = etree.fromstring(mets.to_bytes())
    pages = {
        fptr.get("FILEID"): fptr.getparent().get("ID")
        for fptr in root.xpath(
            "mets:structMap[@TYPE='PHYSICAL']/mets:div/mets:div/mets:fptr", namespaces=NAMESPACES
        )
    }
    return {
        file.get("ID"): (
            file.getparent().get("USE"),
            file.get("MIMETYPE"),
            pages.get(file.get("ID")),
            file.find("mets:FLocat", NAMESPACES).get("{http://www.w3.org/1999/xlink}href"),
        )
        for file in root.xpath("mets:fileSec/mets:fileGrp/mets:file", namespaces=NAMESPACES)
    }


def as_scan(files: list[MetsFile]) -> dict[str, tuple[str, str, str | None, str]]:
    return {f.id: (f.file_grp, f.mimetype, f.page_id, f.href) for f in files}


# ---- creating -------------------------------------------------------------------------------


def test_empty_mets_is_valid_and_has_its_identifier() -> None:
    mets = Mets.empty("https://example.org/book/1")
    assert mets.validate_schema() == []
    assert mets.unique_identifier == "https://example.org/book/1"
    assert mets.page_ids == []
    assert mets.file_groups == []
    assert mets.files == []
    reopened = Mets.from_bytes(mets.to_bytes())
    assert reopened.unique_identifier == "https://example.org/book/1"
    assert reopened.validate_schema() == []


def test_identifier_can_be_set_later() -> None:
    mets = Mets.empty()
    assert mets.unique_identifier is None
    mets.unique_identifier = "urn:x:1"
    mets.unique_identifier = "urn:x:2"
    assert Mets.from_bytes(mets.to_bytes()).unique_identifier == "urn:x:2"
    assert mets.validate_schema() == []


def test_serialisation_starts_with_a_declaration() -> None:
    data = Mets.empty().to_bytes()
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<mets:mets')
    assert data.endswith(b"</mets:mets>\n")


def test_add_files_creates_groups_and_pages() -> None:
    mets = sample_mets(3)
    assert mets.file_groups == ["OCR-D-IMG", "OCR-D-OCR"]
    assert mets.page_ids == ["PHYS_0001", "PHYS_0002", "PHYS_0003"]
    assert len(mets.files) == 6
    assert mets.validate_schema() == []
    assert as_scan(mets.files) == scan(mets)


def test_local_and_url_locations() -> None:
    mets = Mets.empty()
    local = mets.add_file("IMG", "IMG_1", "IMG/a.tif", "image/tiff", "P1")
    remote = mets.add_file("IMG", "IMG_2", "https://example.org/b.jpg", "image/jpeg", "P2")
    assert (local.loctype, local.is_url) == ("OTHER", False)
    assert (remote.loctype, remote.is_url) == ("URL", True)
    root = etree.fromstring(mets.to_bytes())
    flocats = root.xpath("//mets:FLocat", namespaces=NAMESPACES)
    assert [dict(f.attrib) for f in flocats] == [
        {
            "LOCTYPE": "OTHER",
            "OTHERLOCTYPE": "FILE",
            "{http://www.w3.org/1999/xlink}href": "IMG/a.tif",
        },
        {"LOCTYPE": "URL", "{http://www.w3.org/1999/xlink}href": "https://example.org/b.jpg"},
    ]
    assert mets.validate_schema() == []


def test_file_without_page() -> None:
    mets = Mets.empty()
    file = mets.add_file("OCR-D-IMG", "OCR-D-IMG_0001", "a.tif", "image/tiff")
    assert file.page_id is None
    assert mets.page_ids == []
    assert mets.find_files(file_grp="OCR-D-IMG") == [file]


# ---- finding --------------------------------------------------------------------------------


def test_find_files_by_every_criterion() -> None:
    mets = sample_mets(3)
    image_2 = mets.get_file("OCR-D-IMG_0002")
    assert image_2 == MetsFile(
        "OCR-D-IMG_0002", "OCR-D-IMG", "image/tiff", "PHYS_0002", "OCR-D-IMG/2.tif", "OTHER"
    )
    assert mets.find_files(file_id="OCR-D-IMG_0002") == [image_2]
    assert mets.find_files(page_id="PHYS_0002", file_grp="OCR-D-IMG") == [image_2]
    assert [f.id for f in mets.find_files(page_id="PHYS_0002")] == [
        "OCR-D-IMG_0002",
        "OCR-D-OCR_0002",
    ]
    assert [f.id for f in mets.find_files(mimetype=MIMETYPE_PAGE)] == [
        "OCR-D-OCR_0001",
        "OCR-D-OCR_0002",
        "OCR-D-OCR_0003",
    ]
    assert [f.id for f in mets.find_files(file_grp="OCR-D-OCR", mimetype=MIMETYPE_PAGE)] == [
        "OCR-D-OCR_0001",
        "OCR-D-OCR_0002",
        "OCR-D-OCR_0003",
    ]
    assert mets.find_files(file_id="OCR-D-IMG_0002", page_id="PHYS_0001") == []
    assert mets.find_files(file_id="OCR-D-IMG_0002", file_grp="OCR-D-OCR") == []
    assert mets.find_files(file_grp="NOPE") == []
    assert mets.find_files(page_id="NOPE") == []
    assert mets.find_files() == mets.files


def test_get_unknown_file_names_it() -> None:
    with pytest.raises(MetsError, match="NOPE_1"):
        sample_mets().get_file("NOPE_1")


def test_snapshots_do_not_change_with_the_document() -> None:
    mets = sample_mets(1)
    before = mets.get_file("OCR-D-IMG_0001")
    mets.set_href("OCR-D-IMG_0001", "elsewhere.tif")
    assert before.href == "OCR-D-IMG/1.tif"
    assert mets.get_file("OCR-D-IMG_0001").href == "elsewhere.tif"


# ---- changing -------------------------------------------------------------------------------


def test_duplicate_file_id_is_refused_unless_replaced() -> None:
    mets = sample_mets(2)
    with pytest.raises(MetsError, match="OCR-D-IMG_0001"):
        mets.add_file("OCR-D-IMG", "OCR-D-IMG_0001", "x.png", "image/png", "PHYS_0001")
    replaced = mets.add_file(
        "OCR-D-IMG", "OCR-D-IMG_0001", "x.png", "image/png", "PHYS_0002", replace=True
    )
    assert replaced == MetsFile(
        "OCR-D-IMG_0001", "OCR-D-IMG", "image/png", "PHYS_0002", "x.png", "OTHER"
    )
    # Replaced in place: still first in its group, and listed once.
    assert [f.id for f in mets.find_files(file_grp="OCR-D-IMG")] == [
        "OCR-D-IMG_0001",
        "OCR-D-IMG_0002",
    ]
    assert mets.find_files(page_id="PHYS_0001", file_grp="OCR-D-IMG") == []
    assert mets.find_files(mimetype="image/png") == [replaced]
    assert as_scan(mets.files) == scan(mets)
    assert mets.validate_schema() == []


def test_replace_into_another_group_moves_the_file() -> None:
    mets = sample_mets(1)
    moved = mets.add_file(
        "OCR-D-BIN", "OCR-D-IMG_0001", "b.png", "image/png", "PHYS_0001", replace=True
    )
    assert moved.file_grp == "OCR-D-BIN"
    assert mets.find_files(file_grp="OCR-D-IMG") == []
    assert as_scan(mets.files) == scan(mets)


def test_remove_file_removes_its_fptr() -> None:
    mets = sample_mets(2)
    removed = mets.remove_file("OCR-D-OCR_0001")
    assert removed.id == "OCR-D-OCR_0001"
    assert b"OCR-D-OCR_0001" not in mets.to_bytes()
    assert mets.find_files(page_id="PHYS_0001") == [mets.get_file("OCR-D-IMG_0001")]
    assert mets.validate_schema() == []
    with pytest.raises(MetsError):
        mets.remove_file("OCR-D-OCR_0001")


def test_remove_file_group() -> None:
    mets = sample_mets(2)
    with pytest.raises(MetsError, match="still has 2 files"):
        mets.remove_file_group("OCR-D-OCR")
    removed = mets.remove_file_group("OCR-D-OCR", recursive=True)
    assert [f.id for f in removed] == ["OCR-D-OCR_0001", "OCR-D-OCR_0002"]
    assert mets.file_groups == ["OCR-D-IMG"]
    assert b"OCR-D-OCR" not in mets.to_bytes()
    with pytest.raises(MetsError, match="no fileGrp"):
        mets.remove_file_group("OCR-D-OCR")
    assert mets.validate_schema() == []


def test_removing_the_last_group_keeps_the_document_valid() -> None:
    mets = sample_mets(1)
    mets.remove_file_group("OCR-D-IMG", recursive=True)
    mets.remove_file_group("OCR-D-OCR", recursive=True)
    assert mets.file_groups == []
    assert mets.validate_schema() == []  # an empty fileSec would not be
    mets.add_file("NEW", "NEW_1", "n.xml", MIMETYPE_PAGE, "PHYS_0001")
    assert mets.validate_schema() == []


def test_an_empty_group_can_be_removed_without_recursive() -> None:
    mets = sample_mets(1)
    mets.remove_file("OCR-D-OCR_0001")
    assert mets.remove_file_group("OCR-D-OCR") == []


def test_pages_follow_order() -> None:
    mets = Mets.empty()
    mets.add_page("PHYS_0003", order=3)
    mets.add_page("PHYS_0001", order=1, label="first")
    mets.add_page("PHYS_0002", order=2)
    mets.add_page("PHYS_0004")  # continues the numbering
    assert mets.page_ids == ["PHYS_0001", "PHYS_0002", "PHYS_0003", "PHYS_0004"]
    root = etree.fromstring(mets.to_bytes())
    divs = root.xpath("//mets:div[@TYPE='page']", namespaces=NAMESPACES)
    assert [(d.get("ID"), d.get("ORDER")) for d in divs] == [
        ("PHYS_0001", "1"),
        ("PHYS_0002", "2"),
        ("PHYS_0003", "3"),
        ("PHYS_0004", "4"),
    ]
    assert divs[0].get("LABEL") == "first"
    assert mets.validate_schema() == []


def test_page_order_of_read_documents() -> None:
    def document(pages: str) -> bytes:
        return (
            b'<mets:mets xmlns:mets="http://www.loc.gov/METS/"><mets:structMap TYPE="PHYSICAL">'
            b'<mets:div TYPE="physSequence">' + pages.encode() + b"</mets:div></mets:structMap>"
            b"</mets:mets>"
        )

    by_order = '<mets:div ID="b" ORDER="2"/><mets:div ID="a" ORDER="1"/>'
    assert Mets.from_bytes(document(by_order)).page_ids == ["a", "b"]
    partial = '<mets:div ID="b" ORDER="2"/><mets:div ID="a"/>'
    assert Mets.from_bytes(document(partial)).page_ids == ["b", "a"]


def test_duplicate_page_is_refused() -> None:
    mets = sample_mets(1)
    with pytest.raises(MetsError, match="PHYS_0001"):
        mets.add_page("PHYS_0001")


@pytest.mark.parametrize("bad_id", ["", "1abc", "a b", "a/b", "a:b", "-x"])
def test_invalid_ids_are_refused(bad_id: str) -> None:
    mets = Mets.empty()
    with pytest.raises(MetsError, match="xs:ID"):
        mets.add_file("GRP", bad_id, "a.tif", "image/tiff")
    with pytest.raises(MetsError, match="xs:ID"):
        mets.add_page(bad_id)


@pytest.mark.parametrize("bad_group", ["", "a,b", "a b", "../x", "a/b", ".", "x:y"])
def test_invalid_file_group_names_are_refused(bad_group: str) -> None:
    with pytest.raises(MetsError, match="fileGrp"):
        Mets.empty().add_file(bad_group, "F_1", "a.tif", "image/tiff")


def test_text_xml_cannot_carry_is_refused() -> None:
    mets = Mets.empty()
    with pytest.raises(MetsError, match="href"):
        mets.add_file("GRP", "F_1", "a\x00.tif", "image/tiff")
    with pytest.raises(MetsError, match="MIME type"):
        mets.add_file("GRP", "F_1", "a.tif", "")
    assert mets.files == []


def test_ids_of_other_sections_are_not_reused() -> None:
    mets = Mets.empty("urn:x")  # has dmdSec DMDLOG_0001
    with pytest.raises(MetsError, match="DMDLOG_0001"):
        mets.add_file("GRP", "DMDLOG_0001", "a.tif", "image/tiff")
    with pytest.raises(MetsError, match="already used"):
        sample_mets(1).add_page("OCR-D-IMG_0001")


@pytest.mark.parametrize("seed", [1234, 7, 99, 2024])
def test_random_mutations_keep_indexes_equal_to_a_tree_walk(seed: int) -> None:
    """The indexes must answer exactly what re-reading the written document answers."""
    rng = random.Random(seed)
    mets = Mets.empty("urn:test:random")
    groups = ["OCR-D-IMG", "OCR-D-BIN", "OCR-D-SEG", "OCR-D-OCR"]
    next_id = 0
    for _ in range(600):
        existing = [f.id for f in mets.files]
        action = rng.random()
        if action < 0.55 or not existing:
            next_id += 1
            group = rng.choice(groups)
            page = rng.choice([None, *(f"PHYS_{n:04d}" for n in range(1, 25))])
            mets.add_file(
                group, f"{group}_{next_id:04d}", f"{group}/{next_id}.xml", MIMETYPE_PAGE, page
            )
        elif action < 0.7:
            victim = rng.choice(existing)
            mets.add_file(
                rng.choice(groups),
                victim,
                f"r/{victim}.png",
                "image/png",
                rng.choice([None, "PHYS_0001", "PHYS_0030"]),
                replace=True,
            )
        elif action < 0.85:
            mets.remove_file(rng.choice(existing))
        elif action < 0.95:
            mets.set_href(rng.choice(existing), f"moved/{rng.random()}.xml")
        else:
            group = rng.choice(mets.file_groups)
            mets.remove_file_group(group, recursive=True)
    reread = Mets.from_bytes(mets.to_bytes())
    assert as_scan(mets.files) == scan(mets)
    assert mets.files == reread.files
    assert mets.page_ids == reread.page_ids
    assert mets.file_groups == reread.file_groups
    for page in mets.page_ids:
        assert mets.find_files(page_id=page) == reread.find_files(page_id=page)
        for group in mets.file_groups:
            assert mets.find_files(page_id=page, file_grp=group) == reread.find_files(
                page_id=page, file_grp=group
            )
    for mimetype in ("image/png", MIMETYPE_PAGE):
        assert mets.find_files(mimetype=mimetype) == reread.find_files(mimetype=mimetype)
    assert mets.validate_schema() == []


# ---- agents ---------------------------------------------------------------------------------


def test_processor_agent() -> None:
    mets = sample_mets(1)
    mets.add_agent(
        "ocrd-tesserocr-recognize 0.19.0",
        otherrole="recognition/text-recognition",
        notes={"input-file-grp": "OCR-D-IMG", "parameter": '{"model": "deu"}'},
    )
    agents = mets.agents
    assert agents[0].role == "CREATOR" and agents[0].name.startswith("ocrswarm")
    agent = agents[-1]
    assert (agent.type, agent.othertype, agent.role, agent.otherrole) == (
        "OTHER",
        "SOFTWARE",
        "OTHER",
        "recognition/text-recognition",
    )
    assert agent.notes == (("input-file-grp", "OCR-D-IMG"), ("parameter", '{"model": "deu"}'))
    assert Mets.from_bytes(mets.to_bytes()).agents == agents
    assert mets.validate_schema() == []


def test_agent_roles_are_checked() -> None:
    with pytest.raises(MetsError, match="role"):
        Mets.empty().add_agent("x", role="WIZARD")
    with pytest.raises(MetsError, match="type"):
        Mets.empty().add_agent("x", type="ROBOT")


def test_agent_added_to_a_document_without_header() -> None:
    mets = Mets.from_bytes(
        b'<mets:mets xmlns:mets="http://www.loc.gov/METS/"><mets:structMap TYPE="PHYSICAL">'
        b'<mets:div TYPE="physSequence"/></mets:structMap></mets:mets>'
    )
    mets.add_agent("ocrd-dummy", otherrole="preprocessing")
    assert [a.name for a in mets.agents] == ["ocrd-dummy"]
    assert mets.validate_schema() == []


# ---- reading what others wrote -------------------------------------------------------------


def test_document_without_physical_structmap_gets_one() -> None:
    mets = Mets.from_bytes(b'<mets:mets xmlns:mets="http://www.loc.gov/METS/"/>')
    assert mets.page_ids == []
    mets.add_file("GRP", "GRP_1", "a.tif", "image/tiff", "P_1")
    assert mets.page_ids == ["P_1"]
    assert mets.validate_schema() == []


def test_dangling_fptr_is_reported_and_replaced_when_the_file_arrives() -> None:
    mets = Mets.from_bytes(
        b'<mets:mets xmlns:mets="http://www.loc.gov/METS/"><mets:structMap TYPE="PHYSICAL">'
        b'<mets:div TYPE="physSequence"><mets:div ID="P_1" TYPE="page">'
        b'<mets:fptr FILEID="F_1"/></mets:div></mets:div></mets:structMap></mets:mets>'
    )
    assert mets.dangling_fptrs == [("P_1", "F_1")]
    mets.add_file("GRP", "F_1", "a.tif", "image/tiff", "P_1")
    assert mets.dangling_fptrs == []
    assert mets.to_bytes().count(b'FILEID="F_1"') == 1
    assert mets.validate_schema() == []


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"<root/>", "not a METS"),
        (
            b'<mets:mets xmlns:mets="http://www.loc.gov/METS/"><mets:fileSec>'
            b'<mets:fileGrp USE="A"><mets:file ID="F"/></mets:fileGrp>'
            b'<mets:fileGrp USE="B"><mets:file ID="F"/></mets:fileGrp></mets:fileSec></mets:mets>',
            "file ID 'F' appears twice",
        ),
        (
            b'<mets:mets xmlns:mets="http://www.loc.gov/METS/"><mets:fileSec>'
            b'<mets:fileGrp USE="A"/><mets:fileGrp USE="A"/></mets:fileSec></mets:mets>',
            "USE 'A' appears twice",
        ),
        (
            b'<mets:mets xmlns:mets="http://www.loc.gov/METS/"><mets:fileSec>'
            b'<mets:fileGrp USE="A"><mets:file MIMETYPE="image/png"/></mets:fileGrp>'
            b"</mets:fileSec></mets:mets>",
            "has no ID",
        ),
        (
            b'<mets:mets xmlns:mets="http://www.loc.gov/METS/"><mets:structMap TYPE="PHYSICAL">'
            b'<mets:div><mets:div ID="P"/><mets:div ID="P"/></mets:div></mets:structMap>'
            b"</mets:mets>",
            "page ID 'P' appears twice",
        ),
        (
            b'<mets:mets xmlns:mets="http://www.loc.gov/METS/"><mets:dmdSec ID="X"/>'
            b'<mets:amdSec ID="X"/></mets:mets>',
            "IDs appear more than once: X",
        ),
    ],
)
def test_malformed_documents_are_refused(document: bytes, message: str) -> None:
    with pytest.raises(MetsError, match=message):
        Mets.from_bytes(document)


def test_hostile_and_broken_xml() -> None:
    with pytest.raises(UnsafeInputError):
        Mets.from_bytes(
            b'<!DOCTYPE m [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b'<mets:mets xmlns:mets="http://www.loc.gov/METS/">&e;</mets:mets>'
        )
    with pytest.raises(FormatError, match="not well-formed"):
        Mets.from_bytes(b"<mets:mets")


def test_read_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match=r"nothere\.xml"):
        Mets.read(tmp_path / "nothere.xml")


# ---- saving ---------------------------------------------------------------------------------


def test_save_and_read_round_trip(tmp_path: Path) -> None:
    mets = sample_mets(4)
    path = tmp_path / "mets.xml"
    mets.save(path)
    reopened = Mets.read(path)
    assert reopened.files == mets.files
    assert reopened.page_ids == mets.page_ids
    assert reopened.to_bytes() == mets.to_bytes()


def test_failed_save_leaves_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mets.xml"
    sample_mets(1).save(path)
    before = path.read_bytes()
    changed = sample_mets(5)

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        changed.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mets.xml"]


# ---- the real METS files in ../shared/data ---------------------------------------------------


def test_bebel_with_its_remote_default_group(shared_data: Path, tmp_path: Path) -> None:
    mets = Mets.read(shared_data / BEBEL)
    assert mets.file_groups == [
        "DEFAULT",
        "OCR-D-IMG",
        "OCR-D-GT-SEG-PAGE",
        "OCR-D-GT-SEG-BLOCK",
        "OCR-D-GT-SEG-LINE",
    ]
    assert mets.page_ids == ["phys_0001", "phys_0002", "phys_0003", "phys_0004"]
    assert mets.unique_identifier == "urn:oclc:record:1043031933"
    remote = mets.find_files(file_grp="DEFAULT")
    assert len(remote) == 4
    assert all(f.is_url and f.loctype == "URL" for f in remote)
    assert remote[0].href == (
        "http://media.dwds.de/dta/images/bebel_frau_1879/bebel_frau_1879_0146_800px.jpg"
    )
    image = mets.find_files(page_id="phys_0002", file_grp="OCR-D-IMG")
    assert [f.href for f in image] == ["GT-PAGE/bebel_frau_1879_0168.tif"]
    assert len(mets.find_files(page_id="phys_0003")) == 5

    mets.add_agent("ocrswarm-test", otherrole="recognition/text-recognition")
    mets.add_file("OCR-D-OCR", "OCR-D-OCR_0001", "OCR-D-OCR/1.xml", MIMETYPE_PAGE, "phys_0001")
    path = tmp_path / "mets.xml"
    mets.save(path)
    reopened = Mets.read(path)
    assert reopened.files == mets.files
    assert reopened.find_files(file_grp="DEFAULT") == remote
    assert len(reopened.agents) == 2
    assert reopened.validate_schema() == []


def test_kant_round_trip_is_byte_identical(shared_data: Path, tmp_path: Path) -> None:
    original = (shared_data / KANT).read_bytes()
    mets = Mets.read(shared_data / KANT)
    assert mets.page_ids == ["PHYS_0017", "PHYS_0020"]
    assert [f.id for f in mets.find_files(page_id="PHYS_0020")] == [
        "INPUT_0020",
        "PAGE_0020_PAGE",
        "PAGE_0020_ALTO",
    ]
    assert mets.to_bytes() == original
    mets.save(tmp_path / "mets.xml")
    assert Mets.read(tmp_path / "mets.xml").files == mets.files


def test_real_documents_validate(shared_data: Path) -> None:
    for relative in (BEBEL, KANT):
        assert Mets.read(shared_data / relative).validate_schema() == [], relative
