"""The HTTP layer: the OCR-D Web API (FastAPI) on the engine. Imports everything below it."""
