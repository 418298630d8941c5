"""File parameters and resources: the OCR-D lookup order, downloads over real HTTP, -L and -C."""

from __future__ import annotations

import io
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ocrswarm.processors import resources
from ocrswarm.processors.resources import (
    ResourceError,
    list_resources,
    path_variable,
    resolve_file_parameter,
    resolve_file_parameters,
    resource_candidates,
    write_resource_content,
    xdg_cache_home,
    xdg_data_home,
)

EXECUTABLE = "ocrd-swarm-test"


@dataclass
class Places:
    """One directory per lookup location, in the order the spec gives them."""

    cwd: Path
    env1: Path
    env2: Path
    data: Path
    system: Path
    module: Path

    def in_order(self) -> list[Path]:
        return [self.cwd, self.env1, self.env2, self.data, self.system, self.module]


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Places:
    base = tmp_path / "places"
    found = Places(
        cwd=base / "cwd",
        env1=base / "env1",
        env2=base / "env2",
        data=base / "xdg-data" / "ocrd-resources" / EXECUTABLE,
        system=base / "system" / EXECUTABLE,
        module=base / "module",
    )
    for directory in found.in_order():
        directory.mkdir(parents=True)
    monkeypatch.chdir(found.cwd)
    monkeypatch.setenv("OCRD_SWARM_TEST_PATH", f"{found.env1}::{found.env2}")
    monkeypatch.setenv("XDG_DATA_HOME", str(base / "xdg-data"))
    return found


def resolve(places: Places, value: str, **options: Any) -> Path:
    return resolve_file_parameter(
        EXECUTABLE,
        value,
        module_dir=places.module,
        system_dir=places.system.parent,
        **options,
    )


def test_path_variable_is_named_after_the_executable() -> None:
    assert path_variable("ocrd-swarm-dummy") == "OCRD_SWARM_DUMMY_PATH"
    assert path_variable("ocrd-cis-ocropy-binarize") == "OCRD_CIS_OCROPY_BINARIZE_PATH"


def test_candidates_follow_the_spec_order(places: Places) -> None:
    candidates = resource_candidates(
        EXECUTABLE, "model.bin", module_dir=places.module, system_dir=places.system.parent
    )
    assert candidates == [directory / "model.bin" for directory in places.in_order()]


def test_candidates_without_module_dir_and_with_the_real_system_dir(places: Places) -> None:
    candidates = resource_candidates(EXECUTABLE, "m.bin", module_dir=None)
    assert candidates[-1] == Path("/usr/local/share/ocrd-resources") / EXECUTABLE / "m.bin"
    assert len(candidates) == 5


def test_xdg_defaults_when_unset_empty_or_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for value in (None, "", "relative/dir"):
        if value is None:
            monkeypatch.delenv("XDG_DATA_HOME", raising=False)
            monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_DATA_HOME", value)
            monkeypatch.setenv("XDG_CACHE_HOME", value)
        assert xdg_data_home() == tmp_path / ".local" / "share"
        assert xdg_cache_home() == tmp_path / ".cache"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert xdg_data_home() == tmp_path / "data"


def test_first_hit_wins_in_spec_order(places: Places) -> None:
    for directory in places.in_order():
        (directory / "model.bin").write_text(directory.name, "utf-8")
    for directory in places.in_order():
        assert resolve(places, "model.bin") == directory / "model.bin"
        (directory / "model.bin").unlink()
    with pytest.raises(ResourceError) as caught:
        resolve(places, "model.bin")
    message = str(caught.value)
    assert f"{EXECUTABLE}: file 'model.bin' not found" in message
    looked = [line.strip() for line in message.splitlines() if line.startswith("  ")]
    assert looked == [str(directory / "model.bin") for directory in places.in_order()]


def test_relative_names_with_subdirectories(places: Places) -> None:
    (places.data / "sub").mkdir()
    (places.data / "sub" / "m.json").write_text("{}", "utf-8")
    assert resolve(places, "sub/m.json") == places.data / "sub" / "m.json"


