"""The processors layer: OCR-D tools (ocrd-tool.json, parameters, resources, Tesseract models).

Sits above formats and below the engine; imports nothing from the layers above it.
"""

import os

# Tesseract must run single-threaded, one process per core: its OpenMP threads fight each
# other in parallel workers. OpenMP reads this once, when tesserocr is first imported.
os.environ.setdefault("OMP_THREAD_LIMIT", "1")
