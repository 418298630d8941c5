"""Where processors find file parameters and resources, exactly as the OCR-D spec orders it.

A relative name is looked up, first hit winning, in: the working directory; each directory of
`$OCRD_<EXECUTABLE>_PATH`; `$XDG_DATA_HOME/ocrd-resources/<executable>/`;
`/usr/local/share/ocrd-resources/<executable>/`; the processor's module directory. Absolute
paths are used as they are; http(s) URLs are downloaded into a cache. Whatever fails names
every place looked, so the user knows where to put the file.
"""

from __future__ import annotations

import hashlib
import http.client
import mimetypes
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from ocrswarm.errors import OcrswarmError

SYSTEM_RESOURCES_DIR = Path("/usr/local/share/ocrd-resources")
# The schema's default for a tool's `resource_locations`.
DEFAULT_RESOURCE_LOCATIONS = ("data", "cwd", "system", "module")
# The module directory of the built-in processors: the last lookup location, and `-D`.
MODULE_DIR = Path(__file__).resolve().parent

DOWNLOAD_TIMEOUT_SECONDS = 60.0
MAX_DOWNLOAD_BYTES = 4 * 1024**3
_CHUNK_BYTES = 1024 * 1024

# Files in a module directory that are code or packaging, never a resource.
_MODULE_NOISE = (
    "*.py",
    "*.py[cod]",
    "*.pyi",
    "*.so",
    "py.typed",
    "ocrd-tool.json",
    "*.schema.json",
    "__pycache__",
    "*.egg-info",
    "*~",
)


class ResourceError(OcrswarmError):
    """A file parameter or resource cannot be found, downloaded or read."""


@dataclass(frozen=True)
class ResourceLocation:
    """One place resources are looked up in, and what it holds (for `-L`)."""

    location: str  # "env", "data", "system" or "module", as OCR-D names them
    directory: Path
    entries: tuple[Path, ...]


def path_variable(executable: str) -> str:
    """The environment variable with extra resource directories: OCRD_SWARM_DUMMY_PATH."""
    return executable.replace("-", "_").upper() + "_PATH"


def xdg_data_home() -> Path:
    """$XDG_DATA_HOME, or ~/.local/share when unset, empty or relative (as XDG says)."""
    return _xdg_dir("XDG_DATA_HOME", ".local/share")


def xdg_cache_home() -> Path:
    """$XDG_CACHE_HOME, or ~/.cache when unset, empty or relative."""
    return _xdg_dir("XDG_CACHE_HOME", ".cache")


def _xdg_dir(variable: str, fallback: str) -> Path:
    value = os.environ.get(variable, "")
    if value and Path(value).is_absolute():
        return Path(value)
    return Path.home() / fallback


def _env_dirs(executable: str) -> list[Path]:
    return [Path(part) for part in os.environ.get(path_variable(executable), "").split(":") if part]


def resource_candidates(
    executable: str,
    name: str,
    *,
    module_dir: Path | None,
    system_dir: Path = SYSTEM_RESOURCES_DIR,
    cwd: Path | None = None,
) -> list[Path]:
    """Every path a relative resource `name` may be at, in the order the spec gives."""
    return [
        (cwd or Path.cwd()) / name,
        *(directory / name for directory in _env_dirs(executable)),
        xdg_data_home() / "ocrd-resources" / executable / name,
        system_dir / executable / name,
        *([module_dir / name] if module_dir is not None else []),
    ]


def resolve_file_parameter(
    executable: str,
    value: str,
    *,
    module_dir: Path | None = None,
    cache_dir: Path | None = None,
    cacheable: bool = False,
    directory: bool = False,
    system_dir: Path = SYSTEM_RESOURCES_DIR,
    cwd: Path | None = None,
) -> Path:
    """The local path a file parameter `value` stands for.

    An http(s) URL is downloaded into `cache_dir` (default `$XDG_CACHE_HOME/ocrswarm/
    <executable>/`); with `cacheable` a copy already there is reused, otherwise it is
    fetched again. `directory` asks for a directory instead of a file.
    Raises ResourceError naming every place looked, or why the download failed.
    """
    if not value:
        raise ResourceError(f"{executable}: empty file parameter")
    if "://" in value:
        return _resolve_url(executable, value, cache_dir, cacheable, directory)
    path = Path(value)
    if path.is_absolute():
        if not _is_wanted_kind(path, directory):
            raise ResourceError(f"{executable}: {_kind(directory)} {value} does not exist")
        return path
    candidates = resource_candidates(
        executable, value, module_dir=module_dir, system_dir=system_dir, cwd=cwd
    )
    for candidate in candidates:
        if _is_wanted_kind(candidate, directory):
            return candidate
    looked = "\n".join(f"  {candidate}" for candidate in candidates)
    raise ResourceError(
        f"{executable}: {_kind(directory)} {value!r} not found; looked in, in this order:\n"
        f"{looked}\nput it in one of these places, or give an absolute path or an http(s) URL"
    )


