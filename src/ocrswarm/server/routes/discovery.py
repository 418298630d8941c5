"""Discovery: what this server can do (GET /discovery, GET /processor, GET /processor/info)."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Depends

from ocrswarm.engine.tools import tool_description
from ocrswarm.errors import NotFoundError, OcrswarmError
from ocrswarm.processors import registry
from ocrswarm.processors.ocrd_tool import TOOL_ALIASES, executables
from ocrswarm.server.auth import Role, require
from ocrswarm.server.schemas import DiscoveryResponse

router = APIRouter()
_readers = [Depends(require(Role.READER))]


@router.get(
    "/discovery", tags=["discovery"], response_model=DiscoveryResponse, dependencies=_readers
)
def discover() -> DiscoveryResponse:
    """The machine this server runs on."""
    return DiscoveryResponse(
        ram=_total_memory(),
        cpu_cores=os.cpu_count() or 1,
        has_cuda=False,
        cuda_version="",
        has_ocrd_all=False,
        ocrd_all_version="",
    )


@router.get("/processor", tags=["processing", "discovery"], dependencies=_readers)
def list_processors() -> list[str]:
    """Every executable this server runs: built-in (and their OCR-D aliases), extra and
    third-party `ocrd-*` tools found on the PATH."""
    names = {*executables(), *TOOL_ALIASES, *registry.extra_processors()}
    names.update(_external_tools())
    return sorted(name for name in names if name.startswith("ocrd-"))


@router.get("/processor/info/{executable}", tags=["processing", "discovery"], dependencies=_readers)
def processor_info(executable: str) -> dict[str, Any]:
    """The processor's ocrd-tool.json entry."""
    return dict(known_tool(executable))


def known_tool(executable: str) -> dict[str, Any]:
    """The ocrd-tool.json entry of `executable`; NotFoundError (404) when there is none."""
    tool = tool_description(executable)
    if tool is None:
        raise NotFoundError(f"processor {executable!r} is not available on this server")
    return dict(tool)


def _external_tools() -> list[str]:
    try:
        from ocrswarm.processors.external import discover_external_tools

        return list(discover_external_tools())
    except OcrswarmError:
        return []


def _total_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0
