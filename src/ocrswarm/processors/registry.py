"""Which class implements each built-in executable, imported lazily: a worker loads only its own."""

from __future__ import annotations

from importlib import import_module

from ocrswarm.processors.ocrd_tool import canonical_executable
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


def processor_class(executable: str) -> type[Processor]:
    """Import and return the class of a built-in processor (aliases such as ocrd-dummy work)."""
    module_name, class_name = BUILTIN_PROCESSORS[canonical_executable(executable)].split(":")
    cls: type[Processor] = getattr(import_module(f"ocrswarm.processors.{module_name}"), class_name)
    return cls
