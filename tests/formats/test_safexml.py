"""Hostile XML is refused before libxml2 can expand, fetch or disclose anything."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from ocrswarm.errors import FormatError, UnsafeInputError
from ocrswarm.formats import safexml
from ocrswarm.formats.safexml import parse_xml

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<lolz>&lol3;</lolz>"""


def test_well_formed_xml_parses() -> None:
    tree = parse_xml(b"<?xml version='1.0' encoding='UTF-8'?><a><b>text</b></a>")
    assert tree.getroot().findtext("b") == "text"


def test_entity_expansion_is_refused() -> None:
    with pytest.raises(UnsafeInputError, match="DOCTYPE"):
        parse_xml(BILLION_LAUGHS)


def test_external_entity_does_not_disclose_a_local_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    document = f'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file://{secret}">]><a>&x;</a>'
    with pytest.raises(UnsafeInputError):
        parse_xml(document.encode())


def test_external_dtd_is_never_fetched() -> None:
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'<!ENTITY x "fetched">')

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/evil.dtd"
        document = f'<?xml version="1.0"?><!DOCTYPE a SYSTEM "{url}"><a>&x;</a>'
        with pytest.raises(UnsafeInputError):
            parse_xml(document.encode())
    finally:
        server.shutdown()
        server.server_close()
    assert hits == []


def test_malformed_xml_is_a_format_error_naming_the_document(tmp_path: Path) -> None:
    broken = tmp_path / "broken.xml"
    broken.write_bytes(b"<a><b></a>")
    with pytest.raises(FormatError, match=r"broken\.xml") as caught:
        parse_xml(broken, what="METS")
    assert not isinstance(caught.value, UnsafeInputError)
    assert "METS" in str(caught.value)


def test_missing_file_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="cannot read"):
        parse_xml(tmp_path / "absent.xml")


def test_oversized_document_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safexml, "MAX_XML_BYTES", 100)
    with pytest.raises(UnsafeInputError, match="larger than"):
        parse_xml(b"<a>" + b"x" * 200 + b"</a>")


def test_streaming_refuses_what_parsing_refuses(tmp_path: Path) -> None:
    def stream(data: bytes) -> list[str]:
        path = tmp_path / "doc.xml"
        path.write_bytes(data)
        seen: list[str] = []
        parser = safexml.expat_parser(what="doc")
        parser.StartElementHandler = lambda name, attributes: seen.append(name)
        with path.open("rb") as source:
            safexml.stream_xml(source, parser, what="doc")
        return seen

    assert stream(b'<a xmlns="urn:x"><b/></a>') == ["urn:x a", "urn:x b"]
    with pytest.raises(UnsafeInputError, match="DOCTYPE"):
        stream(BILLION_LAUGHS)
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    external = f'<!DOCTYPE a [<!ENTITY x SYSTEM "file://{secret}">]><a>&x;</a>'
    with pytest.raises(UnsafeInputError):
        stream(external.encode())
    with pytest.raises(FormatError, match="not well-formed"):
        stream(b"<a><b></a>")
