"""The processor interface between one page's files and the engine.

A processor turns one page's input files into output files and says what to register; it never
writes the METS. That makes the engine the single METS writer and lets a worker process keep
one processor instance (and its loaded model) for every page it is given.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ocrswarm.errors import FormatError, MetsError
from ocrswarm.formats.atomicfile import write_atomic
from ocrswarm.formats.mets import check_file_grp_name, check_id
from ocrswarm.formats.workspace import resolve_href


@dataclass(frozen=True, slots=True)
class InputFile:
    """One input file of a page: which fileGrp it came from and where it is on disk."""

    file_grp: str
    file_id: str
    mimetype: str
    path: Path


@dataclass(frozen=True, slots=True)
class OutputFile:
    """A file a processor has written; the engine registers it in the METS."""

    file_grp: str
    file_id: str
    mimetype: str
    href: str  # relative to the workspace directory
    page_id: str


@dataclass(frozen=True, slots=True)
class PageJob:
    """Everything a processor needs to process one page, and nothing about the whole METS.

    `inputs` holds, in the order of the input fileGrps (`-I A,B`), that page's files in each
    (a fileGrp with no file for this page is simply absent). `durable` outputs are fsynced
    one by one; the engine turns that off because it syncs each batch of outputs at once
    before recording them as done.
    """

    workspace_dir: Path
    page_id: str
    inputs: Sequence[InputFile]
    output_file_grps: Sequence[str]
    durable: bool = True

    def href_of(self, path: Path) -> str:
        """The workspace-relative href (forward slashes) of a file inside the workspace.

        Works for paths resolved through symlinks (InputFile.path is) as well as for plain
        ones, so an image's href can go into a PAGE imageFilename.
        """
        for base in (self.workspace_dir, self.workspace_dir.resolve()):
            if path.is_relative_to(base):
                return path.relative_to(base).as_posix()
        raise FormatError(f"{path} is not inside the workspace {self.workspace_dir}")

    def output_path(self, file_grp: str, file_id: str, suffix: str) -> tuple[Path, str]:
        """The path of a new output file and its href: `<workspace>/<fileGrp>/<ID><suffix>`."""
        href = f"{file_grp}/{file_id}{suffix}"
        return self.workspace_dir / href, href

    def write_output(
        self, content: bytes, *, file_grp: str, file_id: str, mimetype: str, suffix: str
    ) -> OutputFile:
        """Write `content` atomically to its place in the workspace and describe it."""
        path, href = self.output_path(file_grp, file_id, suffix)
        write_atomic(path, content, durable=self.durable)
        return OutputFile(file_grp, file_id, mimetype, href, self.page_id)


def check_outputs(
    outputs: Sequence[OutputFile],
    *,
    executable: str,
    output_file_grps: Sequence[str],
    page_id: str,
    workspace_dir: Path,
) -> None:
    """Refuse what a METS must never see from a processor: foreign fileGrps or pages,
    duplicate or malformed IDs, files that were not written or lie outside the workspace.

    Run before anything of the page is registered, so that a page is all in or all out.
    """
    seen: set[str] = set()
    for output in outputs:
        where = f"{executable} returned output file {output.file_id!r}"
        if output.file_grp not in output_file_grps:
            raise MetsError(
                f"{where}: fileGrp {output.file_grp!r} is not an output fileGrp of this "
                f"step ({', '.join(output_file_grps)})"
            )
        if output.page_id != page_id:
            raise MetsError(f"{where} for page {output.page_id!r}, not {page_id!r}")
        if output.file_id in seen:
            raise MetsError(f"{where} twice")
        seen.add(output.file_id)
        check_id(output.file_id, "file ID")
        check_file_grp_name(output.file_grp)
        if not resolve_href(workspace_dir, output.href).is_file():
            raise MetsError(f"{where} at {output.href!r}, but wrote nothing there")


def output_file_id(file_grp: str, page_id: str, suffix: str = "") -> str:
    """OCR-D's convention for an output file's ID: `<fileGrp>_<page ID>[_<suffix>]`."""
    return f"{file_grp}_{page_id}_{suffix}" if suffix else f"{file_grp}_{page_id}"


class Processor(ABC):
    """An OCR-D processor: constructed once per worker with validated parameters.

    Subclasses load their models in `__init__` (once), process pages in `process_page`
    (many times) and release resources in `close`.
    """

    executable: ClassVar[str]

    def __init__(self, parameters: Mapping[str, Any]) -> None:
        self.parameters = dict(parameters)

    @abstractmethod
    def process_page(self, job: PageJob) -> list[OutputFile]:
        """Process one page and return the files to register, in the order to register them."""

    def close(self) -> None:  # noqa: B027 - processors without resources need not override
        """Release models and other resources."""

    def __enter__(self) -> Processor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
