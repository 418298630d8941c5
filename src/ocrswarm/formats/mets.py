"""One METS document: the lxml tree is the single source of truth, dict indexes make it fast.

OCR-D's own METS class answers "which file of fileGrp G is on page P?" by walking the tree,
10-40 ms a question at a few thousand pages. Here every lookup is a dict access and every
mutation updates the tree and the indexes together, so lookups cost microseconds at any size.
The indexes are private and derived; the tree is only changed through the methods below.

Reading is lenient (real METS files from libraries are kept byte for byte where we do not
touch them: other sections, formatting, remote URL groups); writing is strict (what we add
validates against mets.xsd). A `Mets` is not safe for concurrent use from threads.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from lxml import etree

from ocrswarm import __version__
from ocrswarm.errors import MetsError
from ocrswarm.formats.atomicfile import write_atomic
from ocrswarm.formats.safexml import parse_xml

NS_METS = "http://www.loc.gov/METS/"
NS_MODS = "http://www.loc.gov/mods/v3"
NS_XLINK = "http://www.w3.org/1999/xlink"
NS_OCRD = "https://ocr-d.de"
NAMESPACES = {"mets": NS_METS, "mods": NS_MODS, "xlink": NS_XLINK}

MIMETYPE_PAGE = "application/vnd.prima.page+xml"

TAG_METS = f"{{{NS_METS}}}mets"
TAG_METSHDR = f"{{{NS_METS}}}metsHdr"
TAG_AGENT = f"{{{NS_METS}}}agent"
TAG_NAME = f"{{{NS_METS}}}name"
TAG_NOTE = f"{{{NS_METS}}}note"
TAG_DMDSEC = f"{{{NS_METS}}}dmdSec"
TAG_MDWRAP = f"{{{NS_METS}}}mdWrap"
TAG_XMLDATA = f"{{{NS_METS}}}xmlData"
TAG_FILESEC = f"{{{NS_METS}}}fileSec"
TAG_FILEGRP = f"{{{NS_METS}}}fileGrp"
TAG_FILE = f"{{{NS_METS}}}file"
TAG_FLOCAT = f"{{{NS_METS}}}FLocat"
TAG_STRUCTMAP = f"{{{NS_METS}}}structMap"
TAG_DIV = f"{{{NS_METS}}}div"
TAG_FPTR = f"{{{NS_METS}}}fptr"
TAG_MODS = f"{{{NS_MODS}}}mods"
TAG_MODS_IDENTIFIER = f"{{{NS_MODS}}}identifier"
ATTR_HREF = f"{{{NS_XLINK}}}href"
ATTR_OCRD_OPTION = f"{{{NS_OCRD}}}option"

# The order mets.xsd demands for the children of mets:mets.
_SECTION_RANK = {
    TAG_METSHDR: 0,
    TAG_DMDSEC: 1,
    f"{{{NS_METS}}}amdSec": 2,
    TAG_FILESEC: 3,
    TAG_STRUCTMAP: 4,
    f"{{{NS_METS}}}structLink": 5,
    f"{{{NS_METS}}}behaviorSec": 6,
}
# OCR-D's order of preference among mods:identifier types for the document's unique ID.
IDENTIFIER_PRIORITY = ("purl", "urn", "doi", "url")
AGENT_ROLES = frozenset(
    {"CREATOR", "EDITOR", "ARCHIVIST", "PRESERVATION", "DISSEMINATOR", "CUSTODIAN", "IPOWNER"}
    | {"OTHER"}
)
AGENT_TYPES = frozenset({"INDIVIDUAL", "ORGANIZATION", "OTHER"})

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")
_NCNAME = re.compile(r"[^\W\d][\w.\-]*")
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_INDENT = "  "
_XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_SCHEMA_PATH = Path(__file__).with_name("schemas") / "mets.xsd"
_SCHEMA_LOCK = threading.Lock()

Element = Any  # an lxml element; lxml ships no type information
_IdSet = dict[str, None]  # an insertion-ordered set of IDs


def is_url(href: str) -> bool:
    """True for an href with a URI scheme (`https:`, `file:`), false for a relative path."""
    return _URL.match(href) is not None


@dataclass(frozen=True, slots=True)
class MetsFile:
    """A snapshot of one mets:file; it does not change when the METS does."""

    id: str
    file_grp: str
    mimetype: str
    page_id: str | None
    href: str
    loctype: str

    @property
    def is_url(self) -> bool:
        return is_url(self.href)


@dataclass(frozen=True, slots=True)
class Agent:
    """A snapshot of one mets:agent in metsHdr: who or what worked on the document."""

    name: str
    role: str
    type: str | None
    othertype: str | None
    otherrole: str | None
    notes: tuple[tuple[str, str], ...]  # (ocrd:option or "", text)


class Mets:
    """A METS document with constant-time lookups by file ID, fileGrp, page and MIME type."""

    # The indexes, all derived from the tree and updated with it.
    _file_sec: Element | None
    _groups: dict[str, Element]  # fileGrp USE -> fileGrp, in document order
    _files: dict[str, Element]  # file ID -> mets:file
    _file_group: dict[str, str]  # file ID -> fileGrp USE
    _group_files: dict[str, _IdSet]  # fileGrp USE -> its file IDs
    _typed_files: dict[tuple[str, str], _IdSet]  # (fileGrp USE, MIME type) -> file IDs
    _sequence: Element | None  # the physSequence div holding the pages
    _pages: dict[str, Element]  # page ID -> div
    _page_files: dict[str, _IdSet]
    _file_pages: dict[str, _IdSet]
    _page_group_files: dict[tuple[str, str], _IdSet]
    _dangling: dict[str, list[Element]]  # file ID -> fptrs naming it though it is not listed
    _page_order: list[str] | None  # page_ids, computed when asked
    _pages_without_order: int
    _max_order: int
    _other_ids: set[str]

    def __init__(self, tree: Any, *, name: str = "METS") -> None:
        """Index `tree` (an lxml ElementTree); use `read`, `from_bytes` or `empty` instead."""
        self._tree = tree
        self._root: Element = tree.getroot()
        self._name = name
        if self._root.tag != TAG_METS:
            raise MetsError(f"{name} is not a METS document (root element {self._root.tag})")
        self._index_files()
        self._index_pages()
        self._index_other_ids()

    # ---- construction -----------------------------------------------------------------

    @classmethod
    def empty(cls, identifier: str | None = None) -> Mets:
        """A new METS: metsHdr with CREATEDATE and our agent, an empty physical structMap."""
        created = datetime.now(UTC).isoformat(timespec="seconds")
        template = f"""<?xml version="1.0" encoding="UTF-8"?>
