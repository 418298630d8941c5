"""The streamed METS: splicing files, pages and agents into the document on disk."""

from __future__ import annotations

import difflib
import random
from pathlib import Path

import pytest

from ocrswarm.errors import FormatError, MetsError, UnsafeInputError
from ocrswarm.formats.mets import MIMETYPE_PAGE, NS_METS, NS_XLINK, Agent, Mets
from ocrswarm.formats.metsstream import (
    MetsAppender,
    NewFile,
    NewPage,
    read_outline,
)

BEBEL = "bebel_frau_1879/mets.xml"
AGENT = Agent(
    name="ocrd-swarm-recognize v0.1.0",
    role="OTHER",
    type="OTHER",
    othertype="SOFTWARE",
    otherrole="recognition/text-recognition",
    notes=(("input-file-grp", "OCR-D-IMG"), ("parameter", '{"model": "eng", "x": "<&>"}')),
)


def book(tmp_path: Path, pages: int = 5, *, groups: tuple[str, ...] = ("OCR-D-IMG",)) -> Path:
    """A METS of `pages` pages, a file each in `groups`, written by `Mets`."""
    mets = Mets.empty("urn:test:stream")
    for n in range(1, pages + 1):
        for grp in groups:
            mets.add_file(grp, f"{grp}_{n:04d}", f"{grp}/{n}.png", "image/png", page(n))
    path = tmp_path / "mets.xml"
    mets.save(path)
    return path


def page(number: int) -> str:
    return f"PHYS_{number:04d}"


def ocr(number: int, grp: str = "OCR-D-OCR", **changes: str) -> NewFile:
    values = {
        "file_grp": grp,
        "file_id": f"{grp}_{number:04d}",
        "mimetype": MIMETYPE_PAGE,
        "href": f"{grp}/{number}.xml",
        "page_id": page(number),
    }
    values.update(changes)
    return NewFile(**values)


def ids(path: Path, grp: str) -> list[str]:
    return [f.id for f in Mets.read(path).find_files(file_grp=grp)]


def valid(path: Path) -> bool:
    errors = Mets.read(path).validate_schema()
    assert errors == []
    return True


def only_additions(before: bytes, after: bytes) -> list[str]:
    """The lines `after` adds to `before`; fails if it changed or removed any."""
    matcher = difflib.SequenceMatcher(
        None, before.decode().splitlines(), after.decode().splitlines(), autojunk=False
    )
    added = []
    for tag, _, _, j1, j2 in matcher.get_opcodes():
        assert tag in ("equal", "insert"), (tag, after.decode().splitlines()[j1:j2])
        if tag == "insert":
            added.extend(after.decode().splitlines()[j1:j2])
    return added


# ---- page order ------------------------------------------------------------------------------


def test_a_new_file_group_lists_its_files_in_page_order(tmp_path: Path) -> None:
    path = book(tmp_path, 6)
    order = [4, 1, 6, 2, 5, 3]  # the order the pages finished in
    assert MetsAppender(path).add([ocr(n) for n in order]) == []
    assert ids(path, "OCR-D-OCR") == [f"OCR-D-OCR_{n:04d}" for n in range(1, 7)]
    mets = Mets.read(path)
    assert mets.file_groups == ["OCR-D-IMG", "OCR-D-OCR"]
    for n in range(1, 7):
        [file] = mets.find_files(file_grp="OCR-D-OCR", page_id=page(n))
        assert (file.href, file.mimetype) == (f"OCR-D-OCR/{n}.xml", MIMETYPE_PAGE)
    assert valid(path)


def test_batches_in_any_order_keep_the_group_in_page_order(tmp_path: Path) -> None:
    path = book(tmp_path, 40)
    numbers = list(range(1, 41))
    random.Random(7).shuffle(numbers)
    appender = MetsAppender(path)
    for start in range(0, 40, 7):
        appender.add([ocr(n) for n in numbers[start : start + 7]])
    assert ids(path, "OCR-D-OCR") == [f"OCR-D-OCR_{n:04d}" for n in range(1, 41)]
    # A new appender reads the index from the file and goes on in page order.
    path_files = [ocr(n, "OCR-D-TXT", mimetype="text/plain") for n in (30, 2, 17)]
    MetsAppender(path).add(path_files)
    MetsAppender(path).add([ocr(n, "OCR-D-TXT", mimetype="text/plain") for n in (1, 40, 18)])
    assert ids(path, "OCR-D-TXT") == [f"OCR-D-TXT_{n:04d}" for n in (1, 2, 17, 18, 30, 40)]
    assert valid(path)


