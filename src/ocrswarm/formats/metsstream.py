"""A METS on disk, read and extended by streaming it through: never held in memory.

`Mets` keeps a whole document in lxml, some KiB per file: right for a processor run or a
workspace command, too much for the engine, whose METS writer lives as long as a job of
100,000 pages. Here the file on disk is the truth and memory stays flat:

- `read_outline` streams the METS once for what a run needs: pages in order, fileGrps,
  agents and, for the fileGrps asked for, each page's files.
- `MetsAppender.add` streams the METS into a temporary file and renames that into place
  (atomically). Every byte it does not change is copied verbatim — namespaces, prefixes,
  comments, formatting, other sections — and new entries are spliced in where they belong:
  a mets:file into its fileGrp (made when missing) in page order, the order of the
  physical structMap, however late its page finished; its mets:fptr into the page's div
  (made when missing); agents after the last mets:agent. An entry whose ID the document
  already lists replaces that entry (the old mets:file and its fptrs go), so registering
  again never duplicates.

Page order needs to know, in the fileSec, where a page's files go among the fileGrp's
others, which only the structMap (after the fileSec) says. The appender therefore keeps a
small index between saves: each page's ordinal and, per fileGrp it writes into, how many
files each page has there (the fileGrp's files being in page order, which it keeps so).
That is a few bytes per page and nothing per file; it is built by one streamed read, and
again whenever someone else changed the file.

Expat reports where each tag starts in the file, which is what makes the verbatim copy
possible; documents are refused or accepted as `safexml` does.
"""

from __future__ import annotations

import codecs
import contextlib
import itertools
import os
import re
import sys
from array import array
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from ocrswarm.errors import FormatError, MetsError
from ocrswarm.formats.atomicfile import atomic_writer
from ocrswarm.formats.mets import (
    NS_METS,
    NS_OCRD,
    NS_XLINK,
    Agent,
    MetsFile,
    check_agent,
    check_file_entry,
    check_id,
    checked_text,
    is_url,
)
from ocrswarm.formats.safexml import expat_parser, stream_xml

# Names as expat reports them with namespace_separator=" ".
_M = NS_METS + " "
_METSHDR = _M + "metsHdr"
_AGENT = _M + "agent"
_NAME = _M + "name"
_NOTE = _M + "note"
_FILESEC = _M + "fileSec"
_FILEGRP = _M + "fileGrp"
_FILE = _M + "file"
_FLOCAT = _M + "FLocat"
_STRUCTMAP = _M + "structMap"
_DIV = _M + "div"
_FPTR = _M + "fptr"
_HREF = NS_XLINK + " href"
_OPTION = NS_OCRD + " option"
# mets.xsd's order of the children of mets:mets; anything else counts as after all of them.
_RANK = {
    _METSHDR: 0,
    _M + "dmdSec": 1,
    _M + "amdSec": 2,
    _FILESEC: 3,
    _STRUCTMAP: 4,
    _M + "structLink": 5,
    _M + "behaviorSec": 6,
}
_AFTER_ALL = 99
# Encodings in which every byte below 0x80 is ASCII, so that tags can be found and new
# text spliced in (with character references for what the encoding cannot carry).
_SPLICEABLE = ("utf_8", "ascii", "latin_1", "iso8859", "cp125")
_WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
_UNIT = "  "  # indentation step when the document shows none
_COPY_CHUNK = 1 << 16
_LOOK_BEHIND = 512
_START_TAG = re.compile(rb"<[^\s/>]+(?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*\s*(/?)>")
_WHITESPACE = b" \t\r\n"
_NOWHERE = 1 << 62  # the position of an entry that goes after every file of its fileGrp
_NO_ORDER = -(1 << 63)