<mets:mets xmlns:mets="{NS_METS}" xmlns:mods="{NS_MODS}" xmlns:xlink="{NS_XLINK}">
  <mets:metsHdr CREATEDATE="{created}">
    <mets:agent TYPE="OTHER" OTHERTYPE="SOFTWARE" ROLE="CREATOR">
      <mets:name>ocrswarm {__version__}</mets:name>
    </mets:agent>
  </mets:metsHdr>
  <mets:structMap TYPE="PHYSICAL">
    <mets:div TYPE="physSequence"/>
  </mets:structMap>
</mets:mets>
"""
        mets = cls(parse_xml(template.encode(), what="METS template"))
        if identifier is not None:
            mets.unique_identifier = identifier
        return mets

    @classmethod
    def read(cls, path: Path) -> Mets:
        """Parse and index the METS file at `path` (MetsError/FormatError when malformed)."""
        return cls(parse_xml(path, what="METS"), name=f"METS {path}")

    @classmethod
    def from_bytes(cls, data: bytes) -> Mets:
        return cls(parse_xml(data, what="METS"))

    def to_bytes(self) -> bytes:
        body = etree.tostring(self._tree, xml_declaration=False, encoding="UTF-8")
        return _XML_DECLARATION + bytes(body) + b"\n"

    def save(self, path: Path) -> None:
        """Write atomically: a reader sees the old or the new METS, never half of one."""
        write_atomic(path, self.to_bytes())

    # ---- queries ----------------------------------------------------------------------

    @property
    def file_groups(self) -> list[str]:
        return list(self._groups)

    @property
    def page_ids(self) -> list[str]:
        """Physical pages by @ORDER when every page has one, else in document order."""
        if self._page_order is None:
            self._page_order = self._physical_order()
        return list(self._page_order)

    @property
    def files(self) -> list[MetsFile]:
        """Every file, fileGrp by fileGrp, in document order."""
        return [self._snapshot(file_id) for ids in self._group_files.values() for file_id in ids]

    def find_files(
        self,
        *,
        file_id: str | None = None,
        file_grp: str | None = None,
        page_id: str | None = None,
        mimetype: str | None = None,
    ) -> list[MetsFile]:
        """The files matching every given criterion; the narrowest index does the work."""
        candidates: Iterable[str]
        if file_id is not None:
            candidates = (file_id,) if file_id in self._files else ()
        elif page_id is not None and file_grp is not None:
            candidates = self._page_group_files.get((page_id, file_grp), ())
        elif page_id is not None:
            candidates = self._page_files.get(page_id, ())
        elif file_grp is not None:
            candidates = self._group_files.get(file_grp, ())
        elif mimetype is not None:
            candidates = [
                member
                for group in self._groups
                for member in self._typed_files.get((group, mimetype), ())
            ]
        else:
            return self.files
        found = []
        for candidate in candidates:
            file = self._snapshot(candidate)
            if (
                (file_grp is None or file.file_grp == file_grp)
                and (mimetype is None or file.mimetype == mimetype)
                and (page_id is None or page_id in self._file_pages.get(candidate, ()))
            ):
                found.append(file)
        return found

    def get_file(self, file_id: str) -> MetsFile:
        if file_id not in self._files:
            raise MetsError(f"{self._name} has no file with ID {file_id!r}")
        return self._snapshot(file_id)

    def pages_of_file(self, file_id: str) -> list[str]:
        """Every page whose fptr names the file (OCR-D expects exactly one)."""
        self.get_file(file_id)
        return list(self._file_pages.get(file_id, ()))

    @property
    def dangling_fptrs(self) -> list[tuple[str, str]]:
        """(page ID, file ID) of each fptr naming a file the fileSec does not have."""
        found = []
        for file_id, fptrs in self._dangling.items():
            for fptr in fptrs:
                div = fptr.getparent()
                found.append((div.get("ID") if div is not None else "", file_id))
        return found

    # ---- pages and files --------------------------------------------------------------

    def add_page(self, page_id: str, *, order: int | None = None, label: str | None = None) -> None:
        """Add a physical page. Without `order`, continues the numbering if every page has one."""
        check_id(page_id, "page ID")
        if page_id in self._pages:
            raise MetsError(f"{self._name} already has a page {page_id!r}")
        self._check_id_free(page_id)
        if order is None and self._pages_without_order == 0:
            order = self._max_order + 1
        div = etree.Element(TAG_DIV)
        div.set("ID", page_id)
        div.set("TYPE", "page")
        if order is not None:
            div.set("ORDER", str(order))
        if label is not None:
            div.set("LABEL", checked_text(label, "page label", allow_empty=True))
        sequence = self._physical_sequence()
        _insert(sequence, div, _page_after(sequence, order))
        self._register_page(page_id, div)

    def add_file(
        self,
        file_grp: str,
        file_id: str,
        href: str,
        mimetype: str,
        page_id: str | None = None,
        *,
        replace: bool = False,
    ) -> MetsFile:
        """Register a file, creating its fileGrp and page when missing.

        An existing ID is a MetsError unless `replace`, which updates that file in place
        (or moves it when the fileGrp differs). A URL href gets LOCTYPE="URL".
        """
        self.check_new_file(file_grp, file_id, href, mimetype, page_id, replace=replace)
        existing = self._file_group.get(file_id)
        if page_id is not None and page_id not in self._pages:
            self.add_page(page_id)
        if existing == file_grp:
            self._update_file(file_id, href, mimetype, page_id)
            return self._snapshot(file_id)
        if existing is not None:
            self.remove_file(file_id)
        element = etree.Element(TAG_FILE)
        element.set("ID", file_id)
        element.set("MIMETYPE", mimetype)
        element.append(_flocat(href))
        group = self._groups.get(file_grp)
        _insert(self._add_group(file_grp) if group is None else group, element)
        self._files[file_id] = element
        self._file_group[file_id] = file_grp
        self._group_files[file_grp][file_id] = None
        self._typed_files.setdefault((file_grp, mimetype), {})[file_id] = None
        for stale in self._dangling.pop(file_id, ()):
            _remove(stale)
        if page_id is not None:
            self._add_fptr(page_id, file_id)
        return self._snapshot(file_id)

    def check_new_file(
        self,
        file_grp: str,
        file_id: str,
        href: str,
        mimetype: str,
        page_id: str | None = None,
        *,
        replace: bool = False,
    ) -> None:
        """Raise the MetsError `add_file` would raise, changing nothing.

        Lets a caller refuse before it writes the file's content to disk.
        """
        check_file_entry(file_grp, file_id, href, mimetype, page_id)
        existing = self._file_group.get(file_id)
        if existing is not None and not replace:
            raise MetsError(
                f"{self._name} already has a file {file_id!r} (fileGrp {existing!r}); "
                "pass replace/--overwrite to replace it"
            )
        if existing is None:
            self._check_id_free(file_id)

    def set_href(self, file_id: str, href: str) -> MetsFile:
        """Point a file elsewhere; its FLocat(s) are replaced by one for `href`."""
        self.get_file(file_id)
        self._set_location(self._files[file_id], checked_text(href, "href"))
        return self._snapshot(file_id)

    def remove_file(self, file_id: str) -> MetsFile:
        """Remove a file and every fptr naming it; returns what it was."""
        removed = self.get_file(file_id)
        self._unlink_pages(file_id)
        element = self._files.pop(file_id)
        group = self._file_group.pop(file_id)
        del self._group_files[group][file_id]
        self._forget_type(file_id, group, element.get("MIMETYPE") or "")
        _remove(element)
        return removed

    def remove_file_group(self, file_grp: str, *, recursive: bool = False) -> list[MetsFile]:
        """Remove a fileGrp; one that still has files only when `recursive` (then with them)."""
        group = self._groups.get(file_grp)
        if group is None:
            raise MetsError(f"{self._name} has no fileGrp {file_grp!r}")
        if next(group.iterchildren(TAG_FILEGRP), None) is not None:
            raise MetsError(f"fileGrp {file_grp!r} has nested fileGrps; not supported")
        file_ids = list(self._group_files[file_grp])
        if file_ids and not recursive:
            raise MetsError(
                f"fileGrp {file_grp!r} still has {len(file_ids)} files; remove it recursively"
            )
        removed = [self.remove_file(file_id) for file_id in file_ids]
        del self._groups[file_grp]
        del self._group_files[file_grp]
        _remove(group)
        if self._file_sec is not None and next(self._file_sec.iter(TAG_FILEGRP), None) is None:
            _remove(self._file_sec)  # mets.xsd wants at least one fileGrp in a fileSec
            self._file_sec = None
        return removed

    # ---- document metadata ------------------------------------------------------------

    @property
    def unique_identifier(self) -> str | None:
        """The document's ID: the first mods:identifier of type purl, urn, doi or url."""
        element = self._identifier_element()
        if element is None or not element.text:
            return None
        return str(element.text).strip() or None

    @unique_identifier.setter
    def unique_identifier(self, value: str) -> None:
        value = checked_text(value.strip(), "unique identifier")
        element = self._identifier_element()
        if element is None:
            mods = self._root.find(f"{TAG_DMDSEC}//{TAG_MODS}")
            if mods is None:
                mods = self._add_mods_section()
            element = etree.Element(TAG_MODS_IDENTIFIER)
            element.set("type", "purl")
            _insert(mods, element)
        element.text = value

    @property
    def agents(self) -> list[Agent]:
        header = self._root.find(TAG_METSHDR)
        if header is None:
            return []
        return [_agent_snapshot(element) for element in header.iterchildren(TAG_AGENT)]

    def add_agent(
        self,
        name: str,
        *,
        role: str = "OTHER",
        otherrole: str | None = None,
        type: str = "OTHER",
        othertype: str | None = "SOFTWARE",
        notes: Mapping[str, str] | None = None,
    ) -> None:
        """Record who worked on the document; a processor run passes its step as otherrole.

        `notes` become `<mets:note ocrd:option="key">value</mets:note>` as OCR-D writes them.
        """
        check_agent(Agent(name, role, type, othertype, otherrole, tuple((notes or {}).items())))
        nsmap = None if NS_OCRD in self._root.nsmap.values() else {"ocrd": NS_OCRD}
        agent = etree.Element(TAG_AGENT, nsmap=nsmap)
        agent.set("TYPE", type)
        if othertype is not None:
            agent.set("OTHERTYPE", othertype)
        agent.set("ROLE", role)
        if otherrole is not None:
            agent.set("OTHERROLE", otherrole)
        etree.SubElement(agent, TAG_NAME).text = name
        for option, text in (notes or {}).items():
            note = etree.SubElement(agent, TAG_NOTE)
            note.set(ATTR_OCRD_OPTION, checked_text(option, "agent note option"))
            note.text = text
        header = self._root.find(TAG_METSHDR)
        if header is None:
            header = etree.Element(TAG_METSHDR)
            header.set("CREATEDATE", datetime.now(UTC).isoformat(timespec="seconds"))
            self._insert_section(header)
        last_agent = next(header.iterchildren(TAG_AGENT, reversed=True), None)
        before = next(iter(header), None) if last_agent is None else last_agent.getnext()
        _insert(header, agent, before)

    def validate_schema(self) -> list[str]:
        """Errors against the shipped mets.xsd; an empty list means valid."""
        schema = _mets_schema()
        with _SCHEMA_LOCK:  # an lxml XMLSchema keeps its error log in the instance
            if schema.validate(self._tree):
                return []
            return [_describe(error) for error in schema.error_log]

    # ---- indexing ---------------------------------------------------------------------

    def _index_files(self) -> None:
        self._file_sec = self._root.find(TAG_FILESEC)
        self._groups = {}
        self._files = {}
        self._file_group = {}
        self._group_files = {}
        self._typed_files = {}
        if self._file_sec is None:
            return
        for group in self._file_sec.iter(TAG_FILEGRP):
            use = group.get("USE")
            if use is None:
                if next(group.iterchildren(TAG_FILE), None) is not None:
                    raise MetsError(f"{self._name}: a fileGrp with files has no USE")
                continue
            if use in self._groups:
                raise MetsError(f"{self._name}: fileGrp USE {use!r} appears twice")
            self._groups[use] = group
            members: _IdSet = {}
            self._group_files[use] = members
            for element in group.iterchildren(TAG_FILE):
                file_id = element.get("ID")
                if not file_id:
                    raise MetsError(f"{self._name}: a file in fileGrp {use!r} has no ID")
                if file_id in self._files:
                    raise MetsError(f"{self._name}: file ID {file_id!r} appears twice")
                self._files[file_id] = element
                self._file_group[file_id] = use
                members[file_id] = None
                mimetype = element.get("MIMETYPE") or ""
                self._typed_files.setdefault((use, mimetype), {})[file_id] = None

    def _index_pages(self) -> None:
        self._sequence = None
        self._pages = {}
        self._page_files = {}
        self._file_pages = {}
        self._page_group_files = {}
        self._dangling = {}
        self._pages_without_order = 0
        self._max_order = 0
        self._page_order = None
        struct_map = self._physical_struct_map()
        if struct_map is not None:
            self._sequence = next(struct_map.iterchildren(TAG_DIV), None)
        if self._sequence is None:
            return
        for div in self._sequence.iterchildren(TAG_DIV):
            page_id = div.get("ID")
            if not page_id:
                raise MetsError(f"{self._name}: a physical page has no ID")
            if page_id in self._pages:
                raise MetsError(f"{self._name}: page ID {page_id!r} appears twice")
            self._register_page(page_id, div)
            for fptr in div.iterchildren(TAG_FPTR):
                file_id = fptr.get("FILEID") or ""
                if file_id in self._files:
                    self._link(file_id, page_id)
                else:
                    self._dangling.setdefault(file_id, []).append(fptr)

    def _index_other_ids(self) -> None:
        """Remember every other METS ID (dmdSec, amdSec...) so new IDs never collide."""
        all_ids = [str(value) for value in self._root.xpath("//mets:*/@ID", namespaces=NAMESPACES)]
        if len(all_ids) != len(set(all_ids)):
            twice = sorted(value for value, count in Counter(all_ids).items() if count > 1)
            raise MetsError(f"{self._name}: IDs appear more than once: {', '.join(twice[:5])}")
        self._other_ids = set(all_ids).difference(self._files, self._pages)

    def _physical_struct_map(self) -> Element | None:
        for struct_map in self._root.iterchildren(TAG_STRUCTMAP):
            if (struct_map.get("TYPE") or "").upper() == "PHYSICAL":
                return struct_map
        return None

    def _register_page(self, page_id: str, div: Element) -> None:
        self._pages[page_id] = div
        self._page_files[page_id] = {}
        order = _int_or_none(div.get("ORDER"))
        if order is None:
            self._pages_without_order += 1
        else:
            self._max_order = max(self._max_order, order)
        self._page_order = None

    def _physical_order(self) -> list[str]:
        if self._sequence is None:
            return []
        divs = [div for div in self._sequence.iterchildren(TAG_DIV) if div.get("ID") in self._pages]
        if self._pages_without_order == 0:
            divs.sort(key=lambda div: int(div.get("ORDER")))
        return [str(div.get("ID")) for div in divs]

    def _link(self, file_id: str, page_id: str) -> None:
        self._file_pages.setdefault(file_id, {})[page_id] = None
        self._page_files[page_id][file_id] = None
        key = (page_id, self._file_group[file_id])
        self._page_group_files.setdefault(key, {})[file_id] = None

    def _unlink_pages(self, file_id: str) -> None:
        """Drop every fptr naming the file, from the tree and the indexes."""
        group = self._file_group[file_id]
        for page_id in self._file_pages.pop(file_id, ()):
            del self._page_files[page_id][file_id]
            key = (page_id, group)
            del self._page_group_files[key][file_id]
            if not self._page_group_files[key]:
                del self._page_group_files[key]
            div = self._pages[page_id]
            for fptr in [f for f in div.iterchildren(TAG_FPTR) if f.get("FILEID") == file_id]:
                _remove(fptr)

    def _forget_type(self, file_id: str, group: str, mimetype: str) -> None:
        members = self._typed_files[group, mimetype]
        del members[file_id]
        if not members:
            del self._typed_files[group, mimetype]

    # ---- mutation helpers -------------------------------------------------------------

    def _check_id_free(self, new_id: str) -> None:
        if new_id in self._files or new_id in self._pages or new_id in self._other_ids:
            raise MetsError(f"{self._name}: ID {new_id!r} is already used by another element")

    def _add_fptr(self, page_id: str, file_id: str) -> None:
        fptr = etree.Element(TAG_FPTR)
        fptr.set("FILEID", file_id)
        _insert(self._pages[page_id], fptr)
        self._link(file_id, page_id)

    def _update_file(self, file_id: str, href: str, mimetype: str, page_id: str | None) -> None:
        element = self._files[file_id]
        old_mimetype = element.get("MIMETYPE") or ""
        if old_mimetype != mimetype:
            group = self._file_group[file_id]
            self._forget_type(file_id, group, old_mimetype)
            element.set("MIMETYPE", mimetype)
            # Rare (a replacement by another type): rebuild the entry in document order.
            typed = self._typed_files.get((group, mimetype), {})
            self._typed_files[group, mimetype] = {
                member: None
                for member in self._group_files[group]
                if member == file_id or member in typed
            }
        for stale in ("CHECKSUM", "CHECKSUMTYPE", "SIZE", "CREATED"):  # about the old content
            element.attrib.pop(stale, None)
        self._set_location(element, href)
        if list(self._file_pages.get(file_id, ())) != ([] if page_id is None else [page_id]):
            self._unlink_pages(file_id)
            if page_id is not None:
                self._add_fptr(page_id, file_id)

    def _set_location(self, element: Element, href: str) -> None:
        for flocat in list(element.iterchildren(TAG_FLOCAT)):
            _remove(flocat)
        _insert(element, _flocat(href), next(iter(element), None))  # mets.xsd: FLocat first

    def _add_group(self, file_grp: str) -> Element:
        if self._file_sec is None:
            self._file_sec = etree.Element(TAG_FILESEC)
            self._insert_section(self._file_sec)
        group = etree.Element(TAG_FILEGRP)
        group.set("USE", file_grp)
        _insert(self._file_sec, group)
        self._groups[file_grp] = group
        self._group_files[file_grp] = {}
        return group

    def _physical_sequence(self) -> Element:
        """The div holding the pages, created (with its structMap) when missing."""
        if self._sequence is not None:
            return self._sequence
        struct_map = self._physical_struct_map()
        if struct_map is None:
            struct_map = etree.Element(TAG_STRUCTMAP)
            struct_map.set("TYPE", "PHYSICAL")
            self._insert_section(struct_map)
        self._sequence = etree.Element(TAG_DIV)
        self._sequence.set("TYPE", "physSequence")
        _insert(struct_map, self._sequence, next(iter(struct_map), None))
        return self._sequence

    def _add_mods_section(self) -> Element:
        number = 1
        while f"DMDLOG_{number:04d}" in self._other_ids:
            number += 1
        section_id = f"DMDLOG_{number:04d}"
        section = etree.Element(TAG_DMDSEC)
        section.set("ID", section_id)
        wrap = etree.SubElement(section, TAG_MDWRAP)
        wrap.set("MDTYPE", "MODS")
        mods = etree.SubElement(etree.SubElement(wrap, TAG_XMLDATA), TAG_MODS)
        self._insert_section(section)
        self._other_ids.add(section_id)
        return mods

    def _insert_section(self, section: Element) -> None:
        """Insert a child of mets:mets where mets.xsd's sequence wants it."""
        rank = _SECTION_RANK[section.tag]
        before = next(iter(self._root), None)
        for child in self._root:
            if isinstance(child.tag, str) and _SECTION_RANK.get(child.tag, 99) <= rank:
                before = child.getnext()
        _insert(self._root, section, before)

    def _identifier_element(self) -> Element | None:
        identifiers = self._root.findall(f"{TAG_DMDSEC}//{TAG_MODS_IDENTIFIER}")
        for kind in IDENTIFIER_PRIORITY:
            for element in identifiers:
                if element.get("type") == kind:
                    return element
        return None

    def _snapshot(self, file_id: str) -> MetsFile:
        element = self._files[file_id]
        flocat = _primary_flocat(element)
        href = loctype = ""
        if flocat is not None:
            href = flocat.get(ATTR_HREF) or ""
            loctype = flocat.get("LOCTYPE") or ""
        pages = self._file_pages.get(file_id)
        return MetsFile(
            id=file_id,
            file_grp=self._file_group[file_id],
            mimetype=element.get("MIMETYPE") or "",
            page_id=next(iter(pages)) if pages else None,
            href=href,
            loctype=loctype,
        )


