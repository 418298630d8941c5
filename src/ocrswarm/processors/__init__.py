"""The processors layer: OCR-D tools (ocrd-tool.json, parameters, resources, Tesseract models).

Sits above formats and below the engine; imports nothing from the layers above it.
"""
