"""Every error ocrswarm raises on purpose, and the exit code the CLI maps it to.

One hierarchy for all layers (formats, processors, engine, server), so the CLI and the
HTTP API can turn any of them into a clear message without knowing where it came from.
"""

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, as the OCR-D processor CLI defines them."""

    OK = 0
    FAILURE = 1  # processing or validation failed, bad input data
    USAGE = 2  # wrong command-line usage


class OcrswarmError(Exception):
    """Base of every deliberate ocrswarm error; its message is meant for the user."""

    exit_code: ExitCode = ExitCode.FAILURE


class UsageError(OcrswarmError):
    """The caller asked for something that cannot mean anything (bad option combination)."""

    exit_code = ExitCode.USAGE


class FormatError(OcrswarmError):
    """A file does not follow the format it claims (METS, PAGE, image, OCRD-ZIP)."""


class UnsafeInputError(FormatError):
    """Input that could harm the machine: zip-slip, zip bomb, XML entities, paths outside."""


class MetsError(FormatError):
    """A METS document is malformed or an operation on it is impossible."""


class PageXmlError(FormatError):
    """A PAGE-XML document is malformed."""


class ImageError(FormatError):
    """An image cannot be used (unreadable, multi-page, too large)."""


class BagError(FormatError):
    """An OCRD-ZIP / BagIt bag is invalid."""


class PageSelectionError(UsageError):
    """A page selection (`-g`) does not parse or names pages that do not exist."""


class NotFoundError(UsageError):
    """A job, workspace, workflow or processor that the caller named does not exist (HTTP 404)."""