# ---- module helpers -------------------------------------------------------------------


@cache
def _mets_schema() -> Any:
    document = parse_xml(_SCHEMA_PATH, what="METS schema")
    document.docinfo.URL = str(_SCHEMA_PATH)  # so `import schemaLocation="xlink.xsd"` resolves
    return etree.XMLSchema(document)


def _describe(error: Any) -> str:
    return f"line {error.line}: {error.message}" if error.line else str(error.message)


def check_id(value: str, what: str) -> None:
    """METS IDs are xs:ID: an XML name without a colon, not starting with a digit."""
    if not isinstance(value, str) or not _NCNAME.fullmatch(value):
        raise MetsError(f"invalid {what} {value!r}: must start with a letter or _ (xs:ID)")


def check_file_entry(
    file_grp: str, file_id: str, href: str, mimetype: str, page_id: str | None
) -> None:
    """The MetsError a new file entry deserves on its own (names, IDs, characters XML
    cannot carry), whatever the document it goes into."""
    check_file_grp_name(file_grp)
    check_id(file_id, "file ID")
    checked_text(href, "href")
    checked_text(mimetype, "MIME type")
    if page_id is not None:
        check_id(page_id, "page ID")


def check_agent(agent: Agent) -> None:
    """The MetsError an agent deserves: a role or type mets.xsd does not know, or text
    XML cannot carry."""
    if agent.role not in AGENT_ROLES:
        raise MetsError(f"agent role {agent.role!r} is not one of {sorted(AGENT_ROLES)}")
    if agent.type not in AGENT_TYPES:
        raise MetsError(f"agent type {agent.type!r} is not one of {sorted(AGENT_TYPES)}")
    checked_text(agent.name, "agent name")
    for value, what in ((agent.othertype, "OTHERTYPE"), (agent.otherrole, "OTHERROLE")):
        if value is not None:
            checked_text(value, f"agent {what}")
    for option, text in agent.notes:
        checked_text(option, "agent note option", allow_empty=True)
        checked_text(text, "agent note", allow_empty=True)