class FileEntry(Protocol):
    """A file to list: where it goes (fileGrp, page) and what it is."""

    @property
    def file_grp(self) -> str: ...
    @property
    def file_id(self) -> str: ...
    @property
    def mimetype(self) -> str: ...
    @property
    def href(self) -> str: ...
    @property
    def page_id(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class NewFile:
    """A `FileEntry` made on the spot."""

    file_grp: str
    file_id: str
    mimetype: str
    href: str
    page_id: str | None


@dataclass(frozen=True, slots=True)
class NewPage:
    """A physical page to add at the end; ORDER continues the numbering when omitted."""

    page_id: str
    order: int | None = None
    label: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """An entry `MetsAppender.add` left out, and why."""

    file_id: str
    page_id: str | None
    reason: str


@dataclass(slots=True)
class MetsOutline:
    """What one streamed read of a METS found (`read_outline`)."""

    file_groups: list[str]  # every fileGrp USE, in document order
    page_ids: list[str]  # physical pages, by ORDER when every page has one
    agents: list[Agent]
    mimetypes: dict[str, set[str]]  # fileGrp -> the MIME types of its files
    page_files: dict[str, list[MetsFile]]  # page -> its files in the fileGrps asked for
    file_counts: dict[str, array[int]]  # counted fileGrp -> files per page, as page_ids

    def files_of(
        self, page_id: str, file_grp: str | None = None, mimetype: str | None = None
    ) -> list[MetsFile]:
        """The page's files (of the fileGrps read), in the order its div names them."""
        return [
            file
            for file in self.page_files.get(page_id, ())
            if (file_grp is None or file.file_grp == file_grp)
            and (mimetype is None or file.mimetype == mimetype)
        ]


def read_outline(
    path: Path, file_grps: Collection[str] = (), *, counted_grps: Collection[str] = ()
) -> MetsOutline:
    """Stream the METS at `path` once: `file_grps` are the fileGrps whose files are wanted
    page by page, `counted_grps` those of which it is enough to know how many files each
    page has (memory: the files asked for, a number per page, nothing of the others)."""
    with _open(path) as stream:
        return _scan(stream, path, collect=frozenset(file_grps), count=frozenset(counted_grps))


class MetsAppender:
    """Adds files, pages and agents to the METS at `path`, streaming it (module docstring).

    Not safe for concurrent use; one appender per METS file.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None  # of the file the index describes
        self._ordinals: dict[str, int] = {}  # page ID -> position in page order
        self._counts: dict[str, array[int]] = {}  # fileGrp -> files per page ordinal

    def add(
        self,
        files: Sequence[FileEntry],
        *,
        agents: Sequence[Agent] = (),
        pages: Sequence[NewPage] = (),
        durable: bool = True,
    ) -> list[Rejected]:
        """List `files` (replacing entries of the same ID), add `pages` and `agents`, save.

        One streamed pass, written atomically (`durable`: synced before and after the
        rename). Entries that cannot go in — an invalid name, an ID another element of the
        document uses — are left out and returned; a MetsError only when the document
        itself cannot be written (no METS, an agent or page that cannot be written).
        """
        rejected: list[Rejected] = []
        entries: dict[str, FileEntry] = {}
        for entry in files:
            try:
                check_file_entry(
                    entry.file_grp, entry.file_id, entry.href, entry.mimetype, entry.page_id
                )
            except MetsError as error:
                rejected.append(Rejected(entry.file_id, entry.page_id, str(error)))
                continue
            entries.pop(entry.file_id, None)  # the later registration wins
            entries[entry.file_id] = entry
        for agent in agents:
            check_agent(agent)
        for page in pages:
            check_id(page.page_id, "page ID")
            if page.label is not None:
                checked_text(page.label, "page label", allow_empty=True)
        explicit_pages = {page.page_id for page in pages}
        while True:
            with _open(self.path) as source:
                stamp = _stamp_of(source)
                groups = {entry.file_grp for entry in entries.values()}
                if stamp != self._stamp or not groups.issubset(self._counts):
                    self._index(source, groups.union(self._counts))
                try:
                    plan = _Plan(list(entries.values()), pages, agents, self._ordinals)
                    plan.place(self._counts)
                    with atomic_writer(self.path, durable=durable) as target:
                        _Splice(source, target, plan, self.path).run()
                except _Collision as collision:
                    for used, reason in collision.problems.items():
                        if used in explicit_pages:
                            raise MetsError(f"cannot add page {used!r}: {reason}") from None
                        if used in entries:  # a file ID taken
                            hit = [entries[used]]
                        else:  # a new page's ID taken: its files cannot go in
                            hit = [e for e in entries.values() if e.page_id == used]
                        for entry in hit:
                            del entries[entry.file_id]
                            rejected.append(Rejected(entry.file_id, entry.page_id, reason))
                    continue
            self._learn(plan)
            return rejected

    def read_index(self, file_grps: Collection[str] = ()) -> MetsOutline:
        """Build the index now, counting the files of `file_grps` (those `add` will write
        into; others are counted when first written), and return the outline it came
        from (its agents, for instance). `add` does this itself when it has to."""
        with _open(self.path) as source:
            return self._index(source, file_grps)

    def _index(self, source: IO[bytes], groups: Collection[str]) -> MetsOutline:
        """Read the page order and, for `groups`, the files per page (one streamed read)."""
        scan = _scan(source, self.path, count=frozenset(groups))
        self._ordinals = {page_id: n for n, page_id in enumerate(scan.page_ids)}
        self._counts = scan.file_counts
        self._stamp = _stamp_of(source)
        return scan

    def _learn(self, plan: _Plan) -> None:
        """Bring the index up to date with what the pass wrote (or have it read again, if
        the document held pages the index did not know)."""
        if len(plan.new_pages) != plan.pages_planned:
            self._stamp = None
            return
        self._stamp = _stamp_of_path(self.path)
        for page_id in plan.new_pages:
            self._ordinals[page_id] = len(self._ordinals)
        for grp in plan.created_groups:
            self._counts[grp] = array("I")
        for grp, deltas in plan.deltas.items():
            counts = self._counts.get(grp)
            if counts is None:
                continue
            if len(counts) < len(self._ordinals):
                counts.extend(itertools.repeat(0, len(self._ordinals) - len(counts)))
            for ordinal, delta in deltas.items():
                counts[ordinal] = max(0, counts[ordinal] + delta)


# ---- reading ------------------------------------------------------------------------------


@contextlib.contextmanager
def _open(path: Path) -> Iterator[IO[bytes]]:
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed by this context manager
    except FileNotFoundError:
        raise FormatError(f"no METS file at {path}") from None
    except OSError as error:
        raise FormatError(f"cannot read METS {path}: {error.strerror or error}") from error
    with stream:
        yield stream


def _stamp_of(stream: IO[bytes]) -> tuple[int, int, int]:
    status = os.fstat(stream.fileno())
    return status.st_ino, status.st_mtime_ns, status.st_size


def _stamp_of_path(path: Path) -> tuple[int, int, int]:
    status = os.stat(path)
    return status.st_ino, status.st_mtime_ns, status.st_size


def _scan(
    stream: IO[bytes],
    path: Path,
    *,
    collect: frozenset[str] = frozenset(),
    count: frozenset[str] = frozenset(),
) -> MetsOutline:
    reader = _Reader(collect, count)
    parser = expat_parser(what=f"METS {path}")
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    reader.parser = parser
    stream.seek(0)
    try:
        stream_xml(stream, parser, what=f"METS {path}")
    finally:
        reader.parser = None  # no cycle through the handlers
    if reader.root is not None and reader.root != _M + "mets":
        raise MetsError(f"METS {path} is not a METS document (root element {reader.root})")
    return reader.result(path)


class _Reader:
    """Expat handlers that note what `_scan` reports; nothing per file but of the fileGrps
    asked for."""

    def __init__(self, collect: frozenset[str], count: frozenset[str]) -> None:
        self.parser: Any = None
        self.collect = collect
        self.count = count
        self.root: str | None = None
        self.depth = 0
        self.section = ""
        self.groups: list[str] = []
        self.group_stack: list[tuple[int, str]] = []  # (depth, USE) of open fileGrps
        self.mimetypes: dict[str, set[str]] = {}
        self.file: list[Any] | None = None  # [id, grp, mimetype, depth, href, loctype, local]
        self.collected: dict[str, tuple[str, str, str, str]] = {}  # id -> grp, mime, href, loc
        self.counted: dict[str, str] = {}  # id -> grp
        self.physical_seen = False
        self.in_physical = False
        self.sequence_seen = False
        self.in_sequence = False
        self.page: str | None = None
        self.page_ids: list[str] = []
        self.orders = array("q")  # each page's ORDER (_NO_ORDER: none), compactly
        self.ordered = True  # every page has an ORDER
        self.page_files: dict[str, list[MetsFile]] = {}
        self.page_counts: dict[str, array[int]] = {grp: array("I") for grp in count}
        self.agents: list[Agent] = []
        self.agent: list[Any] | None = None  # [attributes, name, notes]
        self.text: list[str] = []
        self.note_option = ""

    def start(self, name: str, attributes: dict[str, str]) -> None:
        self.depth += 1
        depth = self.depth
        if depth == 1:
            self.root = name
            return
        if depth == 2:
            self.section = name
            if (
                name == _STRUCTMAP
                and not self.physical_seen
                and (attributes.get("TYPE") or "").upper() == "PHYSICAL"
            ):
                self.physical_seen = self.in_physical = True
            return
        section = self.section
        if section == _FILESEC:
            self._file_section_start(name, attributes, depth)
        elif self.in_physical:
            self._structure_start(name, attributes, depth)
        elif section == _METSHDR:
            self._header_start(name, attributes, depth)

    def end(self, name: str) -> None:
        depth = self.depth
        self.depth -= 1
        if depth == 2:
            self.section = ""
            self.in_physical = False
            return
        if self.section == _FILESEC:
            if self.file is not None and depth == self.file[3]:
                self._file_end()
            elif self.group_stack and self.group_stack[-1][0] == depth:
                self.group_stack.pop()
        elif self.in_physical:
            if depth == 3:
                self.in_sequence = False
            elif depth == 4:
                self.page = None
        elif self.section == _METSHDR:
            self._header_end(name, depth)

    def _file_section_start(self, name: str, attributes: dict[str, str], depth: int) -> None:
        if name == _FILEGRP:
            use = attributes.get("USE")
            if use is not None:
                self.groups.append(use)
                self.group_stack.append((depth, use))
            else:
                self.group_stack.append((depth, ""))
        elif name == _FILE and self.group_stack and self.group_stack[-1][0] == depth - 1:
            grp = self.group_stack[-1][1]
            file_id = attributes.get("ID") or ""
            mimetype = sys.intern(attributes.get("MIMETYPE") or "")  # a few, many times
            known = self.mimetypes.get(grp)
            if known is None:
                self.mimetypes[grp] = {mimetype}
            elif mimetype not in known:
                known.add(mimetype)
            if grp in self.collect:
                self.file = [file_id, grp, mimetype, depth, None, "", False]
            elif grp in self.count:
                self.counted[file_id] = grp
        elif name == _FLOCAT and self.file is not None and depth == self.file[3] + 1:
            loctype = sys.intern(attributes.get("LOCTYPE") or "")
            local = loctype == "OTHER" and attributes.get("OTHERLOCTYPE") == "FILE"
            if self.file[4] is None or (local and not self.file[6]):
                self.file[4] = attributes.get(_HREF) or ""
                self.file[5] = loctype
                self.file[6] = local

    def _file_end(self) -> None:
        assert self.file is not None
        file_id, grp, mimetype, _, href, loctype, _ = self.file
        self.collected[file_id] = (grp, mimetype, href or "", loctype)
        self.file = None

    def _structure_start(self, name: str, attributes: dict[str, str], depth: int) -> None:
        if depth == 3:
            if name == _DIV and not self.sequence_seen:
                self.sequence_seen = self.in_sequence = True
        elif depth == 4:
            if self.in_sequence and name == _DIV:
                page_id = attributes.get("ID")
                if not page_id:
                    raise MetsError("a physical page of the METS has no ID")
                self.page = page_id
                self.page_ids.append(page_id)
                order = _int_or_none(attributes.get("ORDER"))
                if order is None:
                    self.ordered = False
                self.orders.append(_NO_ORDER if order is None else order)
                for counts in self.page_counts.values():
                    counts.append(0)
        elif depth == 5 and self.page is not None and name == _FPTR:
            file_id = attributes.get("FILEID") or ""
            grp = self.counted.get(file_id)
            if grp is not None:
                self.page_counts[grp][-1] += 1
            found = self.collected.get(file_id)
            if found is not None:
                grp, mimetype, href, loctype = found
                file = MetsFile(file_id, grp, mimetype, self.page, href, loctype)
                self.page_files.setdefault(self.page, []).append(file)

    def _header_start(self, name: str, attributes: dict[str, str], depth: int) -> None:
        if depth == 3 and name == _AGENT:
            self.agent = [attributes, None, []]
        elif depth == 4 and self.agent is not None and name in (_NAME, _NOTE):
            self.text = []
            self.note_option = attributes.get(_OPTION) or ""
            self.parser.CharacterDataHandler = self.text.append

    def _header_end(self, name: str, depth: int) -> None:
        agent = self.agent
        if agent is None:
            return
        if depth == 4:
            self.parser.CharacterDataHandler = None
            text = "".join(self.text)
            if name == _NAME and agent[1] is None:
                agent[1] = text
            elif name == _NOTE:
                agent[2].append((self.note_option, text))
        elif depth == 3:
            attributes = agent[0]
            self.agents.append(
                Agent(
                    name=agent[1] or "",
                    role=attributes.get("ROLE") or "",
                    type=attributes.get("TYPE"),
                    othertype=attributes.get("OTHERTYPE"),
                    otherrole=attributes.get("OTHERROLE"),
                    notes=tuple(agent[2]),
                )
            )
            self.agent = None

    def result(self, path: Path) -> MetsOutline:
        if len(set(self.page_ids)) != len(self.page_ids):
            counted = Counter(self.page_ids)
            twice = sorted(page_id for page_id, n in counted.items() if n > 1)
            raise MetsError(f"METS {path}: page IDs appear twice: {', '.join(twice[:5])}")
        page_ids, counts = self.page_ids, self.page_counts
        orders = self.orders
        if self.ordered and any(orders[n] > orders[n + 1] for n in range(len(orders) - 1)):
            order = sorted(range(len(page_ids)), key=orders.__getitem__)
            page_ids = [page_ids[index] for index in order]
            counts = {
                grp: array("I", (per_page[index] for index in order))
                for grp, per_page in counts.items()
            }
        return MetsOutline(
            file_groups=self.groups,
            page_ids=page_ids,
            agents=self.agents,
            mimetypes=self.mimetypes,
            page_files=self.page_files,
            file_counts=counts,
        )


# ---- writing ------------------------------------------------------------------------------


class _Collision(Exception):
    """Entries whose IDs other elements of the document use: the pass is abandoned."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__(problems)
        self.problems = problems


@dataclass(slots=True)
class _Placed:
    position: int  # goes in front of the fileGrp's existing file with this index
    entry: FileEntry


class _Plan:
    """What one pass adds where, worked out before it reads the document."""

    def __init__(
        self,
        entries: list[FileEntry],
        pages: Sequence[NewPage],
        agents: Sequence[Agent],
        ordinals: dict[str, int],
    ) -> None:
        self.entries = entries
        self.agents = list(agents)
        self.file_ids = {entry.file_id for entry in entries}
        # Pages not in the index: to be made at the end of the physical sequence, unless
        # the pass finds them after all.
        self.new_pages: dict[str, NewPage] = {}
        for page in pages:
            if page.page_id not in ordinals:
                self.new_pages.setdefault(page.page_id, page)
        for entry in entries:
            if entry.page_id is not None and entry.page_id not in ordinals:
                self.new_pages.setdefault(entry.page_id, NewPage(entry.page_id))
        self.pages_planned = len(self.new_pages)
        taken = [i for i in self.file_ids if i in self.new_pages or i in ordinals]
        if taken:
            raise _Collision({i: f"ID {i!r} is a page's ID" for i in taken})
        self.ordinals = ordinals
        self.fptrs: dict[str, list[str]] = {}  # page -> file IDs to point to
        self.placed: dict[str, list[_Placed]] = {}  # fileGrp -> entries, by position
        self.deltas: dict[str, dict[int, int]] = {}  # fileGrp -> ordinal -> change in count
        self.tracked: Collection[str] = ()
        self.created_groups: list[str] = []
        self.orders_complete = True  # every existing page has an ORDER (seen in the pass)
        self.max_order = 0

    def place(self, counts: dict[str, array[int]]) -> None:
        """Where each entry goes among its fileGrp's files: after every file of the pages
        up to its own, as `counts` (files per page ordinal, by fileGrp) has them."""
        new_ordinal = {p: len(self.ordinals) + n for n, p in enumerate(self.new_pages)}

        def ordinal(page_id: str | None) -> int:
            if page_id is None:
                return _NOWHERE
            known = self.ordinals.get(page_id)
            return new_ordinal[page_id] if known is None else known

        by_group: dict[str, list[tuple[int, int, FileEntry]]] = {}
        for number, entry in enumerate(self.entries):
            key = ordinal(entry.page_id)
            by_group.setdefault(entry.file_grp, []).append((key, number, entry))
            if entry.page_id is not None:
                self.fptrs.setdefault(entry.page_id, []).append(entry.file_id)
                grp_deltas = self.deltas.setdefault(entry.file_grp, {})
                grp_deltas[key] = grp_deltas.get(key, 0) + 1
        for grp, items in by_group.items():
            items.sort(key=lambda item: (item[0], item[1]))
            positions = _positions(counts.get(grp), [key for key, _, _ in items])
            self.placed[grp] = [
                _Placed(position, entry)
                for position, (_, _, entry) in zip(positions, items, strict=True)
            ]
        self.tracked = counts.keys()

    def dropped(self, grp: str, page_id: str) -> None:
        """A replaced file of `grp` no longer on `page_id`."""
        ordinal = self.ordinals.get(page_id)
        if ordinal is not None and grp in self.tracked:
            grp_deltas = self.deltas.setdefault(grp, {})
            grp_deltas[ordinal] = grp_deltas.get(ordinal, 0) - 1


def _positions(counts: array[int] | None, ordinals: list[int]) -> list[int]:
    """For each of the sorted page `ordinals`: how many of the fileGrp's files come before
    an entry of that page, i.e. lie on it or on earlier pages (`counts`: files per page;
    None: not known, the entries go last)."""
    if counts is None:
        return [_NOWHERE] * len(ordinals)
    positions = []
    files = page = 0
    for ordinal in ordinals:
        if ordinal == _NOWHERE:
            positions.append(_NOWHERE)
            continue
        while page <= ordinal and page < len(counts):
            files += counts[page]
            page += 1
        positions.append(files)
    return positions


@dataclass(slots=True)
class _Node:
    """A new element to write, in the METS namespace."""

    tag: str
    attributes: list[tuple[str, str]] = field(default_factory=list)
    children: Iterable[_Node] = ()  # made as they are written: a batch is never all nodes
    text: str | None = None


@dataclass(slots=True)
class _Open:
    """An open element the pass may add children to."""

    start: int  # byte offset of its start tag
    depth: int
    has_children: bool = False


@dataclass(slots=True)
class _Group(_Open):
    use: str = ""
    index: int = 0  # how many of its files the pass has met
    pending: list[_Placed] = field(default_factory=list)


class _Splice:
    """One pass: expat reads `source`, `target` gets the copy with the plan spliced in."""

    def __init__(self, source: IO[bytes], target: IO[bytes], plan: _Plan, path: Path) -> None:
        self.source = source
        self.fd = source.fileno()
        self.target = target
        self.plan = plan
        self.path = path
        self.parser: Any = None
        self.copied = 0  # source bytes up to here are written (or skipped)
        self.encoding = "utf-8"
        self.unit: str | None = None
        self.depth = 0
        self.open: list[_Open] = []  # the elements children may go into, innermost last
        self.bindings: dict[str | None, list[str]] = {}
        self.declared: list[str | None] = []  # prefixes declared on the coming element
        self.root: _Open | None = None
        self.section: str = ""
        self.header: _Open | None = None
        self.header_done = not plan.agents
        self.file_section: _Open | None = None
        self.file_section_done = False
        self.groups_seen: set[str] = set()
        self.group_stack: list[_Group] = []
        self.physical: _Open | None = None  # the physical structMap, while in it
        self.physical_done = False
        self.sequence: _Open | None = None
        self.sequence_done = False
        self.page: _Open | None = None
        self.page_id = ""
        self.dropping: tuple[int, int] | None = None  # (depth, start) of a replaced element
        self.dropped_groups: dict[str, str] = {}  # replaced file ID -> its fileGrp
        self.problems: dict[str, str] = {}

    def run(self) -> None:
        head = os.pread(self.fd, 4, 0)
        if head.startswith(_WIDE_BOMS):
            raise MetsError(f"METS {self.path} is in UTF-16 or UTF-32; convert it to UTF-8")
        parser = expat_parser(what=f"METS {self.path}")
        parser.XmlDeclHandler = self._declaration
        parser.StartNamespaceDeclHandler = self._namespace_start
        parser.EndNamespaceDeclHandler = self._namespace_end
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        self.parser = parser
        self.source.seek(0)
        try:
            stream_xml(self.source, parser, what=f"METS {self.path}")
        finally:
            self.parser = None  # no cycle through the handlers: the batch goes at once
        if self.problems:
            raise _Collision(self.problems)
        self._copy_to(os.fstat(self.fd).st_size)

    # -- expat handlers ---------------------------------------------------------------------

    def _declaration(self, version: str, encoding: str | None, standalone: int) -> None:
        if encoding is None:
            return
        try:
            name = codecs.lookup(encoding).name
        except LookupError:
            raise MetsError(f"METS {self.path}: unknown encoding {encoding!r}") from None
        if not name.replace("-", "_").startswith(_SPLICEABLE):
            raise MetsError(f"METS {self.path} is encoded in {encoding}; convert it to UTF-8")
        self.encoding = name

    def _namespace_start(self, prefix: str | None, uri: str) -> None:
        self.bindings.setdefault(prefix, []).append(uri)
        self.declared.append(prefix)

    def _namespace_end(self, prefix: str | None) -> None:
        self.bindings[prefix].pop()

    def _start(self, name: str, attributes: dict[str, str]) -> None:
        depth = self.depth = self.depth + 1
        if self.dropping is None:
            self._element(name, attributes, depth)
        if self.declared:
            self.declared.clear()

    def _element(self, name: str, attributes: dict[str, str], depth: int) -> None:
        """An element starts (one not inside a replaced one)."""
        open_elements = self.open
        if open_elements and open_elements[-1].depth == depth - 1:
            open_elements[-1].has_children = True
        element_id = attributes.get("ID")
        replaced = existing_page = False
        if depth > 2:
            if self.section == _FILESEC:
                if name in (_FILE, _FILEGRP):
                    offset = self.parser.CurrentByteIndex
                    self._file_section_start(name, attributes, offset, depth)
                    replaced = self.dropping is not None
            elif self.physical is not None:
                if depth <= 5:
                    offset = self.parser.CurrentByteIndex
                    self._structure_start(name, attributes, offset, depth)
                    existing_page = self.page is not None and self.page.start == offset
            elif self.header is not None and depth == 3 and name != _AGENT:
                self._add_agents_before(self.parser.CurrentByteIndex)
        elif depth == 2:
            self._section_start(name, attributes, self.parser.CurrentByteIndex)
        else:
            self.root = _Open(self.parser.CurrentByteIndex, depth)
            open_elements.append(self.root)
        if element_id is not None and (
            (element_id in self.plan.file_ids and not replaced)
            or (element_id in self.plan.new_pages and not existing_page)
        ):
            self.problems[element_id] = f"ID {element_id!r} is used by another METS element"

    def _end(self, name: str) -> None:
        depth = self.depth
        self.depth = depth - 1
        if self.dropping is not None:
            if depth == self.dropping[0]:
                self._skip_element(self.dropping[1], self.parser.CurrentByteIndex)
                self.dropping = None
            return
        open_elements = self.open
        if not open_elements or open_elements[-1].depth != depth:
            return
        top = open_elements.pop()
        offset = self.parser.CurrentByteIndex
        if top is self.root:
            self._add_sections(_AFTER_ALL, offset, at_end=True)
        elif top is self.header:
            self._add_agents_at_end(offset)
            self.header = None
        elif top is self.file_section:
            self._add_groups(offset)
            self.file_section = None
        elif isinstance(top, _Group):
            self._finish_group(top, offset)
        elif top is self.page:
            self._finish_page(offset)
        elif top is self.sequence:
            self._finish_sequence(offset)
        elif top is self.physical:
            self._finish_physical(offset)

    # -- sections -----------------------------------------------------------------------------

    def _section_start(self, name: str, attributes: dict[str, str], offset: int) -> None:
        assert self.root is not None
        if self.unit is None:
            self.unit = self._learn_unit(offset)
        self._add_sections(_RANK.get(name, _AFTER_ALL), offset, at_end=False)
        self.section = name
        if name == _METSHDR and self.header is None and not self.header_done:
            self.header = _Open(offset, 2)
            self.open.append(self.header)
        elif name == _FILESEC and not self.file_section_done:
            self.file_section_done = True
            self.file_section = _Open(offset, 2)
            self.open.append(self.file_section)
        elif (
            name == _STRUCTMAP
            and not self.physical_done
            and (attributes.get("TYPE") or "").upper() == "PHYSICAL"
        ):
            self.physical = _Open(offset, 2)
            self.physical_done = True
            self.open.append(self.physical)

    def _add_sections(self, rank: int, offset: int, *, at_end: bool) -> None:
        """Make the sections the plan needs and the document lacks, in front of the section
        of `rank` starting at `offset` (or at the end of mets:mets)."""
        nodes: list[_Node] = []
        if not self.header_done and rank > 0:
            nodes.append(
                _Node(
                    "metsHdr",
                    [("CREATEDATE", datetime.now(UTC).isoformat(timespec="seconds"))],
                    [self._agent_node(agent) for agent in self.plan.agents],
                )
            )
            self.header_done = True
        if not self.file_section_done and rank > 3:
            self.file_section_done = True
            if self.plan.placed:
                nodes.append(_Node("fileSec", children=self._new_group_nodes()))
        if not self.physical_done and rank > 4 and (self.plan.fptrs or self.plan.new_pages):
            nodes.append(_Node("structMap", [("TYPE", "PHYSICAL")], [self._sequence_node()]))
            self.physical_done = True
        if not nodes:
            return
        if at_end:
            assert self.root is not None
            self._append_children(self.root, offset, nodes)
        else:
            self._insert_before(offset, nodes)

    def _learn_unit(self, offset: int) -> str:
        indentation = self._indentation_at(offset)
        return indentation if indentation else _UNIT

    # -- metsHdr ------------------------------------------------------------------------------

    def _add_agents_before(self, offset: int) -> None:
        if not self.header_done:
            self._insert_before(offset, [self._agent_node(agent) for agent in self.plan.agents])
            self.header_done = True

    def _add_agents_at_end(self, offset: int) -> None:
        if not self.header_done and self.header is not None:
            nodes = [self._agent_node(agent) for agent in self.plan.agents]
            self._append_children(self.header, offset, nodes)
            self.header_done = True

    def _agent_node(self, agent: Agent) -> _Node:
        attributes = [("TYPE", agent.type or "OTHER")]
        if agent.othertype is not None:
            attributes.append(("OTHERTYPE", agent.othertype))
        attributes.append(("ROLE", agent.role))
        if agent.otherrole is not None:
            attributes.append(("OTHERROLE", agent.otherrole))
        option, declaration = self._qualified(NS_OCRD, "ocrd", "option")
        if declaration and agent.notes:
            attributes.append(declaration)
        children = [_Node("name", text=agent.name)]
        for key, text in agent.notes:
            children.append(_Node("note", [(option, key)] if key else [], text=text))
        return _Node("agent", attributes, children)

    # -- fileSec ------------------------------------------------------------------------------

    def _file_section_start(
        self, name: str, attributes: dict[str, str], offset: int, depth: int
    ) -> None:
        if name == _FILEGRP:
            use = attributes.get("USE") or ""
            group = _Group(offset, depth, use=use)
            if use and use not in self.groups_seen:
                self.groups_seen.add(use)
                group.pending = list(self.plan.placed.get(use, ()))
            self.group_stack.append(group)
            self.open.append(group)
        elif name == _FILE and self.group_stack and self.group_stack[-1].depth == depth - 1:
            group = self.group_stack[-1]
            index = group.index
            group.index += 1
            if group.pending and group.pending[0].position <= index:
                due = list(itertools.takewhile(lambda p: p.position <= index, group.pending))
                del group.pending[: len(due)]
                self._insert_before(offset, (self._file_node(p.entry) for p in due))
            file_id = attributes.get("ID")
            if file_id in self.plan.file_ids:
                self.dropped_groups[file_id] = group.use
                self._start_dropping(depth, offset)

    def _finish_group(self, group: _Group, offset: int) -> None:
        self.group_stack.pop()
        if group.pending:
            nodes = (self._file_node(p.entry) for p in group.pending)
            self._append_children(group, offset, nodes)

    def _add_groups(self, offset: int) -> None:
        assert self.file_section is not None
        nodes = self._new_group_nodes()
        if nodes:
            self._append_children(self.file_section, offset, nodes)

    def _new_group_nodes(self) -> list[_Node]:
        nodes = []
        for grp, placed in self.plan.placed.items():
            if grp not in self.groups_seen:
                files = (self._file_node(p.entry) for p in placed)
                nodes.append(_Node("fileGrp", [("USE", grp)], files))
                self.plan.created_groups.append(grp)
        self.groups_seen.update(self.plan.placed)
        return nodes

    def _file_node(self, entry: FileEntry) -> _Node:
        href, declaration = self._qualified(NS_XLINK, "xlink", "href")
        if is_url(entry.href):
            location = [("LOCTYPE", "URL")]
        else:
            location = [("LOCTYPE", "OTHER"), ("OTHERLOCTYPE", "FILE")]
        if declaration:
            location.append(declaration)
        location.append((href, entry.href))
        return _Node(
            "file",
            [("ID", entry.file_id), ("MIMETYPE", entry.mimetype)],
            [_Node("FLocat", location)],
        )

    # -- the physical structMap -----------------------------------------------------------

    def _structure_start(
        self, name: str, attributes: dict[str, str], offset: int, depth: int
    ) -> None:
        if depth == 3:
            if name == _DIV and not self.sequence_done:
                self.sequence = _Open(offset, depth)
                self.sequence_done = True
                self.open.append(self.sequence)
        elif depth == 4:
            if self.sequence is not None and name == _DIV:
                self.page_id = attributes.get("ID") or ""
                self.page = _Open(offset, depth)
                self.open.append(self.page)
                self.plan.new_pages.pop(self.page_id, None)
                order = _int_or_none(attributes.get("ORDER"))
                if order is None:
                    self.plan.orders_complete = False
                else:
                    self.plan.max_order = max(self.plan.max_order, order)
        elif depth == 5 and self.page is not None and name == _FPTR:
            file_id = attributes.get("FILEID") or ""
            if file_id in self.plan.file_ids:
                grp = self.dropped_groups.get(file_id)
                if grp is not None:
                    self.plan.dropped(grp, self.page_id)
                self._start_dropping(depth, offset)

    def _finish_page(self, offset: int) -> None:
        page = self.page
        self.page = None
        file_ids = self.plan.fptrs.get(self.page_id)
        if page is not None and file_ids:
            self._append_children(page, offset, [_fptr_node(i) for i in file_ids])

    def _finish_sequence(self, offset: int) -> None:
        assert self.sequence is not None
        if self.plan.new_pages:
            self._append_children(self.sequence, offset, self._new_page_nodes())
        self.sequence = None

    def _finish_physical(self, offset: int) -> None:
        assert self.physical is not None
        if self.sequence_done:
            self.physical = None
            return
        self.sequence_done = True
        if self.plan.fptrs or self.plan.new_pages:
            self._append_children(self.physical, offset, [self._sequence_node()])
        self.physical = None

    def _sequence_node(self) -> _Node:
        self.sequence_done = True
        return _Node("div", [("TYPE", "physSequence")], self._new_page_nodes())

    def _new_page_nodes(self) -> Iterator[_Node]:
        order = self.plan.max_order
        for page in self.plan.new_pages.values():
            attributes = [("ID", page.page_id), ("TYPE", "page")]
            if page.order is not None:
                attributes.append(("ORDER", str(page.order)))
                order = max(order, page.order)
            elif self.plan.orders_complete:
                order += 1
                attributes.append(("ORDER", str(order)))
            if page.label is not None:
                attributes.append(("LABEL", page.label))
            children = [_fptr_node(i) for i in self.plan.fptrs.get(page.page_id, ())]
            yield _Node("div", attributes, children)

    # -- splicing bytes -----------------------------------------------------------------------

    def _copy_to(self, offset: int) -> None:
        while self.copied < offset:
            chunk = os.pread(self.fd, min(_COPY_CHUNK, offset - self.copied), self.copied)
            if not chunk:
                raise MetsError(f"METS {self.path} changed while it was being written")
            self.target.write(chunk)
            self.copied += len(chunk)

    def _start_dropping(self, depth: int, offset: int) -> None:
        run_start, _ = self._whitespace_before(offset)
        self._copy_to(run_start)
        self.dropping = (depth, offset)

    def _skip_element(self, start: int, end_offset: int) -> None:
        tag_end, empty = self._start_tag(start)
        self.copied = tag_end if empty else self._after_end_tag(end_offset)

    def _insert_before(self, offset: int, nodes: Iterable[_Node]) -> None:
        """Write `nodes` in front of the sibling element starting at `offset`."""
        run_start, run = self._whitespace_before(offset)
        if b"\n" in run:
            indentation: str | None = run[run.rindex(b"\n") + 1 :].decode("ascii")
            self._copy_to(run_start)
        else:
            indentation = None
            self._copy_to(offset)
        self._write_nodes(nodes, indentation, separate=indentation is not None)

    def _append_children(self, parent: _Open, end_offset: int, nodes: Iterable[_Node]) -> None:
        """Write `nodes` as the last children of `parent`, whose end event is at
        `end_offset` (self-closing parents are opened up)."""
        unit = self.unit or _UNIT
        if not parent.has_children:  # perhaps <x/>: only then is the tag looked at
            tag_end, empty = self._start_tag(parent.start)
            if empty:
                self._open_up(parent.start, tag_end, nodes)
                return
        run_start, run = self._whitespace_before(end_offset)
        trailer = ""
        if b"\n" in run:
            inner: str | None = run[run.rindex(b"\n") + 1 :].decode("ascii") + unit
        elif not parent.has_children and (own := self._indentation_at(parent.start)) is not None:
            inner = own + unit
            trailer = "\n" + own
        else:
            inner = None
        self._copy_to(run_start)
        self._write_nodes(nodes, inner, separate=inner is not None)
        self._write(trailer)

    def _open_up(self, start: int, tag_end: int, nodes: Iterable[_Node]) -> None:
        """Write the self-closing element at `start` as an element with `nodes` inside."""
        own = self._indentation_at(start)
        inner = None if own is None else own + (self.unit or _UNIT)
        self._copy_to(start)
        tag = os.pread(self.fd, tag_end - start, start)
        self.target.write(tag[:-2].rstrip(_WHITESPACE) + b">")
        self._write_nodes(nodes, inner, separate=inner is not None)
        if own is not None:
            self._write("\n" + own)
        self.target.write(b"</" + _qualified_name(tag) + b">")
        self.copied = tag_end

    def _write_nodes(
        self, nodes: Iterable[_Node], indentation: str | None, *, separate: bool
    ) -> None:
        prefix = self._mets_prefix()
        unit = self.unit or _UNIT
        parts: list[str] = []
        for node in nodes:
            if separate:
                parts.append("\n" + (indentation or ""))
            parts.extend(_render(node, prefix, indentation, unit))
            if len(parts) > 4096:
                self._write("".join(parts))
                parts.clear()
        self._write("".join(parts))

    def _write(self, text: str) -> None:
        if text:
            self.target.write(text.encode(self.encoding, "xmlcharrefreplace"))

    # -- reading the source around the parser's position ------------------------------------

    def _start_tag(self, start: int) -> tuple[int, bool]:
        """Where the tag starting at `start` ends, and whether it closes itself (`/>`)."""
        size = 4096
        while True:
            data = os.pread(self.fd, size, start)
            match = _START_TAG.match(data)
            if match is not None:
                return start + match.end(), match.group(1) == b"/"
            if len(data) < size:
                raise MetsError(f"METS {self.path}: cannot find the end of a tag at {start}")
            size *= 8

    def _after_end_tag(self, offset: int) -> int:
        data = os.pread(self.fd, 1024, offset)
        end = data.find(b">")
        if not data.startswith(b"</") or end < 0:
            raise MetsError(f"METS {self.path}: no end tag at byte {offset}")
        return offset + end + 1

    def _whitespace_before(self, offset: int) -> tuple[int, bytes]:
        """The run of whitespace in front of `offset` not yet written: (start, bytes)."""
        floor = max(self.copied, offset - _LOOK_BEHIND)
        if floor >= offset:
            return offset, b""
        data = os.pread(self.fd, offset - floor, floor)
        run = data[len(data.rstrip(_WHITESPACE)) :]
        return offset - len(run), run

    def _indentation_at(self, offset: int) -> str | None:
        """The spaces in front of the tag at `offset` on its line; None if it shares its
        line with other markup (a document that is not indented)."""
        floor = max(0, offset - _LOOK_BEHIND)
        data = os.pread(self.fd, offset - floor, floor)
        line_start = data.rfind(b"\n") + 1
        if line_start == 0 and floor > 0:
            return None
        indentation = data[line_start:]
        if indentation.strip(_WHITESPACE) or line_start == 0:
            return None
        return indentation.decode("ascii")

    # -- namespaces -----------------------------------------------------------------------

    def _prefixes_for(self, uri: str) -> Iterator[str | None]:
        """The prefixes bound to `uri` where the pass is (None: the default namespace).
        Declarations of the element being started do not count: new elements go in front
        of it."""
        pending = self.declared
        for prefix, stack in self.bindings.items():
            level = len(stack) - (1 if prefix in pending else 0)
            if level > 0 and stack[level - 1] == uri:
                yield prefix

    def _mets_prefix(self) -> str:
        for prefix in self._prefixes_for(NS_METS):
            return "" if prefix is None else f"{prefix}:"
        raise MetsError(f"METS {self.path}: the METS namespace is not declared here")

    def _qualified(self, uri: str, wanted: str, local: str) -> tuple[str, tuple[str, str] | None]:
        """(attribute name, the declaration it needs or None) for `local` in `uri`."""
        for prefix in self._prefixes_for(uri):
            if prefix is not None:  # attributes never take the default namespace
                return f"{prefix}:{local}", None
        chosen = wanted
        number = 0
        while self.bindings.get(chosen):
            number += 1
            chosen = f"{wanted}{number}"
        return f"{chosen}:{local}", (f"xmlns:{chosen}", uri)


def _fptr_node(file_id: str) -> _Node:
    return _Node("fptr", [("FILEID", file_id)])


def _render(node: _Node, prefix: str, indentation: str | None, unit: str) -> Iterator[str]:
    """The XML of `node`, piece by piece; children one level deeper when indented."""
    tag = prefix + node.tag
    yield "<" + tag + "".join(f' {name}="{_escape_attribute(v)}"' for name, v in node.attributes)
    inner = None if indentation is None else indentation + unit
    opened = False
    for child in node.children:
        if not opened:
            yield ">"
            opened = True
        if inner is not None:
            yield "\n" + inner
        yield from _render(child, prefix, inner, unit)
    if opened:
        yield f"\n{indentation}</{tag}>" if indentation is not None else f"</{tag}>"
    elif node.text is not None:
        yield f">{_escape_text(node.text)}</{tag}>"
    else:
        yield "/>"


def _escape_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_attribute(value: str) -> str:
    return (
        _escape_text(value)
        .replace('"', "&quot;")
        .replace("\t", "&#9;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
    )


def _qualified_name(tag: bytes) -> bytes:
    """The element name of a start tag (`<mets:div ID="x"/>` -> `mets:div`)."""
    end = len(tag)
    for stop in (b" ", b"\t", b"\r", b"\n", b"/", b">"):
        found = tag.find(stop, 1)
        if found > 0:
            end = min(end, found)
    return tag[1:end]


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
