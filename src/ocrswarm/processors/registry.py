"""Which class implements each built-in executable, imported lazily: a worker loads only its own."""

from __future__ import annotations

from importlib import import_module

from ocrswarm.errors import UsageError
from ocrswarm.processors.processor import Processor

# executable -> "module:Class" under ocrswarm.processors
BUILTIN_PROCESSORS: dict[str, str] = {
    "ocrd-swarm-dummy": "dummy:DummyProcessor",
    "ocrd-swarm-binarize": "binarize:BinarizeProcessor",
    "ocrd-swarm-deskew": "deskew:DeskewProcessor",
    "ocrd-swarm-segment": "segment:SegmentProcessor",
    "ocrd-swarm-recognize": "recognize:RecognizeProcessor",
    "ocrd-swarm-export": "export:ExportProcessor",
}

# Names OCR-D clients use for our tools.
ALIASES: dict[str, str] = {"ocrd-dummy": "ocrd-swarm-dummy"}


def canonical_executable(executable: str) -> str:
    """The built-in executable a name (or alias) stands for; UsageError if none."""
    name = ALIASES.get(executable, executable)
    if name not in BUILTIN_PROCESSORS:
        known = ", ".join(sorted([*BUILTIN_PROCESSORS, *ALIASES]))
        raise UsageError(f"unknown processor {executable!r} (built-in: {known})")
    return name


def processor_class(executable: str) -> type[Processor]:
    """Import and return the class of a built-in processor."""
    module_name, class_name = BUILTIN_PROCESSORS[canonical_executable(executable)].split(":")
    cls: type[Processor] = getattr(import_module(f"ocrswarm.processors.{module_name}"), class_name)
    return cls
