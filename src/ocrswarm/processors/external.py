"""Third-party OCR-D processors: any `ocrd-*` executable, run one page at a time.

Discovery asks each `ocrd-*` on PATH for its ocrd-tool.json (`--dump-json`); the answers
are cached on disk by path, size and modification time, since each question costs a Python
start-up of a second or two.

An OCR-D processor reads and writes a METS itself, which would make it a second METS writer
next to the engine. So each page runs in a private one-page workspace in a temporary
directory: its input files (and the images a PAGE input refers to) are linked there at the
same relative paths they have in the real workspace, the tool runs on that METS, and the
files it registered in the output fileGrps are moved into the real workspace under IDs and
names of our scheme (`<fileGrp>_<page>[_...]`, unique per page). Hrefs inside harvested
PAGE files that point at harvested files are rewritten; hrefs to inputs stay valid as they
are, because the relative paths are the same.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from lxml import etree

from ocrswarm.errors import FormatError, OcrswarmError
from ocrswarm.formats.atomicfile import write_atomic
from ocrswarm.formats.images import suffix_for
from ocrswarm.formats.mets import MIMETYPE_PAGE, Mets, MetsFile, is_url
from ocrswarm.formats.page import unique_id
from ocrswarm.formats.safexml import parse_xml
from ocrswarm.formats.workspace import METS_BASENAME, Workspace
from ocrswarm.processors.ocrd_tool import executables
from ocrswarm.processors.processor import OutputFile, PageJob, Processor, output_file_id
from ocrswarm.processors.resources import xdg_cache_home

log = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 60.0
STDERR_TAIL_LINES = 30
_CACHE_FORMAT = 2
_VERSION = re.compile(r"Version\s+([^\s,]+)")
_UNSAFE_ID_CHARACTERS = re.compile(r"[^\w.-]")
_SUFFIX = re.compile(r"(\.[A-Za-z0-9]+)*")
_OTHER_SUFFIXES = {MIMETYPE_PAGE: ".xml", "application/json": ".json", "text/plain": ".txt"}


class ExternalToolError(OcrswarmError):
    """A third-party processor cannot be used, or failed on a page."""


@dataclass(frozen=True, slots=True)
class ExternalTool:
    """A third-party OCR-D processor found on the machine."""

    executable: str
    path: Path
    ocrd_tool: Mapping[str, Any]  # its entry in its ocrd-tool.json, as `--dump-json` prints it

    @property
    def step(self) -> str:
        """Its first step, the OTHERROLE of the mets:agent recording a run."""
        steps = self.ocrd_tool.get("steps") or [""]
        return str(steps[0])


def default_cache_file() -> Path:
    return xdg_cache_home() / "ocrswarm" / "ocrd-tools.json"


def discover_external_tools(
    *,
    search_path: str | None = None,
    bin_dir: Path | None = None,
    cache_file: Path | None = None,
    use_cache: bool = True,
    timeout: float = PROBE_TIMEOUT_SECONDS,
) -> dict[str, ExternalTool]:
    """Every working third-party `ocrd-*` processor, by executable name.

    Looks in `bin_dir` only when given, else in `search_path` (default $PATH), the first
    directory naming an executable winning as in a shell. Our own built-ins are left out;
    an executable whose `--dump-json` fails is left out with a warning in the log.
    """
    directories = [bin_dir] if bin_dir is not None else _path_directories(search_path)
    found = _candidates(directories)
    cache_path = (cache_file or default_cache_file()) if use_cache else None
    cache = _read_cache(cache_path) if cache_path else {}
    tools: dict[str, ExternalTool] = {}
    unknown: list[tuple[str, Path]] = []
    for name, path in found.items():
        cached = _from_cache(cache, name, path)
        if cached is not None:
            tools[name] = cached
        else:
            unknown.append((name, path))
    if unknown:
        with ThreadPoolExecutor(max_workers=min(4, len(unknown))) as pool:
            probes = pool.map(lambda item: _probe_or_none(item[1], timeout), unknown)
            for (name, path), tool in zip(unknown, probes, strict=True):
                if tool is not None:
                    tools[name] = tool
                    cache[str(path)] = _cache_entry(tool)
        if cache_path:
            _write_cache(cache_path, cache)
    return dict(sorted(tools.items()))


def probe_tool(path: Path, *, timeout: float = PROBE_TIMEOUT_SECONDS) -> ExternalTool:
    """Ask the processor at `path` for its ocrd-tool.json entry (`--dump-json`).

    Raises ExternalToolError when it does not answer `--dump-json` with a tool description.
    """
    result = _run_quietly([str(path), "--dump-json"], timeout)
    if result.returncode != 0:
        raise ExternalToolError(
            f"{path} --dump-json failed (exit code {result.returncode}){_tail(result.stderr)}"
        )
    try:
        description = json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise ExternalToolError(f"{path} --dump-json printed no JSON: {error}") from None
    if not isinstance(description, dict) or not isinstance(description.get("executable"), str):
        raise ExternalToolError(f"{path} --dump-json printed no ocrd-tool description")
    return ExternalTool(path.name, path, description)


def tool_version(tool: ExternalTool, *, timeout: float = PROBE_TIMEOUT_SECONDS) -> str:
    """The version the tool reports (`--version`: "Version X, ..."), or "unknown".

    Asked only when needed (for the mets:agent of a run): it costs a start-up of the tool.
    """
    return _version(tool.path, _stamp(tool.path), timeout)


@functools.cache
def _version(path: Path, stamp: tuple[int, int] | None, timeout: float) -> str:
    try:
        output = _run_quietly([str(path), "--version"], timeout).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = _VERSION.search(output)
    return match.group(1) if match else "unknown"


def external_processor_class(
    tool: ExternalTool,
    *,
    environment: Mapping[str, str] | None = None,
    temp_root: Path | None = None,
    timeout: float | None = None,
) -> type[ExternalProcessor]:
    """A Processor class for `tool`, constructed like the built-ins: `cls(parameters)`.

    `environment` is added to the tool's environment (e.g. TESSDATA_PREFIX), `temp_root`
    holds the one-page workspaces (default: the system's temporary directory), `timeout`
    limits each page in seconds.
    """

    class BoundExternalProcessor(ExternalProcessor):
        pass

    BoundExternalProcessor.executable = tool.executable
    BoundExternalProcessor.tool = tool
    BoundExternalProcessor.environment = dict(environment or {})
    BoundExternalProcessor.temp_root = temp_root
    BoundExternalProcessor.timeout = timeout
    BoundExternalProcessor.__name__ = f"ExternalProcessor[{tool.executable}]"
    return BoundExternalProcessor


class ExternalProcessor(Processor):
    """Runs a third-party OCR-D processor page by page; see the module docstring for how.

    Use `external_processor_class` to make one for a tool. Parameters are handed to the
    tool as they are; it validates them itself.
    """

    tool: ClassVar[ExternalTool]
    environment: ClassVar[Mapping[str, str]] = {}
    temp_root: ClassVar[Path | None] = None
    timeout: ClassVar[float | None] = None

    def process_page(self, job: PageJob) -> list[OutputFile]:
        if not job.inputs:
            raise FormatError(f"page {job.page_id}: no input file")
        with tempfile.TemporaryDirectory(
            prefix=f"ocrswarm-{self.tool.executable}-", dir=self.temp_root
        ) as name:
            scratch = Path(name)
            mets_path = _one_page_workspace(job, scratch)
            self._run_tool(job, scratch, mets_path)
            return _harvest(job, scratch, mets_path)

    def _run_tool(self, job: PageJob, scratch: Path, mets_path: Path) -> None:
        parameters_path = scratch / "ocrswarm-parameters.json"
        parameters_path.write_text(json.dumps(self.parameters), encoding="utf-8")
        input_file_grps = list(dict.fromkeys(file.file_grp for file in job.inputs))
        command = [
            str(self.tool.path),
            *("-m", str(mets_path)),
            *("-I", ",".join(input_file_grps)),
            *("-O", ",".join(job.output_file_grps)),
            *("-p", str(parameters_path)),
        ]
        environment = {
            **os.environ,
            "OCRD_MISSING_OUTPUT": "ABORT",  # a failed page must fail the run, not be skipped
            "OCRD_MAX_PARALLEL_PAGES": "1",
            **self.environment,
        }
        what = f"{self.tool.executable} on page {job.page_id}"
        log.debug("running %s", " ".join(command))
        try:
            result = subprocess.run(
                command,
                env=environment,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as expired:
            stderr = expired.stderr.decode(errors="replace") if expired.stderr else ""
            raise ExternalToolError(
                f"{what} did not finish within {self.timeout} s{_tail(stderr)}"
            ) from None
        except OSError as error:
            raise ExternalToolError(f"cannot run {self.tool.path}: {error.strerror}") from None
        if result.returncode != 0:
            raise ExternalToolError(
                f"{what} failed (exit code {result.returncode}){_tail(result.stderr)}"
            )


def _one_page_workspace(job: PageJob, scratch: Path) -> Path:
    """Mirror the page's inputs into `scratch` at their relative paths; write its METS."""
    mets = Mets.empty(f"urn:uuid:{uuid.uuid4()}")
    mets.add_page(job.page_id)
    for file in job.inputs:
        href = job.href_of(file.path)
        _link(file.path, scratch / href)
        mets.add_file(file.file_grp, file.file_id, href, file.mimetype, job.page_id)
        if file.mimetype == MIMETYPE_PAGE:
            for image_href in _referenced_images(file.path):
                _mirror_reference(job, image_href, scratch)
    mets_path = scratch / METS_BASENAME
    mets.save(mets_path)
    return mets_path


def _referenced_images(page_path: Path) -> Iterator[str]:
    """The imageFilename and every AlternativeImage filename of a PAGE document."""
    root = parse_xml(page_path, what="PAGE-XML").getroot()
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        name = element.tag.rpartition("}")[2]
        if name == "Page" and element.get("imageFilename"):
            yield element.get("imageFilename")
        elif name == "AlternativeImage" and element.get("filename"):
            yield element.get("filename")


def _mirror_reference(job: PageJob, href: str, scratch: Path) -> None:
    """Link an image a PAGE input refers to; one outside the workspace is left for the tool
    to complain about."""
    relative = _inside_relative(href)
    if relative is None:
        return
    source = Path(os.path.realpath(job.workspace_dir / relative))
    if not source.is_relative_to(Path(os.path.realpath(job.workspace_dir))):
        return
    target = scratch / relative
    if source.is_file() and not target.exists():
        _link(source, target)


def _harvest(job: PageJob, scratch: Path, mets_path: Path) -> list[OutputFile]:
    """Move what the tool registered in the output fileGrps into the real workspace."""
    private = Workspace(scratch, Mets.read(mets_path), mets_path=mets_path)
    produced = [
        file
        for file_grp in job.output_file_grps
        for file in private.mets.find_files(file_grp=file_grp)
        if job.page_id in private.mets.pages_of_file(file.id)
    ]
    if not produced:
        raise ExternalToolError(
            f"page {job.page_id}: the processor registered no file in "
            f"{', '.join(job.output_file_grps)}"
        )
    placements = _placements(job, produced)
    new_hrefs = {
        _normalized(file.href, scratch): placement[1] for file, placement in placements.items()
    }
    outputs = []
    for file, (file_id, href) in placements.items():
        if file.is_url:
            raise ExternalToolError(f"page {job.page_id}: output {file.id} is a URL: {file.href}")
        source = private.resolve(file)
        target = job.workspace_dir / href
        if file.mimetype == MIMETYPE_PAGE:
            write_atomic(target, _rewritten_page(source, scratch, new_hrefs, file_id))
        else:
            _install(source, target)
        outputs.append(OutputFile(file.file_grp, file_id, file.mimetype, href, job.page_id))
    return outputs


def _placements(job: PageJob, produced: list[MetsFile]) -> dict[MetsFile, tuple[str, str]]:
    """Our ID and href for each produced file: the first PAGE of a fileGrp gets the page's
    plain output ID, everything else that ID plus the tool's own distinguishing tail."""
    placements: dict[MetsFile, tuple[str, str]] = {}
    used: set[str] = set()
    for file_grp in job.output_file_grps:
        files = [file for file in produced if file.file_grp == file_grp]
        page_files = [file for file in files if file.mimetype == MIMETYPE_PAGE]
        main = page_files[0] if page_files else None
        base = output_file_id(file_grp, job.page_id)
        for file in sorted(files, key=lambda f: f is not main):
            if file is main:
                file_id = base
            else:
                tail = file.id.removeprefix(f"{main.id}_") if main else file.id
                file_id = f"{base}_{_UNSAFE_ID_CHARACTERS.sub('_', tail)}"
            file_id = unique_id(file_id, used)
            placements[file] = (file_id, f"{file_grp}/{file_id}{_suffix(file)}")
    return placements


def _rewritten_page(path: Path, scratch: Path, new_hrefs: Mapping[str, str], file_id: str) -> bytes:
    """The PAGE file with references to harvested files (and absolute paths into the private
    workspace) turned into hrefs of the real workspace, and its pcGtsId made its new ID."""
    tree = parse_xml(path, what="PAGE-XML")
    root = tree.getroot()
    if root.get("pcGtsId") is not None:
        root.set("pcGtsId", file_id)
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        name = element.tag.rpartition("}")[2]
        attribute = {"Page": "imageFilename", "AlternativeImage": "filename"}.get(name)
        value = element.get(attribute) if attribute else None
        if attribute is None or not value:
            continue
        normalized = _normalized(value, scratch)
        replacement = new_hrefs.get(normalized, normalized)
        if replacement != value:
            element.set(attribute, replacement)
    body: bytes = etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
    return body + b"\n"


def _normalized(href: str, scratch: Path) -> str:
    """An href as a path relative to the private workspace, when it points inside it."""
    if is_url(href):
        return href
    path = Path(href)
    if path.is_absolute():
        for base in (scratch, scratch.resolve()):
            if path.is_relative_to(base):
                return PurePosixPath(os.path.normpath(path.relative_to(base))).as_posix()
        return href
    return _inside_relative(href) or href


def _inside_relative(href: str) -> str | None:
    """A relative href normalised (`./a/../b` -> `b`), or None when it is absolute or leaves."""
    if is_url(href) or PurePosixPath(href).is_absolute():
        return None
    normalized = os.path.normpath(href)
    if normalized == ".." or normalized.startswith("../"):
        return None
    return PurePosixPath(normalized).as_posix()


def _suffix(file: MetsFile) -> str:
    suffix = PurePosixPath(file.href).suffix
    if suffix and _SUFFIX.fullmatch(suffix):
        return suffix.lower()
    return suffix_for(file.mimetype) or _OTHER_SUFFIXES.get(file.mimetype, "")


def _link(source: Path, target: Path) -> None:
    """Make `source` appear at `target`: hard link, else symbolic link, else a copy."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        try:
            os.symlink(source, target)
        except OSError:
            shutil.copyfile(source, target)


def _install(source: Path, target: Path) -> None:
    """Put `source` at `target` atomically: linked when the file system allows, else copied."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        try:
            os.link(source, partial)
        except OSError:
            shutil.copyfile(source, partial)
        os.replace(partial, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def _path_directories(search_path: str | None) -> list[Path]:
    value = os.environ.get("PATH", "") if search_path is None else search_path
    return [Path(part) for part in value.split(os.pathsep) if part]


def _candidates(directories: Iterable[Path]) -> dict[str, Path]:
    builtin = set(executables())
    found: dict[str, Path] = {}
    for directory in directories:
        try:
            entries = sorted(directory.glob("ocrd-*"))
        except OSError:
            continue
        for entry in entries:
            if entry.name in found or entry.name in builtin:
                continue
            if entry.is_file() and os.access(entry, os.X_OK):
                found[entry.name] = entry
    return found


def _probe_or_none(path: Path, timeout: float) -> ExternalTool | None:
    try:
        return probe_tool(path, timeout=timeout)
    except (ExternalToolError, OSError, subprocess.TimeoutExpired) as error:
        log.warning("ignoring %s: %s", path, error)
        return None


def _run_quietly(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
    )


def _tail(stderr: str) -> str:
    lines = stderr.strip().splitlines()[-STDERR_TAIL_LINES:]
    return (":\n" + "\n".join(f"  {line}" for line in lines)) if lines else " (no output on stderr)"


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size


def _cache_entry(tool: ExternalTool) -> dict[str, Any]:
    stamp = _stamp(tool.path)
    return {"stamp": list(stamp) if stamp else None, "ocrd_tool": dict(tool.ocrd_tool)}


def _from_cache(cache: Mapping[str, Any], name: str, path: Path) -> ExternalTool | None:
    entry = cache.get(str(path))
    stamp = _stamp(path)
    if not isinstance(entry, dict) or stamp is None or entry.get("stamp") != list(stamp):
        return None
    description = entry.get("ocrd_tool")
    if not isinstance(description, dict):
        return None
    return ExternalTool(name, path, description)


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(document, dict) or document.get("format") != _CACHE_FORMAT:
        return {}
    tools = document.get("tools")
    return dict(tools) if isinstance(tools, dict) else {}


def _write_cache(path: Path, tools: Mapping[str, Any]) -> None:
    document = {"format": _CACHE_FORMAT, "tools": dict(tools)}
    try:
        write_atomic(path, json.dumps(document, indent=1).encode())
    except OSError as error:
        log.warning("cannot write the processor cache %s: %s", path, error.strerror)
