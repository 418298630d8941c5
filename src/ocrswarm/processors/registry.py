"""Which class implements each executable, imported lazily: a worker loads only its own.

Besides the built-ins, `$OCRSWARM_EXTRA_PROCESSORS` names more in-process processors as
`ocrd-name=package.module:Class` entries separated by commas. The engine's worker processes
read it too, so a test can run a processor that sleeps or crashes under real workers.
"""

from __future__ import annotations

import os
from importlib import import_module

from ocrswarm.errors import UsageError
from ocrswarm.processors.ocrd_tool import canonical_executable
from ocrswarm.processors.processor import Processor

EXTRA_PROCESSORS_ENV = "OCRSWARM_EXTRA_PROCESSORS"

# executable -> "module:Class" under ocrswarm.processors
BUILTIN_PROCESSORS: dict[str, str] = {
    "ocrd-swarm-dummy": "dummy:DummyProcessor",
    "ocrd-swarm-binarize": "binarize:BinarizeProcessor",
    "ocrd-swarm-deskew": "deskew:DeskewProcessor",
    "ocrd-swarm-segment": "segment:SegmentProcessor",
    "ocrd-swarm-recognize": "recognize:RecognizeProcessor",
    "ocrd-swarm-export": "export:ExportProcessor",
}


def extra_processors() -> dict[str, str]:
    """executable -> "package.module:Class" from $OCRSWARM_EXTRA_PROCESSORS."""
    extras: dict[str, str] = {}
    for entry in os.environ.get(EXTRA_PROCESSORS_ENV, "").split(","):
        if not entry.strip():
            continue
        name, _, target = entry.partition("=")
        if not name.strip() or ":" not in target:
            raise UsageError(
                f"{EXTRA_PROCESSORS_ENV}: {entry.strip()!r} is not 'ocrd-name=package.module:Class'"
            )
        extras[name.strip()] = target.strip()
    return extras


def processor_class(executable: str) -> type[Processor]:
    """Import and return the class of a built-in processor (aliases such as ocrd-dummy work)
    or of one named in $OCRSWARM_EXTRA_PROCESSORS; UsageError for any other name."""
    extra = extra_processors().get(executable)
    if extra is not None:
        module_name, class_name = extra.split(":", 1)
        return _class(module_name, class_name)
    module_name, class_name = BUILTIN_PROCESSORS[canonical_executable(executable)].split(":")
    return _class(f"ocrswarm.processors.{module_name}", class_name)


def _class(module_name: str, class_name: str) -> type[Processor]:
    cls: type[Processor] = getattr(import_module(module_name), class_name)
    return cls