def test_absolute_paths_are_used_as_they_are(places: Places, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.bin"
    elsewhere.write_bytes(b"x")
    (places.cwd / "elsewhere.bin").write_bytes(b"decoy")
    assert resolve(places, str(elsewhere)) == elsewhere
    assert resolve(places, f"file://{elsewhere}") == elsewhere
    with pytest.raises(ResourceError, match=r"file .*missing\.bin does not exist"):
        resolve(places, str(tmp_path / "missing.bin"))


def test_directories_only_for_directory_parameters(places: Places) -> None:
    (places.env1 / "model").write_bytes(b"a file, not the directory we want")
    (places.system / "model").mkdir()
    assert resolve(places, "model", directory=True) == places.system / "model"
    assert resolve(places, "model") == places.env1 / "model"


def test_empty_value_and_foreign_schemes(places: Places) -> None:
    with pytest.raises(ResourceError, match="empty file parameter"):
        resolve(places, "")
    with pytest.raises(ResourceError, match="only http and https"):
        resolve(places, "ftp://example.org/model.bin")


def test_resolve_file_parameters_touches_file_parameters_only(places: Places) -> None:
    (places.data / "weights.bin").write_bytes(b"w")
    tool = {
        "executable": EXECUTABLE,
        "parameters": {
            "weights": {"type": "string", "content-type": "application/octet-stream"},
            "config": {"type": "string", "content-type": "application/json"},
            "name": {"type": "string"},
        },
    }
    given = {"weights": "weights.bin", "config": "", "name": "weights.bin"}
    resolved = resolve_file_parameters(
        tool, given, module_dir=places.module, system_dir=places.system.parent
    )
    assert resolved == {
        "weights": str(places.data / "weights.bin"),
        "config": "",
        "name": "weights.bin",
    }
    assert given["weights"] == "weights.bin"


# -- downloads over real HTTP on the loopback interface ----------------------------------------


@dataclass
class Server:
    url: str
    requests: list[str]


@pytest.fixture
def http_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    for variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    requests: list[str] = []
    files = {"/models/best.traineddata": b"model bytes " * 1000, "/big.bin": b"x" * 5000}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            if self.path == "/to-file":
                self.send_response(302)
                self.send_header("Location", "file:///etc/hostname")
                self.end_headers()
                return
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{server.server_address[1]}", requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_url_is_downloaded_into_the_cache(
    http_server: Server, tmp_path: Path, places: Places
) -> None:
    url = f"{http_server.url}/models/best.traineddata"
    path = resolve(places, url, cache_dir=tmp_path / "cache", cacheable=True)
    assert path.parent == tmp_path / "cache"
    assert path.name.endswith("-best.traineddata")
    assert path.read_bytes() == b"model bytes " * 1000
    assert resolve(places, url, cache_dir=tmp_path / "cache", cacheable=True) == path
    assert http_server.requests == ["/models/best.traineddata"]  # the cached copy was reused
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [path.name]


def test_uncacheable_url_is_fetched_every_time(
    http_server: Server, tmp_path: Path, places: Places
) -> None:
    url = f"{http_server.url}/models/best.traineddata"
    first = resolve(places, url, cache_dir=tmp_path / "cache")
    second = resolve(places, url, cache_dir=tmp_path / "cache")
    assert first == second
    assert http_server.requests == ["/models/best.traineddata"] * 2