def test_a_page_with_several_files_in_a_group_keeps_them_together(tmp_path: Path) -> None:
    path = book(tmp_path, 3)
    appender = MetsAppender(path)
    appender.add([ocr(3), ocr(1)])
    image = ocr(2, file_id="OCR-D-OCR_IMG_0002", mimetype="image/png", href="OCR-D-OCR/2.png")
    appender.add([image, ocr(2)])
    assert ids(path, "OCR-D-OCR") == [
        "OCR-D-OCR_0001",
        "OCR-D-OCR_IMG_0002",
        "OCR-D-OCR_0002",
        "OCR-D-OCR_0003",
    ]


def test_page_order_follows_order_not_document_order(tmp_path: Path) -> None:
    path = tmp_path / "mets.xml"
    mets = Mets.empty("urn:test:order")
    for order, page_id in ((3, "C"), (1, "A"), (2, "B")):
        mets.add_page(page_id, order=order)
    mets.save(path)
    # Mets.add_page keeps document order = ORDER; a METS from elsewhere need not.
    text = path.read_text()
    a = '<mets:div ID="A" TYPE="page" ORDER="1"/>'
    c = '<mets:div ID="C" TYPE="page" ORDER="3"/>'
    path.write_text(text.replace(a, "@").replace(c, a).replace("@", c))
    assert read_outline(path).page_ids == ["A", "B", "C"]
    files = [NewFile("G", f"G_{p}", "text/plain", f"G/{p}.txt", p) for p in ("C", "A", "B")]
    MetsAppender(path).add(files)
    assert ids(path, "G") == ["G_A", "G_B", "G_C"]


# ---- replace semantics -------------------------------------------------------------------


def test_registering_again_replaces_and_never_duplicates(tmp_path: Path) -> None:
    path = book(tmp_path, 3)
    appender = MetsAppender(path)
    appender.add([ocr(1), ocr(2), ocr(3)])
    appender.add([ocr(2, href="OCR-D-OCR/2-again.xml"), ocr(2, href="OCR-D-OCR/2-last.xml")])
    MetsAppender(path).add([ocr(3, mimetype="text/plain")])  # a fresh writer after a crash
    mets = Mets.read(path)
    assert ids(path, "OCR-D-OCR") == ["OCR-D-OCR_0001", "OCR-D-OCR_0002", "OCR-D-OCR_0003"]
    assert mets.get_file("OCR-D-OCR_0002").href == "OCR-D-OCR/2-last.xml"
    assert mets.get_file("OCR-D-OCR_0003").mimetype == "text/plain"
    assert path.read_text().count('FILEID="OCR-D-OCR_0002"') == 1
    assert valid(path)


def test_a_replacement_may_move_to_another_group_and_page(tmp_path: Path) -> None:
    path = book(tmp_path, 3)
    MetsAppender(path).add([ocr(1), ocr(2)])
    moved = ocr(2, grp="OCR-D-OCR", file_grp="OCR-D-OTHER", page_id=page(3))
    MetsAppender(path).add([moved])
    mets = Mets.read(path)
    assert ids(path, "OCR-D-OCR") == ["OCR-D-OCR_0001"]
    assert ids(path, "OCR-D-OTHER") == ["OCR-D-OCR_0002"]
    assert mets.pages_of_file("OCR-D-OCR_0002") == [page(3)]
    assert valid(path)