def check_file_grp_name(value: str) -> None:
    """A fileGrp name must survive comma lists (`-I A,B`) and serve as a directory name."""
    checked_text(value, "fileGrp name")
    if value in (".", "..") or re.search(r"[\s,:/\\]", value):
        raise MetsError(
            f"invalid fileGrp name {value!r}: no whitespace, comma, colon or slash, not . or .."
        )


def checked_text(value: str, what: str, *, allow_empty: bool = False) -> str:
    """`value`, if it is a string XML can carry (MetsError otherwise)."""
    if not isinstance(value, str) or (not value and not allow_empty):
        raise MetsError(f"{what} must be a non-empty string, not {value!r}")
    if _XML_ILLEGAL.search(value):
        raise MetsError(f"{what} {value!r} contains characters XML cannot carry")
    return value


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _flocat(href: str) -> Element:
    flocat = etree.Element(TAG_FLOCAT)
    if is_url(href):
        flocat.set("LOCTYPE", "URL")
    else:
        flocat.set("LOCTYPE", "OTHER")
        flocat.set("OTHERLOCTYPE", "FILE")
    flocat.set(ATTR_HREF, href)
    return flocat


def _primary_flocat(element: Element) -> Element | None:
    """The local-file FLocat if any (OCR-D may keep a URL and a local copy), else the first."""
    first = None
    for flocat in element.iterchildren(TAG_FLOCAT):
        if flocat.get("OTHERLOCTYPE") == "FILE" and flocat.get("LOCTYPE") == "OTHER":
            return flocat
        if first is None:
            first = flocat
    return first


