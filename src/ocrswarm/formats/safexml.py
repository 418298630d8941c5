"""The only way ocrswarm parses XML: hostile documents are refused before they can do harm.

A document with a DOCTYPE is refused outright: METS and PAGE never need one, and a DTD is how
entity expansion ("billion laughs"), external entities (local file disclosure) and network
fetches get in. Entities are never resolved and the parser never touches the network.
`parse_xml` builds an lxml tree; `stream_xml` feeds a document too big to hold to expat.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any
from xml.parsers import expat

from lxml import etree

from ocrswarm.errors import FormatError, UnsafeInputError

# Documents larger than this are refused before parsing (a METS of 100,000 pages is ~60 MB).
MAX_XML_BYTES = 512 * 1024 * 1024
_STREAM_CHUNK = 1 << 16


def _parser() -> Any:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
    )


def parse_xml(source: bytes | Path, *, what: str = "XML document") -> Any:
    """Parse `source` (bytes or a file path) into an lxml ElementTree, refusing DTDs.

    Raises UnsafeInputError for a DOCTYPE or an oversized document, FormatError for
    anything that is not well-formed XML. `what` names the document in messages.
    """
    if isinstance(source, Path):
        name = f"{what} {source}"
        try:
            if source.stat().st_size > MAX_XML_BYTES:
                raise UnsafeInputError(f"{name} is larger than {MAX_XML_BYTES} bytes")
            data = source.read_bytes()
        except OSError as error:
            raise FormatError(f"cannot read {name}: {error.strerror or error}") from error
    else:
        name = what
        data = source
        if len(data) > MAX_XML_BYTES:
            raise UnsafeInputError(f"{name} is larger than {MAX_XML_BYTES} bytes")
    # Refuse a DOCTYPE before libxml2 sees it: no entity, internal or external, is ever parsed.
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise UnsafeInputError(f"{name} contains a DOCTYPE or entity declaration; refused")
    try:
        return etree.ElementTree(etree.fromstring(data, _parser()))
    except etree.XMLSyntaxError as error:
        raise FormatError(f"{name} is not well-formed XML: {error}") from error


def stream_xml(source: IO[bytes], parser: Any, *, what: str = "XML document") -> None:
    """Feed the open file `source`, from where it stands, to `parser` (from `expat_parser`)
    in chunks, for documents too large to hold: the handlers see every event, memory stays
    flat.

    The same refusals as `parse_xml`: UnsafeInputError for a DOCTYPE, an entity declaration
    or an oversized file, FormatError for anything that is not well-formed XML. Exceptions
    the handlers raise pass through.
    """
    try:
        size = os.fstat(source.fileno()).st_size
    except OSError as error:
        raise FormatError(f"cannot read {what}: {error.strerror or error}") from error
    if size > MAX_XML_BYTES:
        raise UnsafeInputError(f"{what} is larger than {MAX_XML_BYTES} bytes")
    while True:
        try:
            chunk = source.read(_STREAM_CHUNK)
        except OSError as error:
            raise FormatError(f"cannot read {what}: {error.strerror or error}") from error
        try:
            parser.Parse(chunk, not chunk)
        except expat.ExpatError as error:
            raise FormatError(f"{what} is not well-formed XML: {error}") from error
        if not chunk:
            return


def expat_parser(*, what: str = "XML document") -> Any:
    """A namespace-aware expat parser for `stream_xml` (element and attribute names arrive
    as "namespace-URI local-name"); a DOCTYPE or entity declaration stops it with
    UnsafeInputError before anything is expanded or fetched."""
    parser = expat.ParserCreate(namespace_separator=" ")

    def refuse(*_: object) -> None:
        raise UnsafeInputError(f"{what} contains a DOCTYPE or entity declaration; refused")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    return parser