def test_a_dangling_fptr_of_the_id_goes(tmp_path: Path) -> None:
    path = book(tmp_path, 2)
    text = path.read_text()
    path.write_text(
        text.replace(
            '<mets:fptr FILEID="OCR-D-IMG_0001"/>',
            '<mets:fptr FILEID="OCR-D-IMG_0001"/>\n        <mets:fptr FILEID="OCR-D-OCR_0001"/>',
        )
    )
    assert Mets.read(path).dangling_fptrs == [(page(1), "OCR-D-OCR_0001")]
    MetsAppender(path).add([ocr(1)])
    assert Mets.read(path).dangling_fptrs == []
    assert path.read_text().count('FILEID="OCR-D-OCR_0001"') == 1


# ---- what is refused ---------------------------------------------------------------------


def test_entries_that_cannot_go_in_are_returned_and_the_rest_goes_in(tmp_path: Path) -> None:
    path = book(tmp_path, 3)
    rejected = MetsAppender(path).add(
        [
            ocr(1),
            ocr(2, file_id="not an id"),
            ocr(3, file_id="DMDLOG_0001"),  # the dmdSec's ID
            ocr(3, file_id=page(1)),  # a page's ID
            ocr(3, href="bad\x01href"),
        ]
    )
    assert sorted(r.file_id for r in rejected) == sorted(
        ["not an id", "DMDLOG_0001", page(1), "OCR-D-OCR_0003"]
    )
    assert all(r.reason for r in rejected)
    assert ids(path, "OCR-D-OCR") == ["OCR-D-OCR_0001"]
    assert valid(path)


def test_a_failed_pass_leaves_the_old_mets(tmp_path: Path) -> None:
    class Exploding:
        file_grp, file_id, mimetype, page_id = "G", "G_1", "text/plain", page(2)
        calls = 0

        @property
        def href(self) -> str:  # fine while checked, gone when written
            self.calls += 1
            if self.calls > 1:
                raise OSError("disk gone")
            return "G/1.txt"

    path = book(tmp_path, 2)
    before = path.read_bytes()
    with pytest.raises(OSError, match="disk gone"):
        MetsAppender(path).add([ocr(1), Exploding()])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mets.xml"]


def test_hostile_and_broken_documents_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "mets.xml"
    path.write_text('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><mets:mets/>')
    with pytest.raises(UnsafeInputError):
        read_outline(path)
    with pytest.raises(UnsafeInputError):
        MetsAppender(path).add([ocr(1)])
    path.write_text(f'<mets:mets xmlns:mets="{NS_METS}"><mets:fileSec>')
    with pytest.raises(FormatError, match="not well-formed"):
        MetsAppender(path).add([ocr(1)])
    path.write_text("<html/>")
    with pytest.raises(MetsError, match="not a METS"):
        read_outline(path)
    with pytest.raises(FormatError, match="no METS"):
        MetsAppender(tmp_path / "missing.xml").add([ocr(1)])


# ---- everything else untouched ---------------------------------------------------------