def resolve_file_parameters(
    tool: Mapping[str, Any],
    parameters: Mapping[str, Any],
    *,
    module_dir: Path | None = None,
    cache_dir: Path | None = None,
    system_dir: Path = SYSTEM_RESOURCES_DIR,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """`parameters` with every non-empty file parameter (one with a `content-type`) resolved.

    Resolved values are absolute path strings, so the result stays JSON like the input.
    """
    executable = str(tool.get("executable", "processor"))
    resolved = dict(parameters)
    for name, spec in tool.get("parameters", {}).items():
        value = parameters.get(name)
        if "content-type" in spec and isinstance(value, str) and value:
            path = resolve_file_parameter(
                executable,
                value,
                module_dir=module_dir,
                cache_dir=cache_dir,
                cacheable=bool(spec.get("cacheable", False)),
                directory=spec["content-type"] == "text/directory",
                system_dir=system_dir,
                cwd=cwd,
            )
            resolved[name] = str(path.absolute())
    return resolved


def list_resources(
    executable: str,
    tool: Mapping[str, Any],
    *,
    module_dir: Path | None = None,
    system_dir: Path = SYSTEM_RESOURCES_DIR,
) -> list[ResourceLocation]:
    """The resource locations of a tool, in lookup order, with the resources found (`-L`).

    Like OCR-D/core, the working directory is not listed (anything could be there) and the
    tool's `resource_locations` limit the others; locations that do not exist are listed
    empty, so the user sees where files may go. Entries are filtered by the content types
    of the tool's file parameters (JSON preset files always pass).
    """
    allowed = tool.get("resource_locations", DEFAULT_RESOURCE_LOCATIONS)
    places = [("env", directory) for directory in _env_dirs(executable)]
    if "data" in allowed:
        places.append(("data", xdg_data_home() / "ocrd-resources" / executable))
    if "system" in allowed:
        places.append(("system", system_dir / executable))
    if "module" in allowed and module_dir is not None:
        places.append(("module", module_dir))
    content_types = _content_types(tool)
    return [
        ResourceLocation(
            location,
            directory,
            tuple(
                entry
                for entry in _entries(directory)
                if not (location == "module" and _is_module_noise(entry))
                and _matches_content_types(entry, content_types)
            ),
        )
        for location, directory in places
    ]


def write_resource_content(path: Path, out: BinaryIO) -> None:
    """Stream a resource to `out` (for `-C`): a file as it is, a directory as a tar.gz."""
    try:
        if path.is_dir():
            with tarfile.open(fileobj=out, mode="w|gz") as archive:
                archive.add(path, arcname=".")
        else:
            with path.open("rb") as source:
                shutil.copyfileobj(source, out, _CHUNK_BYTES)
    except OSError as error:
        raise ResourceError(f"cannot read resource {path}: {error}") from error


def _resolve_url(
    executable: str, url: str, cache_dir: Path | None, cacheable: bool, directory: bool
) -> Path:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return resolve_file_parameter(executable, unquote(parts.path), directory=directory)
    if scheme not in ("http", "https"):
        raise ResourceError(f"{executable}: cannot fetch {url}: only http and https URLs")
    if directory:
        raise ResourceError(f"{executable}: a directory parameter cannot be a URL: {url}")
    target = (cache_dir or xdg_cache_home() / "ocrswarm" / executable) / _cache_name(url)
    if cacheable and target.is_file():
        return target
    _download(url, target)
    return target


def _cache_name(url: str) -> str:
    """A file name unique to `url` that keeps the URL's own name and suffix readable."""
    basename = re.sub(r"[^A-Za-z0-9._-]+", "_", unquote(urlsplit(url).path.rsplit("/", 1)[-1]))
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return f"{digest}-{basename.lstrip('.') or 'download'}"


def _download(url: str, target: Path) -> None:
    """Fetch `url` into `target` atomically: a failed download never leaves a partial file."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    except OSError as error:
        raise ResourceError(f"cannot download {url}: {error}") from error
    try:
        with (
            os.fdopen(fd, "wb") as out,
            _http_opener().open(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response,
        ):
            received = 0
            while chunk := response.read(_CHUNK_BYTES):
                received += len(chunk)
                if received > MAX_DOWNLOAD_BYTES:
                    raise ResourceError(
                        f"cannot download {url}: larger than {MAX_DOWNLOAD_BYTES} bytes"
                    )
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        Path(partial).unlink(missing_ok=True)
        reason = error if isinstance(error, urllib.error.HTTPError) else _reason(error)
        raise ResourceError(f"cannot download {url}: {reason}") from error
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def _reason(error: Exception) -> object:
    return getattr(error, "reason", None) or error


def _http_opener() -> urllib.request.OpenerDirector:
    """An opener that speaks http(s) only: no file:// or ftp:// even through a redirect."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _kind(directory: bool) -> str:
    return "directory" if directory else "file"


def _is_wanted_kind(path: Path, directory: bool) -> bool:
    return path.is_dir() if directory else path.is_file()


def _entries(directory: Path) -> list[Path]:
    try:
        return sorted(entry for entry in directory.iterdir() if not entry.name.startswith("."))
    except OSError:
        return []


def _is_module_noise(entry: Path) -> bool:
    return any(fnmatch(entry.name, pattern) for pattern in _MODULE_NOISE)


def _content_types(tool: Mapping[str, Any]) -> list[str]:
    return [
        content_type.strip()
        for spec in tool.get("parameters", {}).values()
        if "content-type" in spec
        for content_type in str(spec["content-type"]).split(",")
    ]


def _matches_content_types(entry: Path, content_types: list[str]) -> bool:
    """OCR-D's rule: no file parameters means anything goes; JSON presets always pass."""
    if not content_types:
        return True
    if entry.is_dir():
        return "text/directory" in content_types
    if entry.suffix == ".json" or "application/octet-stream" in content_types:
        return True
    guessed = mimetypes.guess_type(entry.name)[0] or ""
    return any(fnmatch(guessed, content_type) for content_type in content_types)