def test_default_cache_is_under_xdg_cache_home(
    http_server: Server, tmp_path: Path, places: Places, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    path = resolve(places, f"{http_server.url}/models/best.traineddata")
    assert path.parent == tmp_path / "xdg-cache" / "ocrswarm" / EXECUTABLE


def test_download_failures_name_the_url_and_leave_nothing(
    http_server: Server, tmp_path: Path, places: Places, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(ResourceError, match=r"cannot download .*/nothing-here: HTTP Error 404"):
        resolve(places, f"{http_server.url}/nothing-here", cache_dir=cache)
    with pytest.raises(
        ResourceError, match=r"cannot download .*/to-file: .*Redirection to url 'file:"
    ):
        resolve(places, f"{http_server.url}/to-file", cache_dir=cache)
    monkeypatch.setattr(resources, "MAX_DOWNLOAD_BYTES", 4096)
    with pytest.raises(ResourceError, match="larger than 4096 bytes"):
        resolve(places, f"{http_server.url}/big.bin", cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_unreachable_server(tmp_path: Path, places: Places) -> None:
    with pytest.raises(ResourceError, match=r"cannot download http://127\.0\.0\.1:9/m\.bin: "):
        resolve(places, "http://127.0.0.1:9/m.bin", cache_dir=tmp_path / "cache")


def test_directory_parameter_cannot_be_a_url(places: Places) -> None:
    with pytest.raises(ResourceError, match="directory parameter cannot be a URL"):
        resolve(places, "http://127.0.0.1:9/models/", directory=True)


# -- listing (-L) and showing (-C) -------------------------------------------------------------


def test_list_resources_shows_every_location_in_order(places: Places) -> None:
    (places.env1 / "a.traineddata").write_bytes(b"a")
    (places.data / "b.traineddata").write_bytes(b"b")
    (places.data / ".hidden").write_bytes(b"h")
    (places.module / "c.traineddata").write_bytes(b"c")
    for noise in ("processor.py", "ocrd-tool.json", "ocrd_tool.schema.json", "py.typed"):
        (places.module / noise).write_text("", "utf-8")
    (places.module / "__pycache__").mkdir()
    (places.cwd / "d.traineddata").write_bytes(b"d")  # the working directory is not listed
    listed = list_resources(
        EXECUTABLE, {"parameters": {}}, module_dir=places.module, system_dir=places.system.parent
    )
    assert [(spot.location, spot.directory) for spot in listed] == [
        ("env", places.env1),
        ("env", places.env2),
        ("data", places.data),
        ("system", places.system),
        ("module", places.module),
    ]
    assert [[entry.name for entry in spot.entries] for spot in listed] == [
        ["a.traineddata"],
        [],
        ["b.traineddata"],
        [],
        ["c.traineddata"],
    ]


def test_list_resources_filters_by_content_type_and_locations(places: Places) -> None:
    for name in ("weights.bin", "preset.json", "notes.txt"):
        (places.data / name).write_bytes(b"x")
    (places.data / "model-dir").mkdir()
    tool: dict[str, Any] = {
        "parameters": {"notes": {"type": "string", "content-type": "text/plain"}},
        "resource_locations": ["data"],
    }
    env1, env2, data = list_resources(EXECUTABLE, tool, module_dir=places.module)
    assert [env1.location, env2.location, data.location] == ["env", "env", "data"]
    assert [entry.name for entry in data.entries] == ["notes.txt", "preset.json"]
    tool["parameters"]["models"] = {"type": "string", "content-type": "text/directory"}
    data = list_resources(EXECUTABLE, tool, module_dir=places.module)[-1]
    assert [entry.name for entry in data.entries] == ["model-dir", "notes.txt", "preset.json"]


def test_missing_locations_are_listed_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "nowhere"))
    monkeypatch.delenv("OCRD_SWARM_TEST_PATH", raising=False)
    listed = list_resources(EXECUTABLE, {}, system_dir=tmp_path / "none")
    assert [(spot.location, spot.entries) for spot in listed] == [("data", ()), ("system", ())]


def test_show_resource_streams_files_and_tars_directories(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(bytes(range(256)) * 10)
    out = io.BytesIO()
    write_resource_content(model, out)
    assert out.getvalue() == model.read_bytes()
    folder = tmp_path / "model-dir"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "w.bin").write_bytes(b"weights")
    out = io.BytesIO()
    write_resource_content(folder, out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue()), mode="r:gz") as archive:
        member = archive.extractfile("./sub/w.bin")
        assert member is not None and member.read() == b"weights"
    with pytest.raises(ResourceError, match="cannot read resource"):
        write_resource_content(tmp_path / "absent.bin", io.BytesIO())