def test_a_real_mets_changes_only_by_the_lines_added(shared_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "mets.xml"
    original = (shared_data / BEBEL).read_bytes()
    path.write_bytes(original.replace(b"<mets:fileSec>", b"<!-- a comment -->\n   <mets:fileSec>"))
    before = path.read_bytes()
    pages = read_outline(path).page_ids
    files = [
        NewFile("OCR-D-OCR", f"OCR_{n}", MIMETYPE_PAGE, f"OCR-D-OCR/{n}.xml", pages[n])
        for n in (3, 0, 2)
    ]
    files.append(NewFile("OCR-D-IMG", "OCR-D-IMG_NEW", "image/png", "x.png", pages[1]))
    assert MetsAppender(path).add(files, agents=[AGENT]) == []
    after = path.read_bytes()
    added = only_additions(before, after)
    assert "<!-- a comment -->" in after.decode()
    assert sum("<mets:file " in line for line in added) == 4
    assert sum("<mets:fptr " in line for line in added) == 4
    assert all(line.startswith("   ") for line in added)  # bebel indents by three
    assert "xmlns:ocrd" in "".join(added)
    mets = Mets.read(path)
    assert [f.id for f in mets.find_files(file_grp="OCR-D-OCR")] == ["OCR_0", "OCR_2", "OCR_3"]
    images = [f.id for f in mets.find_files(file_grp="OCR-D-IMG")]
    assert images.index("OCR-D-IMG_NEW") == 2  # after the images of pages 1 and 2
    assert mets.agents[-1].name == AGENT.name and mets.agents[-1].notes == AGENT.notes
    assert mets.validate_schema() == []


def test_agents_go_after_the_last_agent_with_the_documents_ocrd_prefix(tmp_path: Path) -> None:
    path = tmp_path / "mets.xml"
    path.write_text(
        f'<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<m:mets xmlns:m="{NS_METS}" xmlns:o="https://ocr-d.de" xmlns:x="{NS_XLINK}">\n'
        f'  <m:metsHdr>\n    <m:agent ROLE="CREATOR" TYPE="OTHER"><m:name>a</m:name></m:agent>\n'
        f"    <m:altRecordID>r1</m:altRecordID>\n  </m:metsHdr>\n"
        f"  <m:structMap><m:div/></m:structMap>\n</m:mets>\n"
    )
    MetsAppender(path).add([], agents=[AGENT])
    text = path.read_text()
    assert text.index(AGENT.name) < text.index("altRecordID")
    assert 'o:option="input-file-grp"' in text and "xmlns:ocrd" not in text
    assert [a.name for a in read_outline(path).agents] == ["a", AGENT.name]
    assert valid(path)


def test_missing_sections_are_made_where_mets_xsd_wants_them(tmp_path: Path) -> None:
    path = tmp_path / "mets.xml"
    path.write_text(
        f'<mets:mets xmlns:mets="{NS_METS}">\n'
        f'  <mets:dmdSec ID="d1"/>\n  <mets:structLink/>\n</mets:mets>\n'.replace(
            '<mets:dmdSec ID="d1"/>',
            '<mets:dmdSec ID="d1"><mets:mdRef LOCTYPE="URL" MDTYPE="MODS" '
            f'xmlns:xlink="{NS_XLINK}" xlink:href="https://example.org/m"/></mets:dmdSec>',
        ).replace(
            "<mets:structLink/>",
            '<mets:structLink><mets:smLink xmlns:xlink="http://www.w3.org/1999/xlink" '
            'xlink:from="a" xlink:to="b"/></mets:structLink>',
        )
    )
    MetsAppender(path).add(
        [ocr(2), ocr(1)], agents=[AGENT], pages=[NewPage(page(1), order=1, label="one")]
    )
    mets = Mets.read(path)
    assert mets.page_ids == [page(1), page(2)]
    assert ids(path, "OCR-D-OCR") == ["OCR-D-OCR_0001", "OCR-D-OCR_0002"]
    text = path.read_text()
    sections = ["metsHdr", "dmdSec", "fileSec", "structMap", "structLink"]
    assert sorted(sections, key=lambda s: text.index(f"<mets:{s}")) == sections
    assert 'LABEL="one"' in text and 'ID="PHYS_0002" TYPE="page" ORDER="2"' in text
    assert "xmlns:xlink" in text.split("<mets:fileSec>")[1]  # declared where used
    assert valid(path)


def test_self_closing_elements_are_opened_up(tmp_path: Path) -> None:
    path = tmp_path / "mets.xml"
    path.write_text(
        f'<mets:mets xmlns:mets="{NS_METS}" xmlns:xlink="{NS_XLINK}">\n'
        f'  <mets:fileSec>\n    <mets:fileGrp USE="OCR-D-OCR"/>\n  </mets:fileSec>\n'
        f'  <mets:structMap TYPE="PHYSICAL">\n    <mets:div TYPE="physSequence">\n'
        f'      <mets:div ID="{page(1)}" TYPE="page" ORDER="1" />\n'
        f"    </mets:div>\n  </mets:structMap>\n</mets:mets>\n"
    )
    MetsAppender(path).add([ocr(1)])
    text = path.read_text()
    assert '<mets:fileGrp USE="OCR-D-OCR">\n      <mets:file ID="OCR-D-OCR_0001"' in text
    assert f'<mets:div ID="{page(1)}" TYPE="page" ORDER="1">\n        <mets:fptr' in text
    assert Mets.read(path).pages_of_file("OCR-D-OCR_0001") == [page(1)]
    assert valid(path)


def test_default_namespace_and_no_indentation(tmp_path: Path) -> None:
    path = tmp_path / "mets.xml"
    path.write_text(
        f'<mets xmlns="{NS_METS}"><fileSec><fileGrp USE="IMG"><file ID="i1" MIMETYPE="image/png">'
        f'<FLocat xmlns:xl="{NS_XLINK}" LOCTYPE="URL" xl:href="https://example.org/1.png"/></file>'
        f'</fileGrp></fileSec><structMap TYPE="PHYSICAL"><div TYPE="physSequence">'
        f'<div ID="{page(1)}" TYPE="page"><fptr FILEID="i1"/></div></div></structMap></mets>'
    )
    MetsAppender(path).add([ocr(1), ocr(1, file_id="i2", file_grp="IMG", href="https://x.org")])
    text = path.read_text()
    assert "\n" not in text.strip()
    assert '<file ID="OCR-D-OCR_0001"' in text and "mets:" not in text
    mets = Mets.read(path)
    assert mets.get_file("i2").loctype == "URL"
    assert mets.find_files(page_id=page(1), file_grp="OCR-D-OCR")[0].href == "OCR-D-OCR/1.xml"
    assert valid(path)


def test_a_latin1_document_gets_character_references(tmp_path: Path) -> None:
    path = book(tmp_path, 1)
    text = path.read_text().replace('encoding="UTF-8"', 'encoding="ISO-8859-1"')
    path.write_bytes(text.replace("ocrswarm", "ocrswärm").encode("latin-1"))
    MetsAppender(path).add([ocr(1, href="OCR-D-OCR/straße €.xml")])
    assert "straße €" in Mets.read(path).get_file("OCR-D-OCR_0001").href
    assert b"&#8364;" in path.read_bytes()  # the euro sign is not in Latin-1
    assert Mets.read(path).agents[0].name == "ocrswärm 0.1.0"


def test_a_mets_changed_by_someone_else_is_read_again(tmp_path: Path) -> None:
    path = book(tmp_path, 4)
    appender = MetsAppender(path)
    appender.add([ocr(4), ocr(1)])
    mets = Mets.read(path)  # someone else: a page in front, files in the group
    mets.add_file("OCR-D-OCR", "OCR-D-OCR_0003", "OCR-D-OCR/3.xml", MIMETYPE_PAGE, page(3))
    mets.save(path)
    appender.add([ocr(2)])
    # Their file went to the end; ours still goes where its page is, counting theirs.
    assert ids(path, "OCR-D-OCR") == [f"OCR-D-OCR_{n:04d}" for n in (1, 2, 4, 3)]
    assert valid(path)


def test_a_new_page_whose_id_is_taken_is_refused(tmp_path: Path) -> None:
    path = book(tmp_path, 1)
    before = path.read_bytes()
    with pytest.raises(MetsError, match="DMDLOG_0001"):
        MetsAppender(path).add([], pages=[NewPage("DMDLOG_0001")])
    with pytest.raises(MetsError, match="page ID"):
        MetsAppender(path).add([], pages=[NewPage("1 2")])
    assert path.read_bytes() == before


# ---- reading -----------------------------------------------------------------------------


def test_the_outline_of_a_real_mets(shared_data: Path) -> None:
    path = shared_data / BEBEL
    mets = Mets.read(path)
    outline = read_outline(path, ["OCR-D-IMG"], counted_grps=["OCR-D-GT-SEG-PAGE", "NONE"])
    assert outline.file_groups == mets.file_groups
    assert outline.page_ids == mets.page_ids
    assert outline.agents == mets.agents
    for page_id in mets.page_ids:
        assert outline.files_of(page_id) == mets.find_files(file_grp="OCR-D-IMG", page_id=page_id)
    counts = outline.file_counts["OCR-D-GT-SEG-PAGE"]
    assert list(counts) == [
        len(mets.find_files(file_grp="OCR-D-GT-SEG-PAGE", page_id=p)) for p in mets.page_ids
    ]
    assert list(outline.file_counts["NONE"]) == [0] * len(mets.page_ids)
    assert outline.mimetypes["DEFAULT"] == {f.mimetype for f in mets.find_files(file_grp="DEFAULT")}
