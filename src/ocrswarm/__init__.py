"""ocrswarm: distributed OCR on OCR-D workspaces."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ocrswarm")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