def _agent_snapshot(element: Element) -> Agent:
    return Agent(
        name=str(element.findtext(TAG_NAME) or ""),
        role=str(element.get("ROLE") or ""),
        type=element.get("TYPE"),
        othertype=element.get("OTHERTYPE"),
        otherrole=element.get("OTHERROLE"),
        notes=tuple(
            (str(note.get(ATTR_OCRD_OPTION) or ""), str(note.text or ""))
            for note in element.iterchildren(TAG_NOTE)
        ),
    )


def _page_after(sequence: Element, order: int | None) -> Element | None:
    """The page a new page with @ORDER `order` goes in front of (None: append), so that
    document order follows ORDER. Scans from the end: appending in order costs O(1).
    """
    if order is None:
        return None
    after = None
    for child in sequence.iterchildren(reversed=True):
        child_order = _int_or_none(child.get("ORDER")) if isinstance(child.tag, str) else None
        if child_order is None or child_order <= order:
            return after
        after = child
    return after


# ---- whitespace-preserving tree edits ---------------------------------------------------
# Real METS files are indented; new elements copy their siblings' indentation so a saved
# document stays readable and untouched parts stay byte-identical.


def _is_blank(text: str | None) -> bool:
    return text is not None and text != "" and not text.strip()


def _whitespace_before(element: Element) -> str | None:
    """The indentation in front of `element`, or None when the document is not indented."""
    previous = element.getprevious()
    if previous is not None:
        text = previous.tail
    else:
        parent = element.getparent()
        text = parent.text if parent is not None else None
    return str(text) if _is_blank(text) else None


def _insert(parent: Element, child: Element, before: Element | None = None) -> None:
    """Insert `child` in front of the sibling `before` (default: last), indented like its siblings.

    Never `len(parent)` or `parent[i]`: lxml walks the child list for those, which made
    adding a file O(pages). `append`, `addprevious` and `parent[-1]` are O(1).
    """
    if next(iter(parent), None) is None:
        outer = _whitespace_before(parent)
        if outer is not None and not (parent.text or "").strip():
            parent.text = outer + _INDENT
            child.tail = outer
            _indent_subtree(child, parent.text)
        parent.append(child)
        return
    if before is not None:
        previous = before.getprevious()
        whitespace = parent.text if previous is None else previous.tail
        child.tail = whitespace
        before.addprevious(child)
    else:
        last = parent[-1]
        whitespace = parent.text
        child.tail = last.tail
        last.tail = whitespace
        parent.append(child)
    if _is_blank(whitespace):
        _indent_subtree(child, whitespace)


def _indent_subtree(element: Element, indentation: str) -> None:
    """Indent a new element's children one level deeper than `indentation`."""
    if len(element) == 0:
        return
    inner = indentation + _INDENT
    element.text = inner
    for child in element:
        child.tail = inner
        _indent_subtree(child, inner)
    element[-1].tail = indentation


def _remove(element: Element) -> None:
    parent = element.getparent()
    if parent is None:
        return
    if element.getnext() is None:  # its tail is the indentation of the parent's end tag
        previous = element.getprevious()
        if previous is not None:
            previous.tail = element.tail
        elif _is_blank(parent.text):
            parent.text = None
    parent.remove(element)
